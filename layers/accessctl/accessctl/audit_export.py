"""The daily export of closed audit days to S3 (Object Lock): long-term keeping, and the chain's anchor.

For each closed day (every record of it is written: the day ended more than :data:`CLOSE_GRACE`
ago) and each of its streams, the records in sequence order go to one JSON-lines object,
``<prefix><day>/stream-<k>.jsonl`` (each line the stored item, canonical JSON: its
``record_hash`` can be recomputed from the line). A manifest, ``<prefix><day>/manifest.json``
(:class:`accessctl.audit.AuditManifest`), is written last and holds every stream's head: last
sequence, its record hash, and the retention of the first and last record. That manifest is the
anchor :func:`accessctl.audit.verify` compares the table with.

Idempotent and write-once: an object that exists is read, never overwritten (the bucket's Object
Lock would keep the first version anyway, and a second version would hide it); a stream object
that exists but differs from the table now is kept, the manifest describes what it holds, and
the difference is reported (``mismatched``) and audited. A day whose manifest exists is done; a
missing AUDIT_EXPORTED record for it (the audit write failed after the manifest) is written then.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from accessctl.audit import (
    STREAM_SHARDS,
    AuditLog,
    AuditManifest,
    StreamAnchor,
    head_sequence,
    linked_record,
    plain,
    stream_items,
)
from accessctl.aws import call, error_code, transient_errors_surface
from accessctl.errors import BadRequestError
from accessctl.models import AuditEventType, precise_now

EXPORT_PREFIX = "audit/"
CLOSE_GRACE = timedelta(minutes=15)  # a scan's batch of records is written within minutes of their time
LOOKBACK_DAYS = 7  # a run also exports the closed days of the last week that an earlier run missed
ACTOR = "exporter"
_MISSING = ("NoSuchKey", "404", "NotFound")
_EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class DayExport(BaseModel):
    day: str
    status: Literal["EXPORTED", "ALREADY_EXPORTED"]
    manifest_key: str
    records: int = 0
    objects_written: int = 0
    mismatched: list[str] = Field(default_factory=list)  # streams whose existing object differs from the table


class ExportReport(BaseModel):
    bucket: str
    days: list[DayExport] = Field(default_factory=list)


def manifest_key(day: str, prefix: str = EXPORT_PREFIX) -> str:
    return f"{prefix}{day}/manifest.json"


def stream_key(day: str, shard: int, prefix: str = EXPORT_PREFIX) -> str:
    return f"{prefix}{day}/stream-{shard}.jsonl"


def closed_days(now: datetime, lookback_days: int = LOOKBACK_DAYS) -> list[str]:
    """The days of the last ``lookback_days`` whose every record is written, oldest first."""
    last_closed = (now - CLOSE_GRACE).date() - timedelta(days=1)
    return [(last_closed - timedelta(days=back)).isoformat() for back in range(lookback_days - 1, -1, -1)]


def _check_closed(day: str, now: datetime) -> None:
    try:
        parsed = datetime.fromisoformat(day).date()
    except ValueError as error:
        raise BadRequestError(f"not a day (YYYY-MM-DD): {day!r}") from error
    if datetime.combine(parsed + timedelta(days=1), datetime.min.time(), UTC) + CLOSE_GRACE > now:
        raise BadRequestError(f"{day} is not closed yet: records may still be written to it")


def stream_records(table: Any, stream: str) -> list[dict[str, Any]]:
    """A stream's stored records in sequence order: the index, with what it lags filled from the links."""
    by_sequence = {int(item["sequence"]): item for item in stream_items(table, stream)}
    for sequence in range(1, head_sequence(table, stream) + 1):
        if sequence not in by_sequence:
            _, record = linked_record(table, stream, sequence)
            if record is not None:
                by_sequence[sequence] = record
    return [plain(by_sequence[sequence]) for sequence in sorted(by_sequence)]


def json_lines(records: list[dict[str, Any]]) -> bytes:
    lines = (json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for record in records)
    return "".join(f"{line}\n" for line in lines).encode()


def _anchor(body: bytes, key: str | None) -> StreamAnchor:
    records = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    if not records:
        return StreamAnchor()
    first, last = records[0], records[-1]
    return StreamAnchor(
        last_sequence=int(last["sequence"]),
        head_hash=str(last["record_hash"]),
        records=len(records),
        first_retain_until=first.get("retain_until") if int(first["sequence"]) == 1 else None,
        last_retain_until=last.get("retain_until"),
        key=key,
        sha256=hashlib.sha256(body).hexdigest(),
    )


