"""The append-only, hash-chained audit log: every decision, grant, revocation and failure leaves a record.

Records are put once (conditional on absence) and never updated or deleted by the application.

Tamper evidence: every record belongs to a *stream*, ``YYYY-MM-DD#k`` (the day of the record,
``k = sha256(subject) % STREAM_SHARDS``), carries its ``sequence`` in that stream (1, 2, ...),
the ``previous_hash`` of the record before it (a per-stream genesis value for the first) and its
own ``record_hash``: sha256 over the canonical JSON of the stored item (sorted keys, compact
separators) without ``record_hash``. Sharding by day and subject spreads writers over
``STREAM_SHARDS`` chains instead of one global hotspot, and keeps one subject's records in order.

Appending is optimistic and append-only too: next to each record a *link* item
(``subject = CHAIN#<stream>``, ``event_key = <sequence, 12 digits>``) is put in the same
``TransactWriteItems``, both conditional on absence. The link key makes a sequence number
unique: two writers that read the same head cannot both commit; the loser re-reads the head and
retries. No item is ever updated, so IAM can stay PutItem + Query.

Verification (:func:`verify`) walks each stream of a time range in sequence order (index
``ByStream``), recomputes every hash and reports the first break: a missing sequence (a deleted
record), a record whose hash does not match its content (an edited record), or a
``previous_hash`` that does not match its predecessor (an edited-and-rehashed predecessor). The
newest link witnesses the tail, so deleting or rewriting the last record is found too.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from accessctl.aws import error_code, transient_errors_surface
from accessctl.models import AccessRequest, AuditEvent, AuditEventType, precise_now
from accessctl.store import drop_none

STREAM_SHARDS = 8
STREAM_INDEX = "ByStream"
LINK_PREFIX = "CHAIN#"
_PER_TRANSACTION = 50  # a record and its link per record: TransactWriteItems takes 100 actions
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class AuditChainError(RuntimeError):
    """The chain could not be extended (contention that outlasted every retry)."""


# ------------------------------------------------------------------ hashing


def stream_of(subject: str, at: str, shards: int = STREAM_SHARDS) -> str:
    shard = int(hashlib.sha256(subject.encode()).hexdigest()[:8], 16) % shards
    return f"{at[:10]}#{shard}"


def genesis_hash(stream: str) -> str:
    return hashlib.sha256(f"accessctl-audit-genesis#{stream}".encode()).hexdigest()


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: hash them as the ints they were written as."""
    if isinstance(value, dict):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else str(value)
    return value


