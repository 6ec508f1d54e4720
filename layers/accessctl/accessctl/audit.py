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

Retention (``AUDIT_RETENTION_DAYS``, 0 = forever): the chain writes ``retain_until`` (epoch
seconds, ``at`` + the retention) on each record and on its link, and DynamoDB's TTL removes them
after that; the application still never deletes. Verification tells expiry from deletion by the
records' own ``retain_until``, not by the current setting (see :func:`verify`).

Anchors (:class:`AuditManifest`): the exporter (:mod:`accessctl.audit_export`) writes each closed
day's records to S3 with, per stream, its head (last sequence and record hash). Given those
manifests, verification also finds a day whose whole stream was deleted with its links, or a
stream rewritten consistently: neither leaves a trace in the table itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from accessctl.aws import error_code, transient_errors_surface
from accessctl.models import AccessRequest, AuditEvent, AuditEventType, AwsRequest, precise_now
from accessctl.principals import role_arn_of_session
from accessctl.store import drop_none

STREAM_SHARDS = 8
STREAM_INDEX = "ByStream"
LINK_PREFIX = "CHAIN#"
RECORDS_PER_TRANSACTION = 50  # a record and its link per record: TransactWriteItems takes 100 actions
# A record is committed at most this long after its ``at`` (a scan's batch is written when the scan
# ends, within the longest Lambda timeout): bounds a deleted record's ``retain_until`` from its
# predecessor's when neither it nor its link survives.
APPEND_DELAY_BOUND = timedelta(hours=1)
DAY = timedelta(days=1)
# What the chain sets on a record when it appends it (never part of a record before chaining).
CHAIN_ATTRIBUTES = ("stream", "sequence", "previous_hash", "record_hash", "retain_until", "chained_at")
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class AuditRetention(BaseModel):
    """``AUDIT_RETENTION_DAYS`` from the environment: how long DynamoDB keeps a record (0 = forever)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    audit_retention_days: int = Field(default=0, ge=0, le=36500)


@lru_cache(maxsize=1)
def configured_retention_days() -> int:
    """Read once per process; every writer of the chain (grants, sweeper, remediation) uses it."""
    names = {name.lower(): value for name, value in os.environ.items() if name == "AUDIT_RETENTION_DAYS"}
    return AuditRetention.model_validate(names).audit_retention_days


def epoch_seconds(instant: str) -> int:
    return int(datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp())


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

    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        max_attempts: int = 25,
        *,
        typed: bool = True,
        retention_days: int | None = None,
    ) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._max_attempts = max_attempts
        self._typed = typed
        # None: the deployment's AUDIT_RETENTION_DAYS; 0: kept forever (no TTL attribute).
        self._retention = timedelta(days=configured_retention_days() if retention_days is None else retention_days)

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

    def append(
        self,
        items: list[dict[str, Any]],
        committed: dict[str, tuple[int, str]] | None = None,
        *,
        chained_at: str | None = None,
    ) -> list[dict[str, Any]]:
        """Chain and write records (each with ``subject``, ``event_key``, ``at``); returns them chained.

        Up to 50 records per TransactWriteItems, whatever their streams (a scan's batch is one call).
        A stream's head is read once per call: a later chunk starts from the head the previous chunk
        committed. Should another writer have appended meanwhile, the chunk's link put for that
        sequence fails its condition, the transaction is cancelled, and the heads are read again.
        ``committed``: the heads kept by a writer across calls (one batch written in several calls,
        one after the other).

        ``chained_at``: when records are appended long after their ``at`` (the audit outbox's
        replay), the moment they are appended: they go into that day's stream and their retention
        counts from then, their ``at`` unchanged. So a chain stays in the order of time: a day
        already exported (anchored) is never appended to, and no record expires before a record
        chained ahead of it (what verification's expiry bounds rely on, :data:`APPEND_DELAY_BOUND`).
        """
        ordered = sorted(items, key=lambda item: self._stream(item, chained_at))  # stable: order kept
        written: list[dict[str, Any]] = []
        committed = {} if committed is None else committed
        for start in range(0, len(ordered), RECORDS_PER_TRANSACTION):
            written += self._append_chunk(ordered[start : start + RECORDS_PER_TRANSACTION], committed, chained_at)
        return written

    @staticmethod
    def _stream(record: dict[str, Any], chained_at: str | None) -> str:
        return stream_of(record["subject"], chained_at or record["at"])

    def _append_chunk(
        self, records: list[dict[str, Any]], committed: dict[str, tuple[int, str]], chained_at: str | None
    ) -> list[dict[str, Any]]:
        """``committed``: heads this writer has just written (used on the first attempt; updated on success)."""
        streams = sorted({self._stream(record, chained_at) for record in records})
        for attempt in range(self._max_attempts):
            heads = {
                stream: committed[stream] if attempt == 0 and stream in committed else self.head(stream)
                for stream in streams
            }
            chained: list[dict[str, Any]] = []
            actions: list[dict[str, Any]] = []
            for record in records:
                stream = self._stream(record, chained_at)
                sequence, previous = heads[stream]
                sequence += 1
                item = {**record, "stream": stream, "sequence": sequence, "previous_hash": previous}
                if chained_at is not None:
                    item["chained_at"] = chained_at  # hashed with the record, like its place in the chain
                if self._retention:
                    # The TTL attribute is part of the hashed record: shortening it is an edit.
                    retained_from = chained_at or item["at"]
                    item["retain_until"] = epoch_seconds(retained_from) + int(self._retention.total_seconds())
                item["record_hash"] = record_hash(item)
                heads[stream] = (sequence, item["record_hash"])
                chained.append(item)
                link = {**link_key(stream, sequence), "record_hash": item["record_hash"], "at": item["at"]}
                link.update(record_subject=item["subject"], record_event_key=item["event_key"])
                if "retain_until" in item:
                    link["retain_until"] = item["retain_until"]  # leaves with its record
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
                committed.update(heads)
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
        aws_requests: list[AwsRequest] | None = None,
        execution_arn: str | None = None,
    ) -> AuditEvent:
        """Write one record. ``aws_requests``: the controller's own mutating AWS calls that made this
        outcome (:func:`accessctl.aws.aws_requests`), for an investigator's pivot to CloudTrail.
        ``execution_arn``: the request's Step Functions execution (default: ``request``'s)."""
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
            aws_requests=list(aws_requests or []) or None,
            execution_arn=execution_arn or (request.execution_arn if request else None),
            requester=requester_of(request),
        )
        item = event_item(event)
        written = self._sink([item]) or []
        if written:
            chained = written[0]
            event = event.model_copy(update={name: chained[name] for name in CHAIN_ATTRIBUTES if name in chained})
        return event

    def recorded(self, subject: str, *event_types: AuditEventType) -> bool:
        """Whether ``subject`` already has a record of one of ``event_types`` (a retried step writes its own once)."""
        return any(event.event_type in event_types for event in self.for_subject(subject))

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
    document = drop_none(event.model_dump(mode="json", exclude_none=True))
    for name in CHAIN_ATTRIBUTES:
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
    kind: str  # "missing" (deleted) | "edited" | "previous_hash" | "tail" | "anchor" (differs from the export)
    detail: str
    event_key: str | None = None
    subject: str | None = None


class StreamAnchor(BaseModel):
    """One stream's head when its day was exported: what the table must still hold."""

    last_sequence: int = 0  # 0: the stream had no record
    head_hash: str | None = None  # record_hash of the last record
    records: int = 0  # records exported (fewer than last_sequence if some had expired already)
    first_retain_until: int | None = None  # retain_until of sequence 1 (None: kept forever, or not exported)
    last_retain_until: int | None = None  # retain_until of the last record
    key: str | None = None  # the stream's JSON-lines object
    sha256: str | None = None  # of that object


class AuditManifest(BaseModel):
    """A closed day's anchor outside the table (``<prefix><day>/manifest.json`` in the export bucket)."""

    format: str = "accessctl-audit-manifest/1"
    day: str
    table: str
    exported_at: str
    shards: int = STREAM_SHARDS
    streams: dict[str, StreamAnchor]  # every shard of the day, "YYYY-MM-DD#k" -> its head


class VerifyReport(BaseModel):
    since: str
    until: str
    streams: int = 0
    records: int = 0
    expired: int = 0  # records gone because their retain_until had passed (DynamoDB TTL), not breaks
    anchored_days: list[str] = Field(default_factory=list)  # days compared with their export manifest
    seconds: float = 0.0
    ok: bool = True
    first_break: ChainBreak | None = None


def days_between(since: str, until: str) -> list[str]:
    start = datetime.fromisoformat(since[:10]).date()
    end = datetime.fromisoformat(until[:10]).date()
    return [(start + timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


def verify(
    table: Any,
    since: str,
    until: str,
    shards: int = STREAM_SHARDS,
    *,
    anchors: Mapping[str, AuditManifest] | None = None,
    now: datetime | None = None,
) -> VerifyReport:
    """Walk every stream of every day from ``since`` to ``until`` (whole days: a chain starts at its
    day's genesis) and report the first break, in (day, shard, sequence) order.

    Retention: a record may be absent only if it may have expired (DynamoDB's TTL deletes in no
    particular order, record and link separately, up to days late). A gap at sequence ``s`` is
    accepted as expiry when ``s`` certainly or possibly had ``retain_until <= now``:

    - its link survives: the link's ``retain_until`` (the record's own) must have passed;
    - its link is gone too: a lower bound of its ``retain_until`` must have passed. The bound is the
      previous surviving record's (or link's) ``retain_until`` minus :data:`APPEND_DELAY_BOUND`
      (``s`` was appended after it); while nothing before ``s`` survived (the stream's start, or a
      run of gaps from it whose records and links are all gone), the anchor's ``first_retain_until``,
      else the day's start plus the retention of the next surviving record.

    A record without ``retain_until`` never expires, so with retention off every gap is a deletion,
    as before; inside the retention horizon (``retain_until`` in the future) a deleted record is
    found whatever the current setting. An edited record is found whether or not it is expiring.

    ``anchors`` (day -> manifest): each anchored day's streams must also end where the export saw
    them end (same last sequence and record hash), unless that last record has expired since.
    """
    started = time.perf_counter()
    now_epoch = int((now or datetime.now(UTC)).timestamp())
    report = VerifyReport(since=since, until=until)
    for day in days_between(since, until):
        manifest = (anchors or {}).get(day)
        if manifest is not None:
            report.anchored_days.append(day)
        for shard in range(shards):
            stream = f"{day}#{shard}"
            anchor = manifest.streams.get(stream, StreamAnchor()) if manifest is not None else None
            walk = _verify_stream(table, stream, now_epoch, anchor)
            report.records += walk.records
            report.expired += walk.expired
            report.streams += 1 if walk.records or walk.expired or walk.found else 0
            if walk.found is not None:
                report.ok, report.first_break = False, walk.found
                report.seconds = time.perf_counter() - started
                return report
    report.seconds = time.perf_counter() - started
    return report


def stream_items(table: Any, stream: str) -> Iterator[dict[str, Any]]:
    query: dict[str, Any] = {"IndexName": STREAM_INDEX, "KeyConditionExpression": Key("stream").eq(stream)}
    while True:
        with transient_errors_surface():
            page = table.query(**query)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def linked_record(table: Any, stream: str, sequence: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The link of a sequence and its record, read consistently from the table (not the index)."""
    with transient_errors_surface():
        link = table.get_item(Key=link_key(stream, sequence), ConsistentRead=True).get("Item")
    if link is None:
        return None, None
    key = {"subject": link["record_subject"], "event_key": link["record_event_key"]}
    with transient_errors_surface():
        record = table.get_item(Key=key, ConsistentRead=True).get("Item")
    return link, record


def _retain(item: Mapping[str, Any] | None) -> int | None:
    value = None if item is None else item.get("retain_until")
    return None if value is None else int(value)


@dataclass
class _Walk:
    records: int = 0
    expired: int = 0
    last_sequence: int = 0  # the last position walked (a record, or a gap accepted as expiry)
    found: ChainBreak | None = None


class _StreamWalker:
    """One stream, in sequence order: see :func:`verify` for the rules."""

    def __init__(self, table: Any, stream: str, now: int, anchor: StreamAnchor | None) -> None:
        self.table, self.stream, self.now, self.anchor = table, stream, now, anchor
        self.walk = _Walk()
        self.previous: str | None = genesis_hash(stream)  # None: unknown across an expired gap
        self.previous_retain: int | None = None  # of the last surviving record or link
        self.kept = False  # a record or link of this stream has survived so far
        self.day_start = int(datetime.fromisoformat(stream[:10]).replace(tzinfo=UTC).timestamp())

    def run(self) -> _Walk:
        items = stream_items(self.table, self.stream)
        pending: dict[str, Any] | None = next(items, None)
        head = head_sequence(self.table, self.stream)
        expected = 1
        while pending is not None or expected <= head:
            if pending is not None and int(pending["sequence"]) < expected:
                pending = next(items, None)  # seen already (read again across pages)
                continue
            if pending is not None and int(pending["sequence"]) == expected:
                item, pending = pending, next(items, None)
            else:
                # Not in the index: gone, or written so recently that the index has not caught up.
                link, record = linked_record(self.table, self.stream, expected)
                if record is None:
                    self.walk.found = self._gap(expected, link, pending)
                    if self.walk.found is not None:
                        return self.walk
                    expected += 1
                    continue
                item = record
            self.walk.found = self._check(expected, item)
            if self.walk.found is not None:
                return self.walk
            expected += 1
        self.walk.found = self._tail() or self._against_anchor()
        return self.walk

    def _gap(self, sequence: int, link: dict[str, Any] | None, following: dict[str, Any] | None) -> ChainBreak | None:
        if link is not None:
            retain = _retain(link)
            may_have_expired = retain is not None and retain <= self.now
        else:
            bound = self._retain_lower_bound(following)
            may_have_expired = bound is not None and bound <= self.now
        if not may_have_expired:
            return ChainBreak(
                stream=self.stream,
                sequence=sequence,
                kind="missing",
                detail=f"record {sequence} of {self.stream} is missing (deleted)",
                event_key=link["record_event_key"] if link else None,
                subject=link["record_subject"] if link else None,
            )
        self.walk.expired += 1
        self.walk.last_sequence = sequence
        self.previous = str(link["record_hash"]) if link is not None else None
        if link is not None:
            self.previous_retain = _retain(link)
            self.kept = True
        return None

    def _retain_lower_bound(self, following: dict[str, Any] | None) -> int | None:
        """The least ``retain_until`` a record whose record and link are both gone can have had."""
        if self.kept:  # a record or link before it survived: it was appended after that one
            if self.previous_retain is None:
                return None
            return self.previous_retain - int(APPEND_DELAY_BOUND.total_seconds())
        # Nothing before it survived (only gaps whose record and link are both gone): the stream's start.
        if self.anchor is not None and self.anchor.first_retain_until is not None:
            return self.anchor.first_retain_until - int(APPEND_DELAY_BOUND.total_seconds())
        retain = _retain(following)
        if following is None or retain is None:
            return None
        # Retention counts from when a record was chained: its ``chained_at`` if appended late, else its ``at``.
        return self.day_start + (retain - epoch_seconds(str(following.get("chained_at") or following["at"])))

    def _check(self, sequence: int, item: dict[str, Any]) -> ChainBreak | None:
        self.walk.records += 1
        self.walk.last_sequence = sequence
        position: dict[str, Any] = {"stream": self.stream, "sequence": sequence, "event_key": item.get("event_key")}
        position["subject"] = item.get("subject")
        if self.previous is not None and item.get("previous_hash") != self.previous:
            detail = f"record {sequence} does not chain to record {sequence - 1} (it or its predecessor was altered)"
            return ChainBreak(kind="previous_hash", detail=detail, **position)
        if record_hash(item) != item.get("record_hash"):
            detail = f"record {sequence} of {self.stream} does not match its hash (edited)"
            return ChainBreak(kind="edited", detail=detail, **position)
        self.previous = str(item["record_hash"])
        self.previous_retain = _retain(item)
        self.kept = True
        return None

    def _tail(self) -> ChainBreak | None:
        """The link of the last record walked witnesses it (unless both may have expired)."""
        last = self.walk.last_sequence
        if not last or self.previous is None:
            return None
        with transient_errors_surface():
            link = self.table.get_item(Key=link_key(self.stream, last), ConsistentRead=True).get("Item")
        if link is None:
            if self.previous_retain is not None and self.previous_retain <= self.now:
                return None
            detail = f"the chain link of the last record ({last}) of {self.stream} is missing"
            return ChainBreak(stream=self.stream, sequence=last, kind="tail", detail=detail)
        if link.get("record_hash") != self.previous:
            detail = f"the last record ({last}) of {self.stream} differs from what was appended"
            return ChainBreak(stream=self.stream, sequence=last, kind="tail", detail=detail)
        return None

    def _against_anchor(self) -> ChainBreak | None:
        anchor = self.anchor
        if anchor is None:
            return None
        last = self.walk.last_sequence
        if last > anchor.last_sequence:
            detail = (
                f"{self.stream} holds {last} records but had {anchor.last_sequence} when its day was exported "
                "(records added to a closed day)"
            )
            return ChainBreak(stream=self.stream, sequence=anchor.last_sequence + 1, kind="anchor", detail=detail)
        if not anchor.last_sequence:
            return None
        link, record = linked_record(self.table, self.stream, anchor.last_sequence)
        found = (record or link or {}).get("record_hash")
        if found is None:
            if anchor.last_retain_until is not None and anchor.last_retain_until <= self.now:
                return None  # the exported head has expired since: nothing left to compare
            detail = (
                f"{self.stream} had {anchor.last_sequence} records when its day was exported; "
                f"the table holds {last} (records and their links deleted)"
            )
            return ChainBreak(stream=self.stream, sequence=anchor.last_sequence, kind="anchor", detail=detail)
        if found != anchor.head_hash:
            detail = f"record {anchor.last_sequence} of {self.stream} differs from the exported head (rewritten)"
            return ChainBreak(stream=self.stream, sequence=anchor.last_sequence, kind="anchor", detail=detail)
        return None


def _verify_stream(table: Any, stream: str, now: int, anchor: StreamAnchor | None = None) -> _Walk:
    return _StreamWalker(table, stream, now, anchor).run()


def head_sequence(table: Any, stream: str) -> int:
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


def requester_of(request: AccessRequest | None) -> str | None:
    """Who asked, named the same way across sessions and channels (``AuditEvent.requester``).

    The company identity of the person a Slack or chat-ops bot request was made for; otherwise the
    signer's IAM role: the ARN resolved from IAM when the request was made, else the one derived
    from the verified assumed-role session ARN. Never a string the caller supplied.
    """
    if request is None:
        return None
    if request.requester is not None:
        return request.requester.identity
    return request.role_arn or role_arn_of_session(request.principal_arn)
