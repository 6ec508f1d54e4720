"""The audit outbox: audit records whose write failed after what they record was done, kept in a
queue until they are appended.

Drift remediation changes EC2, RDS and IAM first and audits after: a fix applied cannot be taken
back because its record could not be written. When appending to the chain fails (DynamoDB
unavailable, or throttling or contention beyond the chain's retries), the writer sends the records,
complete and unchained, exactly as they would have been appended (their ``event_id``, ``at`` and
``event_key`` kept), to an SQS queue (:class:`AuditOutbox`). ``ReplayAuditOutboxFunction`` consumes
it and appends them through the same :class:`accessctl.audit.AuditChain`
(:func:`replay_message`). Only if the queue cannot be reached either are the records lost; the
caller then reports and alarms with their number.

Appending is idempotent. A record's key (``subject``, ``event_key``) names it uniquely (its
``event_id`` is a fresh UUID), so a record found in the table is one that was already written: a
chunk whose transaction committed but whose answer was lost, or a message delivered twice. Such
records are skipped; the others are chained at the head of their streams. A replayed record keeps
its original time, so it is found by queries at that time; the chain gives it the next sequence of
its day's stream, so verification walks it like any other record.

A message is JSON: ``{"format": "accessctl-audit-outbox/1", "deferred_at", "reason", "records"}``.
A chunk whose JSON exceeds :data:`MAX_MESSAGE_BYTES` is split over several messages; a single
record too large on its own travels gzip-compressed (``"encoding": "gzip+base64"``, ``records`` the
base64 text of the compressed JSON list).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from pydantic import BaseModel, ConfigDict, ValidationError

from accessctl.audit import CHAIN_ATTRIBUTES, AuditChain, AuditChainError, event_from_item, event_item
from accessctl.aws import transient_errors_surface
from accessctl.models import precise_now
from accessctl.observability import logger, metrics

OUTBOX_FORMAT = "accessctl-audit-outbox/1"
GZIP = "gzip+base64"
# SQS takes up to 256 KiB per message (attributes included): room for the envelope.
MAX_MESSAGE_BYTES = 240_000
_SERIALIZER = TypeSerializer()


class OutboxMessageError(ValueError):
    """A message that is not an outbox message of unchained audit records: nothing of it is written."""


class OutboxSendError(RuntimeError):
    """Records that could be sent to the outbox neither: ``unsent`` of them are lost."""

    def __init__(self, message: str, unsent: int) -> None:
        super().__init__(message)
        self.unsent = unsent


# ------------------------------------------------------------------ sending


def _record_json(record: dict[str, Any]) -> str:
    # ASCII: SQS refuses some code points (lone surrogates among them) that a record's text may hold.
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def encode_messages(
    records: list[dict[str, Any]], reason: str, deferred_at: str | None = None
) -> list[tuple[str, int]]:
    """The message bodies carrying ``records``, in order, each at most :data:`MAX_MESSAGE_BYTES`, with
    how many records each holds."""
    envelope = {"format": OUTBOX_FORMAT, "deferred_at": deferred_at or precise_now(), "reason": reason[:1000]}
    empty = len(json.dumps({**envelope, "records": []}).encode())
    bodies: list[tuple[str, int]] = []
    current: list[str] = []
    size = empty
    for text in (_record_json(record) for record in records):
        length = len(text.encode()) + 1
        if empty + length > MAX_MESSAGE_BYTES:  # too large for any message: alone, compressed
            if current:
                bodies.append((_body(envelope, current), len(current)))
                current, size = [], empty
            packed = base64.b64encode(gzip.compress(f"[{text}]".encode())).decode()
            body = json.dumps({**envelope, "encoding": GZIP, "records": packed})
            if len(body.encode()) > MAX_MESSAGE_BYTES:
                raise OutboxSendError(
                    f"an audit record of {length} bytes does not fit an outbox message: none sent", len(records)
                )
            bodies.append((body, 1))
            continue
        if current and size + length > MAX_MESSAGE_BYTES:
            bodies.append((_body(envelope, current), len(current)))
            current, size = [], empty
        current.append(text)
        size += length
    if current:
        bodies.append((_body(envelope, current), len(current)))
    return bodies


def _body(envelope: dict[str, Any], records: list[str]) -> str:
    head = json.dumps(envelope)[:-1]
    return f'{head}, "records": [{",".join(records)}]}}'


class AuditOutbox:
    """Sends records that could not be appended to the outbox queue (``sqs:SendMessage`` only)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._lock = threading.Lock()  # Powertools' metric set is not thread-safe; writers are threads

    def defer(self, records: list[dict[str, Any]], cause: BaseException) -> None:
        """Send ``records``; raise :class:`OutboxSendError` (with how many were not sent) if that fails."""
        reason = f"{type(cause).__name__}: {cause}"
        bodies = encode_messages(records, reason)
        sent = 0
        for body, count in bodies:
            try:
                with transient_errors_surface():
                    self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body)
            except Exception as error:
                unsent = len(records) - sent
                logger.exception("audit outbox unreachable", extra={"records": unsent, "cause": reason})
                raise OutboxSendError(
                    f"{unsent} audit records could not be sent to the outbox: {type(error).__name__}: {error}",
                    unsent,
                ) from error
            sent += count
        logger.warning("audit records deferred to the outbox", extra={"records": len(records), "cause": reason})
        with self._lock:
            metrics.add_metric(name="AuditRecordsDeferred", unit="Count", value=len(records))