def record_hash(item: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a stored record, ``record_hash`` itself excluded."""
    body = {key: value for key, value in plain(item).items() if key != "record_hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def link_key(stream: str, sequence: int) -> dict[str, str]:
    return {"subject": f"{LINK_PREFIX}{stream}", "event_key": f"{sequence:012d}"}


# ------------------------------------------------------------------ writing


class AuditChain:
    """Appends records to their streams.

    ``typed``: the client takes and gives DynamoDB-typed values (a plain low-level client); a boto3
    resource's ``meta.client`` (``typed=False``) converts plain Python values itself.
    """

    def __init__(self, dynamodb: Any, table_name: str, max_attempts: int = 25, *, typed: bool = True) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._max_attempts = max_attempts
        self._typed = typed

    def _out(self, value: Any) -> Any:
        return _SERIALIZER.serialize(value) if self._typed else value

    def _in(self, value: Any) -> Any:
        return _DESERIALIZER.deserialize(value) if self._typed else value

    def head(self, stream: str) -> tuple[int, str]:
        """The stream's last sequence and record hash (0 and the genesis hash for a new stream)."""
        key = link_key(stream, 0)
        with transient_errors_surface():
            page = self._dynamodb.query(
                TableName=self._table_name,
                KeyConditionExpression="#s = :s",
                ExpressionAttributeNames={"#s": "subject"},
                ExpressionAttributeValues={":s": self._out(key["subject"])},
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
        items = page.get("Items", [])
        if not items:
            return 0, genesis_hash(stream)
        link = {name: self._in(value) for name, value in items[0].items()}
        return int(link["event_key"]), str(link["record_hash"])

    def append(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chain and write records (each with ``subject``, ``event_key``, ``at``); returns them chained.

        Up to 50 records per TransactWriteItems, whatever their streams (a scan's batch is one call).
        """
        ordered = sorted(items, key=lambda item: stream_of(item["subject"], item["at"]))  # stable: order kept
        written: list[dict[str, Any]] = []
        for start in range(0, len(ordered), _PER_TRANSACTION):
            written += self._append_chunk(ordered[start : start + _PER_TRANSACTION])
        return written

    def _append_chunk(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        streams = sorted({stream_of(record["subject"], record["at"]) for record in records})
        for attempt in range(self._max_attempts):
            heads = {stream: self.head(stream) for stream in streams}
            chained: list[dict[str, Any]] = []
            actions: list[dict[str, Any]] = []
            for record in records:
                stream = stream_of(record["subject"], record["at"])
                sequence, previous = heads[stream]
                sequence += 1
                item = {**record, "stream": stream, "sequence": sequence, "previous_hash": previous}
                item["record_hash"] = record_hash(item)
                heads[stream] = (sequence, item["record_hash"])
                chained.append(item)
                link = {**link_key(stream, sequence), "record_hash": item["record_hash"], "at": item["at"]}
                link.update(record_subject=item["subject"], record_event_key=item["event_key"])
                for document in (item, link):
                    actions.append(
                        {
                            "Put": {
                                "TableName": self._table_name,
                                "Item": {name: self._out(value) for name, value in document.items()},
                                "ConditionExpression": "attribute_not_exists(event_key)",
                            }
                        }
                    )
            # The same token for the same chunk at the same heads: a retried call is not applied twice.
            first = chained[0]
            token = hashlib.sha256(f"{first['stream']}#{first['sequence']}#{first['event_key']}".encode())
            try:
                with transient_errors_surface():
                    self._dynamodb.transact_write_items(
                        TransactItems=actions, ClientRequestToken=token.hexdigest()[:36]
                    )
                return chained
            except ClientError as error:
                if error_code(error) not in ("TransactionCanceledException", "TransactionConflictException"):
                    raise
                time.sleep(min(0.2, 0.002 * 2**attempt) * (0.5 + (uuid.uuid4().int % 100) / 100))
        raise AuditChainError(
            f"could not append to audit streams {', '.join(streams)} after {self._max_attempts} attempts"
        )


class AuditLog:
    """Append-only: records are put once (conditional on absence) and never updated."""

    def __init__(self, table: Any) -> None:
        self._table = table
        # A table with its own chained writer (the remediation's batching AuditTable) or a boto3 Table.
        sink: Callable[[list[dict[str, Any]]], Any] | None = getattr(table, "append_chained", None)
        if sink is None:
            sink = AuditChain(table.meta.client, table.name, typed=False).append
        self._sink = sink

    @property
    def table(self) -> Any:
        return self._table

    def append(
        self,
        event_type: AuditEventType,
        *,
        subject: str,
        actor: str,
        request: AccessRequest | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        event = AuditEvent(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            at=precise_now(),
            subject=subject,
            actor=actor,
            principal_arn=request.principal_arn if request else None,
            database=request.database if request else None,
            db_user=request.db_user if request else None,
            outcome=outcome,
            reason=reason,
            details={**_requester_details(request), **(details or {})},
        )
        item = event_item(event)
        written = self._sink([item]) or []
        if written:
            chained = written[0]
            event = event.model_copy(
                update={name: chained[name] for name in ("stream", "sequence", "previous_hash", "record_hash")}
            )
        return event

    def for_subject(self, subject: str) -> list[AuditEvent]:
        events: list[AuditEvent] = []
        query: dict[str, Any] = {"KeyConditionExpression": Key("subject").eq(subject)}
        while True:
            with transient_errors_surface():
                page = self._table.query(**query)
            events += [event_from_item(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return events
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def event_item(event: AuditEvent) -> dict[str, Any]:
    """The stored form of a record before chaining."""
    document = drop_none(event.model_dump(mode="json"))
    for name in ("stream", "sequence", "previous_hash", "record_hash"):
        document.pop(name, None)
    return {
        **document,
        "event_key": f"{event.at}#{event.event_id}",
        "day": event.at[:10],
        # Nested documents are stored as JSON text: DynamoDB rejects floats and empty keys.
        "details": json.dumps(event.details, sort_keys=True),
    }


def event_from_item(item: dict[str, Any]) -> AuditEvent:
    document = plain(dict(item))
    document["details"] = json.loads(document.get("details") or "{}")
    return AuditEvent.model_validate(document)


# ------------------------------------------------------------------ verifying


class ChainBreak(BaseModel):
    stream: str
    sequence: int  # the position of the first record that does not verify
    kind: str  # "missing" (deleted) | "edited" | "previous_hash" | "tail"
    detail: str
    event_key: str | None = None
    subject: str | None = None


class VerifyReport(BaseModel):
    since: str
    until: str
    streams: int = 0
    records: int = 0
    seconds: float = 0.0
    ok: bool = True
    first_break: ChainBreak | None = None


def days_between(since: str, until: str) -> list[str]:
    start = datetime.fromisoformat(since[:10]).date()
    end = datetime.fromisoformat(until[:10]).date()
    return [(start + timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


def verify(table: Any, since: str, until: str, shards: int = STREAM_SHARDS) -> VerifyReport:
    """Walk every stream of every day from ``since`` to ``until`` (whole days: a chain starts at its
    day's genesis) and report the first break, in (day, shard, sequence) order."""
    started = time.perf_counter()
    report = VerifyReport(since=since, until=until)
    for day in days_between(since, until):
        for shard in range(shards):
            stream = f"{day}#{shard}"
            walked, found = _verify_stream(table, stream)
            report.records += walked
            report.streams += 1 if walked or found else 0
            if found is not None:
                report.ok, report.first_break = False, found
                report.seconds = time.perf_counter() - started
                return report
    report.seconds = time.perf_counter() - started
    return report


def _stream_items(table: Any, stream: str) -> Iterator[dict[str, Any]]:
    query: dict[str, Any] = {"IndexName": STREAM_INDEX, "KeyConditionExpression": Key("stream").eq(stream)}
    while True:
        with transient_errors_surface():
            page = table.query(**query)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _linked_record(table: Any, stream: str, sequence: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The link of a sequence and its record, read consistently from the table (not the index)."""
    with transient_errors_surface():
        link = table.get_item(Key=link_key(stream, sequence), ConsistentRead=True).get("Item")
    if link is None:
        return None, None
    key = {"subject": link["record_subject"], "event_key": link["record_event_key"]}
    with transient_errors_surface():
        record = table.get_item(Key=key, ConsistentRead=True).get("Item")
    return link, record


def _verify_stream(table: Any, stream: str) -> tuple[int, ChainBreak | None]:
    expected, previous, walked = 1, genesis_hash(stream), 0
    items = _stream_items(table, stream)
    pending: dict[str, Any] | None = next(items, None)
    head_sequence = _head_sequence(table, stream)
    while pending is not None or expected <= head_sequence:
        if pending is not None and int(pending["sequence"]) == expected:
            item, pending = pending, next(items, None)
        else:
            # Not in the index: deleted, or written so recently that the index has not caught up.
            link, record = _linked_record(table, stream, expected)
            if record is None:
                key = link["record_event_key"] if link else None
                return walked, ChainBreak(
                    stream=stream,
                    sequence=expected,
                    kind="missing",
                    detail=f"record {expected} of {stream} is missing (deleted)",
                    event_key=key,
                    subject=link["record_subject"] if link else None,
                )
            item = record
        walked += 1
        position: dict[str, Any] = {"stream": stream, "sequence": expected, "event_key": item.get("event_key")}
        position["subject"] = item.get("subject")
        if item.get("previous_hash") != previous:
            detail = f"record {expected} does not chain to record {expected - 1} (it or its predecessor was altered)"
            return walked, ChainBreak(kind="previous_hash", detail=detail, **position)
        if record_hash(item) != item.get("record_hash"):
            detail = f"record {expected} of {stream} does not match its hash (edited)"
            return walked, ChainBreak(kind="edited", detail=detail, **position)
        previous = str(item["record_hash"])
        expected += 1
    if head_sequence:
        link, _ = _linked_record(table, stream, head_sequence)
        if link is not None and link.get("record_hash") != previous:
            detail = f"the last record ({head_sequence}) of {stream} differs from what was appended"
            return walked, ChainBreak(stream=stream, sequence=head_sequence, kind="tail", detail=detail)
    return walked, None


def _head_sequence(table: Any, stream: str) -> int:
    with transient_errors_surface():
        page = table.query(
            KeyConditionExpression=Key("subject").eq(f"{LINK_PREFIX}{stream}"),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
    items = page.get("Items", [])
    return int(items[0]["event_key"]) if items else 0


def _requester_details(request: AccessRequest | None) -> dict[str, Any]:
    """A request made for someone else (Slack, a chat-ops bot) names that person and the relay."""
    if request is None or request.requester is None:
        return {}
    relay = request.requester.via or (f"slack:{request.requester.slack.team_id}" if request.requester.slack else None)
    return {"requested_for": request.requester.identity, "origin": request.origin.value, "relayed_by": relay}
