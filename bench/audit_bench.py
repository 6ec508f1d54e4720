"""Audit log at 100,000 records: "who had access to X between T1 and T2" latency, and chain verification.

N records (default 100,000) spread over 10 days, 50 databases and 200 principals (about 1 in 4 a
GRANT_ISSUED, then revocations, extensions, decisions and remediation records) are written
*directly in the chained format* (the writer's own ``record_hash``/``stream``/``sequence``/
``previous_hash``, computed by ``accessctl.audit``), not through ``AuditChain.append``; only each
stream's newest chain link is written (verification reads the head link and, on a gap only, the
link of the missing sequence). Then the same ``--runs`` questions ``access_between(database, T1,
T2)`` (two-hour windows, random database and time) are timed, and ``verify`` walks every stream
of the 10 days (88 day shards), in one or two places:

* **in memory** (always): a table with the template's AuditTable keys and indexes
  (``MemoryTable`` below: each index a sorted list, a Query a bisect plus a walk, pages of at
  most 1 MB of items as DynamoDB would cut them). No network: the code's own cost plus the items
  each question reads (what DynamoDB bills and what drives its latency: add one round trip,
  ~5-10 ms, per page).
* **on the local stack** (``--emulator``): the real template deployed into moto, the records
  loaded into its AuditTable with BatchWriteItem (25 items a call; not part of the measure), the
  question asked end to end as ``GET /audit/access`` over HTTP on loopback, SigV4-signed by an
  admin role (the client's ``audit_access``, as ``accessctl audit access`` does), and the whole
  range verified by ``accessctl.audit.verify`` (what ``VerifyAuditFunction`` runs) against the
  emulator's DynamoDB. ``--verify-api`` verifies the way a user must for 10 days (they outlast
  the API's 30 s): ``POST /audit/verifications`` and polling; on moto that request's own chained
  append (a TransactWriteItems, which moto answers by deep-copying the table for each action)
  times out at 100,000 records, so it is not the default. One such append is timed at the end.
  The answers are compared with the in-memory ones.

The local stack measures moto more than the design: moto (5.2.5) answers a Query, even one on
the table's own key, by walking every item of the table (the local stack spares it the sort of
the whole table that came first, see ``accessctl_local.moto_patches``), so each Query costs O(N)
in the table size where DynamoDB's cost follows the items read. Run with ``--records 10000`` as
well to see that scaling. Compare within one run.

    .venv/bin/python bench/audit_bench.py [--records 100000] [--runs 50] [--emulator [--verify-api]]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 10
SEED = 7
BATCH = 25  # BatchWriteItem's most items per call
AUDITOR_ROLE = "bench-auditor"  # created under /workloads/ and named in AdminRoleArns


def progress(message: str) -> None:
    print(f"[audit-bench] {message}", file=sys.stderr, flush=True)


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _records(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Plain records (as AuditLog stores them before chaining), in time order."""
    span = DAYS * 86400
    records: list[dict[str, Any]] = []
    n = 0
    while len(records) < count:
        issued = START + timedelta(seconds=rng.uniform(0, span - 7200))
        grant = f"g{n:07d}"
        n += 1
        base = {
            "schema_version": 1,
            "subject": grant,
            "principal_arn": f"arn:aws:sts::123456789012:assumed-role/role{rng.randrange(200)}/s",
            "database": f"db{rng.randrange(50):02d}",
            "db_user": "app_ro",
            "actor": "workflow",
        }
        expires = issued + timedelta(minutes=rng.choice([15, 30, 60, 120]))
        kinds = [
            ("REQUEST_DECIDED", issued - timedelta(seconds=1), {}),
            ("GRANT_ISSUED", issued, {"expires_at": _at(expires)}),
        ]
        if rng.random() < 0.1:
            expires += timedelta(minutes=30)
            kinds.append(
                ("GRANT_EXTENDED", issued + timedelta(minutes=10), {"grant_id": grant, "expires_at": _at(expires)})
            )
        kinds.append(("GRANT_REVOKED", min(expires, issued + timedelta(minutes=rng.choice([5, 600]))), {}))
        for kind, moment, details in kinds:
            at = _at(moment)
            event_id = f"{grant}-{kind}"
            records.append(
                {
                    **base,
                    "event_id": event_id,
                    "event_type": kind,
                    "at": at,
                    "event_key": f"{at}#{event_id}",
                    "day": at[:10],
                    "details": json.dumps(details, sort_keys=True),
                }
            )
    records = records[:count]
    records.sort(key=lambda record: record["event_key"])
    return records