# ------------------------------------------------------------------ replaying


def decode_records(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict) or message.get("format") != OUTBOX_FORMAT:
        raise OutboxMessageError(f"not an audit outbox message (format {OUTBOX_FORMAT} expected)")
    records = message.get("records")
    if message.get("encoding") == GZIP:
        try:
            records = json.loads(gzip.decompress(base64.b64decode(str(records), validate=True)))
        except (ValueError, OSError, EOFError) as error:
            raise OutboxMessageError(f"records not {GZIP}: {error}") from error
    elif message.get("encoding") is not None:
        raise OutboxMessageError(f"unknown encoding {message.get('encoding')!r}")
    if not isinstance(records, list) or not records:
        raise OutboxMessageError("records must be a non-empty list")
    return records


def parse_message(body: str) -> list[dict[str, Any]]:
    """The records of one message, each checked to be an unchained audit record as the chain takes it."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise OutboxMessageError(f"message is not JSON: {error}") from error
    records = decode_records(message)
    checked: list[dict[str, Any]] = []
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise OutboxMessageError(f"record {position} is not an object")
        chained = sorted(set(CHAIN_ATTRIBUTES) & record.keys())  # written by the chain only: refused
        if chained:
            raise OutboxMessageError(f"record {position} carries chain attributes ({', '.join(chained)})")
        try:
            event = event_from_item(record)
        except (ValidationError, ValueError, TypeError) as error:
            raise OutboxMessageError(f"record {position} is not an audit record: {error}") from error
        if event_item(event) != record:
            raise OutboxMessageError(
                f"record {position} ({record.get('subject')}, {record.get('event_key')}) is not in the stored form"
            )
        checked.append(record)
    return checked


@dataclass(frozen=True)
class ReplayResult:
    replayed: int  # appended to the chain now
    already_written: int  # found in the table: written before (a lost answer, a second delivery)


class OutboxReplayer:
    """Appends an outbox message's records that the table does not hold yet (idempotent)."""

    def __init__(self, dynamodb: Any, table_name: str, max_attempts: int = 25) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._chain = AuditChain(dynamodb, table_name, max_attempts=max_attempts)

    def replay(self, body: str) -> ReplayResult:
        records = parse_message(body)
        missing = self._missing(records)
        if missing:
            try:
                # Chained now (today's stream, retention from now), found by their own time.
                self._chain.append(missing, chained_at=precise_now())
            except AuditChainError:
                # Another delivery of the same message may have appended them meanwhile: a record that
                # exists makes every attempt's transaction fail its condition.
                if self._missing(missing):
                    raise
                missing = []
        return ReplayResult(replayed=len(missing), already_written=len(records) - len(missing))

    def _missing(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        present = set(self._present((record["subject"], record["event_key"]) for record in records))
        return [record for record in records if (record["subject"], record["event_key"]) not in present]

    def _present(self, keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """The keys the table holds, read consistently (BatchGetItem: up to 100 keys a call)."""
        pending = [{"subject": _SERIALIZER.serialize(s), "event_key": _SERIALIZER.serialize(k)} for s, k in set(keys)]
        while pending:
            request = {
                self._table_name: {
                    "Keys": pending[:100],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#s, event_key",
                    "ExpressionAttributeNames": {"#s": "subject"},
                }
            }
            pending = pending[100:]
            with transient_errors_surface():
                answer = self._dynamodb.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self._table_name, []):
                yield item["subject"]["S"], item["event_key"]["S"]
            unprocessed = answer.get("UnprocessedKeys", {}).get(self._table_name, {}).get("Keys", [])
            if unprocessed:
                time.sleep(0.05)  # DynamoDB returns keys it could not read now (throttled): ask again
            pending += unprocessed


class OutboxSettings(BaseModel):
    """What the outbox's consumer reads from the environment (``AUDIT_TABLE``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    audit_table: str


# The consumer's DynamoDB client knows just these (accessctl.aws.client): existence, chain head, append.
REPLAY_DYNAMODB_OPERATIONS = frozenset({"BatchGetItem", "Query", "TransactWriteItems"})


@cache
def default_replayer() -> OutboxReplayer:
    """Built once per process from the environment (a bad deployment fails at cold start)."""
    from accessctl.aws import client

    settings = OutboxSettings.model_validate({name.lower(): value for name, value in os.environ.items()})
    return OutboxReplayer(client("dynamodb", REPLAY_DYNAMODB_OPERATIONS), settings.audit_table)
