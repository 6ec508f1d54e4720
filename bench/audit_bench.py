"""Audit log at 100,000 records: "who had access to X between T1 and T2" latency, and chain verification.

An in-memory table with the template's AuditTable keys and indexes (``MemoryTable`` below: each
index a sorted list, a Query a bisect plus a walk, pages of at most 1 MB of items as DynamoDB
would cut them) gets N records (default 100,000) spread over 10 days, 50 databases and 200 principals
(about 1 in 4 a GRANT_ISSUED, then revocations, extensions, decisions and remediation records).
They are written *directly in the chained format* (the writer's own
``record_hash``/``stream``/``sequence``/``previous_hash``, computed by ``accessctl.audit``), not
through ``AuditChain.append``; only each stream's newest chain link is written (verification
reads the head link and, on a gap only, the link of the missing sequence).

Why not moto: its Query walks every item of the table for an index query and its
TransactWriteItems deep-copies the table, so at 100,000 records it measures moto (seconds per
query), not the design. The numbers here are the code's own cost plus the items each question
reads (what DynamoDB bills and what drives its latency: add one round trip, ~5-10 ms, per page).

Then ``access_between(database, T1, T2)`` (two-hour windows, random database and time) is timed
``--runs`` times, and ``verify`` walks every stream of the 10 days. No network: compare within
one run.

    .venv/bin/python bench/audit_bench.py [--records 100000] [--runs 50]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import statistics
import sys
import time
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "layers" / "accessctl"), str(ROOT)]
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT)

    from accessctl.audit import verify
    from accessctl.audit_query import access_between
    from bench.common import percentile, render_table

    rng = random.Random(7)
    progress(f"generating and chaining {args.records:,} records")
    started = time.perf_counter()
    chained, links = _chain(_records(args.records, rng))
    chain_seconds = time.perf_counter() - started
    table = MemoryTable(chained + links)

    latencies: list[float] = []
    answered: list[int] = []
    reads: list[int] = []
    pages: list[int] = []
    for _ in range(args.runs):
        t1 = START + timedelta(seconds=rng.uniform(86400, (DAYS - 1) * 86400))
        database = f"db{rng.randrange(50):02d}"
        table.items_read = table.queries = 0
        started = time.perf_counter()
        answer = access_between(table, database, _at(t1), _at(t1 + timedelta(hours=2)))
        latencies.append(time.perf_counter() - started)
        answered.append(len(answer.grants))
        reads.append(table.items_read)
        pages.append(table.queries)

    progress("verifying every stream")
    table.items_read = table.queries = 0
    report = verify(table, _at(START), _at(START + timedelta(days=DAYS)))  # revocations spill into day 11
    if not report.ok:
        raise SystemExit(f"the generated chain does not verify: {report.first_break}")

    rows = [
        ["records (chained format)", f"{args.records:,}", f"{len(links)} streams"],
        ["hash + chain (in memory)", f"{args.records / chain_seconds:,.0f} records/s", f"{chain_seconds:.2f} s"],
        [
            f"who had access to X in 2 h (n={args.runs})",
            f"median {statistics.median(latencies) * 1000:.2f} ms",
            f"p99 {percentile(latencies, 99) * 1000:.2f} ms",
        ],
        ["  items read per answer", f"median {statistics.median(reads):.0f}", f"max {max(reads)}"],
        ["  Query pages per answer", f"median {statistics.median(pages):.0f}", f"max {max(pages)}"],
        ["  grants in the answer", f"median {statistics.median(answered):.0f}", f"max {max(answered)}"],
        [
            f"verify {report.streams} streams",
            f"{report.records / report.seconds:,.0f} records/s",
            f"{report.records:,} in {report.seconds:.2f} s, {table.queries} pages",
        ],
    ]
    print("\n".join(render_table(["measure", "value", "detail"], rows, "lrr")))
    print("In-memory table (no network): add ~5-10 ms per Query page on DynamoDB; compare within a run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