def _chain(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from accessctl.audit import genesis_hash, link_key, record_hash, stream_of

    heads: dict[str, tuple[int, str]] = {}
    chained = []
    for record in records:
        stream = stream_of(record["subject"], record["at"])
        sequence, previous = heads.get(stream, (0, genesis_hash(stream)))
        item = {**record, "stream": stream, "sequence": sequence + 1, "previous_hash": previous}
        item["record_hash"] = record_hash(item)
        heads[stream] = (sequence + 1, item["record_hash"])
        chained.append(item)
    last = {item["stream"]: item for item in chained}
    links = [
        {
            **link_key(stream, item["sequence"]),
            "record_hash": item["record_hash"],
            "at": item["at"],
            "record_subject": item["subject"],
            "record_event_key": item["event_key"],
        }
        for stream, item in last.items()
    ]
    return chained, links


class MemoryTable:
    """Just enough of a boto3 Table for the audit queries: Query (key conditions eq/between/lte/lt,
    Attr filters, Limit, paging, ScanIndexForward) and GetItem over sorted in-memory indexes."""

    INDEXES = {
        None: ("subject", "event_key"),
        "ByDay": ("day", "event_key"),
        "ByDatabase": ("database", "event_key"),
        "ByPrincipal": ("principal_arn", "event_key"),
        "ByRequester": ("requester", "event_key"),
        "ByType": ("event_type", "event_key"),
        "ByStream": ("stream", "sequence"),
    }

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items_read = 0
        self.queries = 0
        self._items = {(item["subject"], item["event_key"]): item for item in items}
        self._index: dict[str | None, dict[Any, tuple[list[Any], list[dict[str, Any]]]]] = {}
        for name, (hash_key, range_key) in self.INDEXES.items():
            partitions: dict[Any, list[tuple[Any, tuple[str, str], dict[str, Any]]]] = {}
            for key, item in self._items.items():
                if hash_key in item and range_key in item:
                    partitions.setdefault(item[hash_key], []).append((item[range_key], key, item))
            self._index[name] = {}
            for value, rows in partitions.items():
                rows.sort(key=lambda row: (row[0], row[1]))
                self._index[name][value] = ([(row[0], row[1]) for row in rows], [row[2] for row in rows])

    def get_item(self, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.items_read += 1
        item = self._items.get((Key["subject"], Key["event_key"]))
        return {"Item": item} if item is not None else {}

    def query(self, **request: Any) -> dict[str, Any]:
        self.queries += 1
        name = request.get("IndexName")
        hash_key, range_key = self.INDEXES[name]
        partition, low, high = _key_bounds(request["KeyConditionExpression"])
        keys, rows = self._index[name].get(partition, ([], []))
        start, end = 0, len(keys)
        if low is not None:
            start = bisect.bisect_left(keys, (low[0],)) if low[1] else bisect.bisect_right(keys, (low[0], ("~",)))
        if high is not None:
            end = bisect.bisect_right(keys, (high, ("~", "~")))
        forward = request.get("ScanIndexForward", True)
        order = range(start, end) if forward else range(end - 1, start - 1, -1)
        after = request.get("ExclusiveStartKey")
        if after is not None:
            marker = (after[range_key], (after["subject"], after["event_key"]))
            position = bisect.bisect_right(keys, marker) if forward else bisect.bisect_left(keys, marker) - 1
            order = range(position, end) if forward else range(position, start - 1, -1)
        limit = request.get("Limit")
        found, evaluated, size, last = [], 0, 0, None
        for row in order:
            item = rows[row]
            evaluated += 1
            size += len(json.dumps(item, default=str))
            if request.get("FilterExpression") is None or _matches(request["FilterExpression"], item):
                found.append(item)
            if (limit is not None and evaluated >= limit) or size >= 1_000_000:
                if row != order[-1]:
                    last = {"subject": item["subject"], "event_key": item["event_key"], range_key: item[range_key]}
                    if name is not None:
                        last[hash_key] = item[hash_key]
                break
        self.items_read += evaluated
        return {"Items": found, **({"LastEvaluatedKey": last} if last else {})}


def _key_bounds(condition: Any) -> tuple[Any, tuple[Any, bool] | None, Any]:
    """(partition, (low, inclusive) or None, high or None) of ``Key(h).eq(v) [& Key(r).op(...)]``."""
    parts = condition.get_expression()["values"] if condition.expression_operator == "AND" else [condition]
    partition = parts[0].get_expression()["values"][1]
    if len(parts) == 1:
        return partition, None, None
    operator = parts[1].expression_operator
    values = parts[1].get_expression()["values"][1:]
    if operator == "BETWEEN":
        return partition, (values[0], True), values[1]
    if operator in ("<=", "<"):
        return partition, None, values[0]
    raise ValueError(f"key condition {operator} not supported")


def _matches(condition: Any, item: dict[str, Any]) -> bool:
    operator = condition.expression_operator
    values = condition.get_expression()["values"]
    if operator == "AND":
        return all(_matches(part, item) for part in values)
    name = values[0].name
    if operator == "=":
        return bool(item.get(name) == values[1])
    if operator == "IN":
        return item.get(name) in values[1]
    raise ValueError(f"filter {operator} not supported")


@dataclass(frozen=True)
class Question:
    """Who had access to ``database`` between ``since`` and ``until``."""

    database: str
    since: str
    until: str


@dataclass
class Measured:
    """One place's figures (seconds). ``None``: that place does not tell."""

    setup_seconds: float  # building the indexes, or loading the emulator: not part of the measure
    latencies: list[float]
    answers: list[list[dict[str, Any]]]  # each answer's grants, as JSON
    pages: list[int]  # Query calls per answer
    items_read: list[int] | None  # items those Queries read (moto does not say)
    verify_ok: bool
    verify_records: int
    verify_streams: int
    verify_seconds: float  # the verifier's own clock (VerifyReport.seconds)
    verify_how: str = "accessctl.audit.verify"
    verify_pages: int | None = None
    verify_wall: float | None = None  # POST /audit/verifications -> DONE seen by polling
    append_seconds: float | None = None  # one chained append (TransactWriteItems), on the emulator


@dataclass
class Run:
    records: int
    streams: int
    chain_seconds: float
    questions: list[Question]
    places: dict[str, Measured]


def _questions(count: int, rng: random.Random) -> list[Question]:
    questions = []
    for _ in range(count):
        t1 = START + timedelta(seconds=rng.uniform(86400, (DAYS - 1) * 86400))
        database = f"db{rng.randrange(50):02d}"
        questions.append(Question(database, _at(t1), _at(t1 + timedelta(hours=2))))
    return questions


def _verify_range() -> tuple[str, str]:
    return _at(START), _at(START + timedelta(days=DAYS))  # revocations spill into day 11


def _grants(grants: list[Any]) -> list[dict[str, Any]]:
    """Grants of an answer (models in memory, JSON from the API) in one comparable form."""
    from accessctl.audit_query import AccessInterval

    return [AccessInterval.model_validate(grant).model_dump(mode="json") for grant in grants]


def measure_in_memory(items: list[dict[str, Any]], questions: list[Question]) -> Measured:
    from accessctl.audit import verify
    from accessctl.audit_query import access_between

    started = time.perf_counter()
    table = MemoryTable(items)
    setup = time.perf_counter() - started
    latencies: list[float] = []
    answers: list[list[dict[str, Any]]] = []
    reads: list[int] = []
    pages: list[int] = []
    for question in questions:
        table.items_read = table.queries = 0
        started = time.perf_counter()
        answer = access_between(table, question.database, question.since, question.until)
        latencies.append(time.perf_counter() - started)
        answers.append(_grants(answer.grants))
        reads.append(table.items_read)
        pages.append(table.queries)

    progress("in memory: verifying every stream")
    table.items_read = table.queries = 0
    report = verify(table, *_verify_range())
    return Measured(
        setup_seconds=setup,
        latencies=latencies,
        answers=answers,
        pages=pages,
        items_read=reads,
        verify_ok=report.ok,
        verify_records=report.records,
        verify_streams=report.streams,
        verify_seconds=report.seconds,
        verify_pages=table.queries,
    )


def load(stack: Any, items: list[dict[str, Any]]) -> float:
    """Put ``items`` into the deployed AuditTable, 25 a BatchWriteItem call (unprocessed ones again)."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    dynamodb = stack.client("dynamodb")
    table = stack.resources["AuditTable"]
    started = time.perf_counter()
    step = max(len(items) // 10, BATCH)
    for offset in range(0, len(items), BATCH):
        puts = [
            {"PutRequest": {"Item": {name: serializer.serialize(value) for name, value in item.items()}}}
            for item in items[offset : offset + BATCH]
        ]
        pending: dict[str, Any] = {table: puts}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        done = offset + len(puts)
        if done // step != offset // step or done == len(items):
            elapsed = time.perf_counter() - started
            progress(f"local stack: loaded {done:,}/{len(items):,} items in {elapsed:.0f} s")
    return time.perf_counter() - started


@contextlib.contextmanager
def _local_stack() -> Any:
    """The real template in moto, schedules off, with :data:`AUDITOR_ROLE` as the only admin."""
    from accessctl_local import LocalStack
    from accessctl_local.provision import DEFAULT_ACCOUNT_ID
    from bench.common import environment

    admin = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/workloads/{AUDITOR_ROLE}"
    overrides = {"LogLevel": "WARNING", "AdminRoleArns": admin}
    with environment(POWERTOOLS_METRICS_DISABLED="true"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        started = time.perf_counter()
        with LocalStack.start(project_root=ROOT, parameter_overrides=overrides, run_schedules=False) as stack:
            progress(f"local stack up in {time.perf_counter() - started:.1f} s: API {stack.api_url}")
            yield stack


def measure_local_stack(
    items: list[dict[str, Any]], questions: list[Question], *, verify_api: bool, verify_timeout: float
) -> Measured:
    """The same questions as ``GET /audit/access`` and the same range verified, on the deployed stack.

    Verification runs ``accessctl.audit.verify`` (the code ``VerifyAuditFunction`` runs) here, against
    the emulator's DynamoDB; with ``verify_api``, through ``POST /audit/verifications`` instead,
    which first appends a chained record: on moto a TransactWriteItems deep-copies the table for
    each of its actions, so at 100,000 records that append alone outlasts the client's 10 s and the
    API's 30 s (``append_seconds`` measures one, after the rest).
    """
    from accessctl_local.estate import workload

    with _local_stack() as stack:
        setup = load(stack, items)
        auditor = workload(stack, AUDITOR_ROLE, opted_in=False, session_name="bench-audit").client
        latencies, answers, pages = _ask(stack, auditor, questions)
        if verify_api:
            measured = _verify_through_api(auditor, verify_timeout)
        else:
            measured = _verify_in_process(stack)
        measured.update(setup_seconds=setup, latencies=latencies, answers=answers, pages=pages)
        measured["append_seconds"] = _append_one(stack)
    return Measured(items_read=None, **measured)


def _ask(
    stack: Any, auditor: Any, questions: list[Question]
) -> tuple[list[float], list[list[dict[str, Any]]], list[int]]:
    """Each question as ``GET /audit/access``, timed at the client; Query calls counted at the emulator."""
    first = questions[0]
    auditor.audit_access(first.database, first.since, first.until)  # the API function's cold start
    latencies: list[float] = []
    answers: list[list[dict[str, Any]]] = []
    pages: list[int] = []
    for number, question in enumerate(questions, 1):
        stack.reset_api_call_counts()
        started = time.perf_counter()
        answer = auditor.audit_access(question.database, question.since, question.until)
        latencies.append(time.perf_counter() - started)
        pages.append(stack.api_call_counts().get(("dynamodb", "Query"), 0))
        answers.append(_grants(answer["grants"]))
        if number % 10 == 0 or number == len(questions):
            progress(f"local stack: {number}/{len(questions)} questions, last {latencies[-1]:.2f} s")
    return latencies, answers, pages


def _verify_in_process(stack: Any) -> dict[str, Any]:
    from accessctl.audit import verify

    progress("local stack: verifying every stream (accessctl.audit.verify against the emulator)")
    dynamodb = stack.session().resource("dynamodb", endpoint_url=stack.endpoint_url)
    table = dynamodb.Table(stack.resources["AuditTable"])
    stack.reset_api_call_counts()
    report = verify(table, *_verify_range())
    return {
        "verify_how": "accessctl.audit.verify",
        "verify_ok": report.ok,
        "verify_records": report.records,
        "verify_streams": report.streams,
        "verify_seconds": report.seconds,
        "verify_pages": stack.api_call_counts().get(("dynamodb", "Query"), 0),
    }


def _verify_through_api(auditor: Any, timeout: float) -> dict[str, Any]:
    from bench.common import BenchError

    progress("local stack: verifying every stream (POST /audit/verifications, then polling)")
    started = time.perf_counter()
    verification = auditor.start_audit_verification(*_verify_range())
    done = auditor.wait_audit_verification(verification["verification_id"], timeout=timeout)
    wall = time.perf_counter() - started
    report = done.get("report")
    if done.get("status") != "DONE" or not report:
        raise BenchError(f"the verification ended {done.get('status')}: {done}")
    return {
        "verify_how": "POST /audit/verifications",
        "verify_ok": bool(report["ok"]),
        "verify_records": int(report["records"]),
        "verify_streams": int(report["streams"]),
        "verify_seconds": float(report["seconds"]),
        "verify_wall": wall,
    }


def _append_one(stack: Any) -> float:
    """One chained append (head Query + TransactWriteItems of the record and its link), as every writer does.

    Dated now, so outside the benchmark's days: nothing measured above changes.
    """
    from accessctl.audit import AuditChain

    at = _at(datetime.now(UTC))
    record = {"subject": "bench-append", "event_key": f"{at}#bench", "at": at, "day": at[:10], "actor": "bench"}
    chain = AuditChain(stack.client("dynamodb"), stack.resources["AuditTable"], retention_days=0)
    started = time.perf_counter()
    chain.append([record])
    return time.perf_counter() - started


def generate(records: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The benchmark's records in the chained format, and each stream's newest link (see ``_chain``)."""
    return _chain(_records(records, rng))


def run(
    records: int,
    runs: int,
    *,
    emulator: bool,
    verify_api: bool = False,
    verify_timeout: float = 900.0,
    questions: list[Question] | None = None,
) -> Run:
    """Generate, chain, and measure in memory (and on the local stack with ``emulator``).

    ``questions``: ask these instead of ``runs`` random ones (the records are the same for a size).
    """
    rng = random.Random(SEED)
    progress(f"generating and chaining {records:,} records")
    started = time.perf_counter()
    chained, links = generate(records, rng)
    chain_seconds = time.perf_counter() - started
    questions = questions or _questions(runs, rng)
    places = {"in memory": measure_in_memory(chained + links, questions)}
    if emulator:
        places["local stack"] = measure_local_stack(
            chained + links, questions, verify_api=verify_api, verify_timeout=verify_timeout
        )
    return Run(records, len(links), chain_seconds, questions, places)


def _median_max(values: list[int] | None) -> str:
    return "-" if values is None else f"{statistics.median(values):.0f} / {max(values)}"


def render(result: Run) -> list[str]:
    from bench.common import percentile, render_table

    places = list(result.places.values())
    reference = result.places["in memory"].answers

    def row(label: str, cell: Any) -> list[str]:
        return [label, *(cell(place) for place in places)]

    def same(place: Measured) -> str:
        equal = sum(answer == expected for answer, expected in zip(place.answers, reference, strict=True))
        return f"{equal}/{len(reference)}" + ("" if equal == len(reference) else " DIFFER")

    def setup(place: Measured) -> str:
        if place.items_read is not None:
            return f"indexes built in {place.setup_seconds:.1f} s"
        items = result.records + result.streams
        return (
            f"{items:,} items by BatchWriteItem in {place.setup_seconds:.0f} s ({items / place.setup_seconds:,.0f}/s)"
        )

    rows = [
        row("records (chained format)", lambda _: f"{result.records:,} in {result.streams} streams"),
        row(
            "hash + chain (in memory, not measured below)",
            lambda p: f"{result.records / result.chain_seconds:,.0f} records/s" if p is places[0] else "-",
        ),
        row("setup (not measured)", setup),
        row(
            f"who had access to X in 2 h (n={len(result.questions)}): median",
            lambda p: _ms(statistics.median(p.latencies)),
        ),
        row("  p99", lambda p: _ms(percentile(p.latencies, 99))),
        row("  Query pages per answer (median / max)", lambda p: _median_max(p.pages)),
        row("  items read per answer (median / max)", lambda p: _median_max(p.items_read)),
        row("  grants in the answer (median / max)", lambda p: _median_max([len(answer) for answer in p.answers])),
        row("  answers equal to the in-memory ones", same),
        row(
            "verify (the verifier's clock)",
            lambda p: f"{p.verify_records / p.verify_seconds:,.0f} records/s" + ("" if p.verify_ok else " BROKEN"),
        ),
        row(
            "  records, streams, seconds",
            lambda p: f"{p.verify_records:,}, {p.verify_streams}, {p.verify_seconds:.2f} s",
        ),
        row("  by", lambda p: p.verify_how),
        row("  Query pages", lambda p: "-" if p.verify_pages is None else str(p.verify_pages)),
        row(
            "  request -> DONE seen (async API, polled)",
            lambda p: "-" if p.verify_wall is None else f"{p.verify_wall:.1f} s",
        ),
        row(
            "one chained append (head + TransactWriteItems)",
            lambda p: "-" if p.append_seconds is None else _ms(p.append_seconds),
        ),
    ]
    headers = ["measure", *(_heading(name) for name in result.places)]
    return render_table(headers, rows, "l" + "r" * len(places))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms"


def _heading(place: str) -> str:
    return "local stack (moto, HTTP + SigV4)" if place == "local stack" else place


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="also deploy the local stack, load the records into it and ask the API the same questions",
    )
    parser.add_argument(
        "--verify-api",
        action="store_true",
        help="on the local stack, verify through POST /audit/verifications (too slow on moto at 100,000 records)",
    )
    parser.add_argument(
        "--verify-timeout", type=float, default=900.0, help="seconds to wait for --verify-api's verification"
    )
    args = parser.parse_args(argv)
    if args.records < 1 or args.runs < 1:
        parser.error("--records and --runs must be >= 1")
    sys.path[:0] = [str(ROOT / "layers" / "accessctl"), str(ROOT)]
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT)

    from bench.common import machine_summary

    machine = machine_summary()
    # The handlers log to stdout; during the run it is stderr, so stdout is only the result.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(
            args.records,
            args.runs,
            emulator=args.emulator,
            verify_api=args.verify_api,
            verify_timeout=args.verify_timeout,
        )
    broken = [name for name, place in result.places.items() if not place.verify_ok]
    print("\n".join(render(result)))
    print(
        f"{machine['date']}, commit {machine['commit']}, {machine['cpus_usable']} CPUs "
        f"(load {machine['load_1min_at_start']} at start), moto {machine['moto']}. Compare within a run."
    )
    print("In memory: no network; add ~5-10 ms per Query page on DynamoDB.")
    if args.emulator:
        print(
            "Local stack: moto walks every item of the table on every Query (its cost grows with N, not with the "
            "items read) and its responses cost ~1-2 ms an item; loopback HTTP, API Gateway emulated in-process."
        )
    if broken:
        print(f"the generated chain does not verify in: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