class ExportBucket:
    """Write-once access to the export bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def read(self, key: str) -> bytes | None:
        try:
            with transient_errors_surface():
                answer = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error_code(error) in _MISSING:
                return None
            raise
        return bytes(answer["Body"].read())

    def put_once(self, key: str, body: bytes, content_type: str) -> bytes:
        """Write ``body`` unless the key exists (checked first, and conditionally at the write);
        returns what the key holds afterwards."""
        existing = self.read(key)
        if existing is not None:
            return existing
        try:
            call(
                self.s3.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",  # Object Lock requires an integrity checksum on PUT
                IfNoneMatch="*",
            )
        except ClientError as error:
            if error_code(error) not in _EXISTS:
                raise
            return self.read(key) or body  # another run wrote it first
        return body


def export_day(
    table: Any,
    bucket: ExportBucket,
    day: str,
    audit: AuditLog,
    *,
    table_name: str,
    shards: int = STREAM_SHARDS,
    prefix: str = EXPORT_PREFIX,
) -> DayExport:
    key = manifest_key(day, prefix)
    existing = bucket.read(key)
    if existing is not None:
        manifest = AuditManifest.model_validate_json(existing)
        _audit_once(day, key, manifest, [], bucket, audit)
        return DayExport(
            day=day,
            status="ALREADY_EXPORTED",
            manifest_key=key,
            records=sum(anchor.records for anchor in manifest.streams.values()),
        )
    streams: dict[str, StreamAnchor] = {}
    written, mismatched = 0, []
    for shard in range(shards):
        stream = f"{day}#{shard}"
        body = json_lines(stream_records(table, stream))
        if not body:
            streams[stream] = StreamAnchor()
            continue
        object_key = stream_key(day, shard, prefix)
        stored = bucket.put_once(object_key, body, "application/x-ndjson")
        written += stored is body
        if stored != body:
            mismatched.append(stream)  # exported before, and the table differs now: keep the first
        streams[stream] = _anchor(stored, object_key)
    manifest = AuditManifest(day=day, table=table_name, exported_at=precise_now(), shards=shards, streams=streams)
    document = json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=1).encode()
    bucket.put_once(key, document, "application/json")
    _audit_once(day, key, manifest, mismatched, bucket, audit)
    return DayExport(
        day=day,
        status="EXPORTED",
        manifest_key=key,
        records=sum(anchor.records for anchor in streams.values()),
        objects_written=written + 1,
        mismatched=mismatched,
    )


def _audit_once(
    day: str, key: str, manifest: AuditManifest, mismatched: list[str], bucket: ExportBucket, audit: AuditLog
) -> None:
    subject = f"audit-export/{day}"
    if any(event.event_type == AuditEventType.AUDIT_EXPORTED for event in audit.for_subject(subject)):
        return
    audit.append(
        AuditEventType.AUDIT_EXPORTED,
        subject=subject,
        actor=ACTOR,
        outcome="MISMATCH" if mismatched else "EXPORTED",
        reason=f"streams differ from their earlier export: {', '.join(mismatched)}" if mismatched else None,
        details={
            "bucket": bucket.bucket,
            "manifest_key": key,
            "heads": {stream: anchor.last_sequence for stream, anchor in sorted(manifest.streams.items())},
            "records": sum(anchor.records for anchor in manifest.streams.values()),
            "mismatched": mismatched,
        },
    )


def export_closed_days(
    table: Any,
    s3: Any,
    bucket_name: str,
    audit: AuditLog,
    *,
    table_name: str,
    now: datetime | None = None,
    day: str | None = None,
    lookback_days: int = LOOKBACK_DAYS,
) -> ExportReport:
    """Export one closed ``day``, or every closed day of the last ``lookback_days`` not yet exported."""
    moment = now or datetime.now(UTC)
    if day is not None:
        _check_closed(day, moment)
    days = [day] if day is not None else closed_days(moment, lookback_days)
    bucket = ExportBucket(s3, bucket_name)
    report = ExportReport(bucket=bucket_name)
    for each in days:
        report.days.append(export_day(table, bucket, each, audit, table_name=table_name))
    return report


def load_manifests(s3: Any, bucket_name: str, days: list[str], prefix: str = EXPORT_PREFIX) -> dict[str, AuditManifest]:
    """The export manifests of ``days`` that exist (a day not exported yet has none)."""
    bucket = ExportBucket(s3, bucket_name)
    manifests: dict[str, AuditManifest] = {}
    for day in days:
        body = bucket.read(manifest_key(day, prefix))
        if body is not None:
            manifests[day] = AuditManifest.model_validate_json(body)
    return manifests
