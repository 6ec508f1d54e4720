"""An auditor's check of the audit export in S3, made without the controller's API.

The controller's exporter writes each closed day to the export bucket (Object Lock):
``<prefix><day>/stream-<k>.jsonl`` (the stream's stored records in sequence order, one canonical
JSON line each) and, last, ``<prefix><day>/manifest.json`` (per stream: ``last_sequence``,
``head_hash``, ``records``, ``first_retain_until``, ``last_retain_until``, the object's ``key``
and ``sha256``). This module reads both with the caller's own S3 credentials and checks, per
stream, that the object exists and has the manifest's sha256, that every line parses and
re-hashes to its ``record_hash``, that the lines chain (``previous_hash``; the genesis hash for
sequence 1) in contiguous sequence order, and that the object ends at the manifest's head with the
manifest's number of records.

Gaps: the exporter writes what the table held when it ran, and DynamoDB's TTL may already have
removed records whose ``retain_until`` had passed. A missing sequence is accepted as expired by the
controller's own rule (``accessctl.audit.verify``), judged at the manifest's ``exported_at``: a
lower bound of the missing record's ``retain_until`` must have passed by then. The bound is the
previous exported record's ``retain_until`` minus one hour (it was appended after that record,
within an hour of its time); before the first exported record, the day's start plus the next
record's retention. A record without ``retain_until`` never expires, so without retention every gap
is a deletion. Across an accepted gap the next record's ``previous_hash`` cannot be checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .audit_chain import genesis_hash, record_hash
from .errors import AccessctlError

EXPORT_PREFIX = "audit/"
MANIFEST_FORMAT = "accessctl-audit-manifest/"
# accessctl.audit.APPEND_DELAY_BOUND: a record is committed at most this long after its ``at``.
APPEND_DELAY_BOUND_SECONDS = 3600
_MISSING_KEY = ("NoSuchKey", "404", "NotFound")
# GetObjectRetention on an object without retention: NoSuchObjectLockConfiguration; in a bucket
# without Object Lock: InvalidRequest ("Bucket is missing Object Lock Configuration").
_NOT_LOCKED = ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError", "InvalidRequest")


class ExportAccessError(AccessctlError):
    """The bucket could not be read: no credentials, access denied, no such bucket, network trouble."""


@dataclass
class ExportBreak:
    """The first thing in a stream (or a day's manifest) that does not verify."""

    stream: str | None
    sequence: int | None  # the record's position in its stream (None: the object or manifest as a whole)
    kind: str
    detail: str
    key: str | None = None  # the S3 object
    line: int | None = None  # 1-based line of that object


@dataclass
class Retention:
    mode: str
    retain_until: str  # ISO 8601


@dataclass
class StreamCheck:
    stream: str
    key: str | None = None
    records: int = 0  # lines that verified
    expired: int = 0  # sequences absent from the export because they had expired before it ran
    last_sequence: int = 0
    sha256_ok: bool | None = None  # None: no object to compare
    retention: Retention | None = None
    found: ExportBreak | None = None


@dataclass
class DayCheck:
    day: str
    manifest_key: str
    status: str = "not_exported"  # "verified" | "broken" | "not_exported"
    exported_at: str | None = None
    manifest_retention: Retention | None = None
    streams: list[StreamCheck] = field(default_factory=list)
    found: ExportBreak | None = None  # a break of the day itself (its manifest, or not exported with --require-all)

    @property
    def breaks(self) -> list[ExportBreak]:
        found = [self.found] if self.found else []
        return found + [stream.found for stream in self.streams if stream.found]


@dataclass
class ExportReport:
    bucket: str
    prefix: str
    since: str
    until: str
    days: list[DayCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def breaks(self) -> list[ExportBreak]:
        return [found for day in self.days for found in day.breaks]

    @property
    def ok(self) -> bool:
        return not self.breaks

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["ok"] = self.ok
        document["breaks"] = [asdict(found) for found in self.breaks]
        document["records"] = sum(stream.records for day in self.days for stream in day.streams)
        document["expired"] = sum(stream.expired for day in self.days for stream in day.streams)
        return document


# ---------------------------------------------------------------------- reading the bucket


class ExportBucketReader:
    """GetObject and GetObjectRetention on the export bucket; anything but a missing key is an access error."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key)
            return bytes(answer["Body"].read())
        except ClientError as error:
            if _code(error) in _MISSING_KEY:
                return None
            raise self._access_error("GetObject", key, error) from error
        except BotoCoreError as error:
            raise self._access_error("GetObject", key, error) from error

    def retention(self, key: str) -> Retention | None:
        """The object's Object Lock retention, or None when it has none."""
        try:
            answer = self.s3.get_object_retention(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _code(error) in _NOT_LOCKED:
                return None
            raise self._access_error("GetObjectRetention", key, error) from error
        except BotoCoreError as error:
            raise self._access_error("GetObjectRetention", key, error) from error
        found = answer.get("Retention") or {}
        until = found.get("RetainUntilDate")
        if not found.get("Mode") or until is None:
            return None
        instant = until.astimezone(UTC).isoformat() if isinstance(until, datetime) else str(until)
        return Retention(mode=str(found["Mode"]), retain_until=instant)

    def _access_error(self, operation: str, key: str, error: Exception) -> ExportAccessError:
        if isinstance(error, ClientError):
            reason = f"{_code(error)}: {error.response.get('Error', {}).get('Message') or ''}".rstrip(": ")
        else:
            reason = str(error)
        return ExportAccessError(f"{operation} s3://{self.bucket}/{key} failed ({reason})")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# ---------------------------------------------------------------------- one stream


def _epoch(instant: str) -> int:
    return int(datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp())


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    yield from enumerate(lines, start=1)


class _StreamWalk:
    """One stream object against its manifest entry; see the module's docstring for the rules."""

    def __init__(self, stream: str, anchor: Mapping[str, Any], exported_at: int, check: StreamCheck) -> None:
        self.stream, self.anchor, self.exported_at, self.check = stream, anchor, exported_at, check
        self.previous: str | None = genesis_hash(stream)  # None: unknown across an expired gap
        self.previous_retain: int | None = None
        self.last_hash: str | None = None
        self.day_start = int(datetime.fromisoformat(stream[:10]).replace(tzinfo=UTC).timestamp())

    def run(self, body: bytes) -> ExportBreak | None:
        for number, raw in _lines(body):
            found = self._line(number, raw)
            if found is not None:
                return found
        return self._ends_at_head()

    def _break(self, sequence: int | None, kind: str, detail: str, line: int | None = None) -> ExportBreak:
        return ExportBreak(
            stream=self.stream, sequence=sequence, kind=kind, detail=detail, key=self.check.key, line=line
        )

    def _line(self, number: int, raw: bytes) -> ExportBreak | None:
        expected = self.check.last_sequence + 1
        try:
            record = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            record = None
        sequence = _integer(record.get("sequence")) if isinstance(record, dict) else None
        if not isinstance(record, dict) or sequence is None or not isinstance(record.get("record_hash"), str):
            return self._break(expected, "unparsable", f"line {number} is not a stored audit record", number)
        if record.get("stream") != self.stream:
            detail = f"line {number} is a record of stream {record.get('stream')!r}, not {self.stream}"
            return self._break(sequence, "misplaced", detail, number)
        if sequence < expected:
            detail = f"line {number} holds record {sequence} after record {expected - 1} (out of order or repeated)"
            return self._break(sequence, "order", detail, number)
        for absent in range(expected, sequence):
            if not self._may_have_expired(record):
                detail = f"record {absent} of {self.stream} is missing from the export (deleted)"
                return self._break(absent, "missing", detail, number)
            self.check.expired += 1
            self.previous = None
        return self._chained(number, sequence, record)

    def _chained(self, number: int, sequence: int, record: dict[str, Any]) -> ExportBreak | None:
        if self.previous is not None and record.get("previous_hash") != self.previous:
            detail = f"record {sequence} does not chain to record {sequence - 1} (it or its predecessor was altered)"
            return self._break(sequence, "previous_hash", detail, number)
        if record_hash(record) != record["record_hash"]:
            return self._break(sequence, "edited", f"record {sequence} does not match its hash (edited)", number)
        self.check.records += 1
        self.check.last_sequence = sequence
        self.previous = self.last_hash = str(record["record_hash"])
        self.previous_retain = _integer(record.get("retain_until"))
        return None

    def _may_have_expired(self, following: Mapping[str, Any]) -> bool:
        """Whether a record absent before ``following`` may have expired before the export ran."""
        bound = self._retain_lower_bound(following)
        return bound is not None and bound <= self.exported_at

    def _retain_lower_bound(self, following: Mapping[str, Any]) -> int | None:
        if self.check.records:  # it was appended after the last exported record
            if self.previous_retain is None:
                return None
            return self.previous_retain - APPEND_DELAY_BOUND_SECONDS
        first = _integer(self.anchor.get("first_retain_until"))
        if first is not None:
            return first - APPEND_DELAY_BOUND_SECONDS
        retain = _integer(following.get("retain_until"))
        # Retention counts from when a record was chained: its ``chained_at`` if appended late, else its ``at``.
        chained = following.get("chained_at") or following.get("at")
        if retain is None or not isinstance(chained, str):
            return None
        try:
            return self.day_start + (retain - _epoch(chained))
        except ValueError:
            return None

    def _ends_at_head(self) -> ExportBreak | None:
        last, head = self.check.last_sequence, _integer(self.anchor.get("last_sequence")) or 0
        if last < head:
            detail = f"the object ends at record {last} but the manifest's last is {head} (truncated)"
            return self._break(last + 1, "truncated", detail)
        if last > head:
            detail = f"the object holds records up to {last} but the manifest's last is {head} (records added)"
            return self._break(head + 1, "extra", detail)
        if self.last_hash != self.anchor.get("head_hash"):
            return self._break(last, "head", f"record {last} differs from the manifest's head_hash (rewritten)")
        if self.check.records != self.anchor.get("records"):
            detail = f"the object holds {self.check.records} records, the manifest says {self.anchor.get('records')}"
            return self._break(None, "count", detail)
        if not self.check.sha256_ok:
            detail = "the object's sha256 differs from the manifest's (replaced after the export)"
            return self._break(None, "sha256", detail)
        return None


def check_stream(
    stream: str, anchor: Mapping[str, Any], body: bytes | None, exported_at: int, key: str | None = None
) -> StreamCheck:
    """Check one stream object (``None``: absent) against its manifest entry; the first break is ``found``.

    A break inside the object (a line edited, deleted, re-chained, unparsable) is reported at its
    position even when the object's sha256 differs too (``sha256_ok``); an object whose every line
    verifies but which does not end at the manifest's head, or is not the exported object, is
    reported after that.
    """
    check = StreamCheck(stream=stream, key=key)
    if body is None:
        check.found = ExportBreak(stream, None, "object_missing", f"{key} is missing", key=key)
        return check
    check.sha256_ok = hashlib.sha256(body).hexdigest() == anchor.get("sha256")
    check.found = _StreamWalk(stream, anchor, exported_at, check).run(body)
    if check.found is not None and not check.sha256_ok and check.found.kind != "sha256":
        check.found.detail += "; the object's sha256 differs from the manifest's too"
    return check


# ---------------------------------------------------------------------- days


def manifest_key(day: str, prefix: str = EXPORT_PREFIX) -> str:
    return f"{prefix}{day}/manifest.json"


def days_between(since: date, until: date) -> list[str]:
    return [(since + timedelta(days=offset)).isoformat() for offset in range((until - since).days + 1)]


def _manifest_break(key: str, detail: str) -> ExportBreak:
    return ExportBreak(stream=None, sequence=None, kind="manifest", detail=f"{key}: {detail}", key=key)


def _parse_manifest(day: str, key: str, body: bytes) -> tuple[dict[str, Any] | None, ExportBreak | None]:
    """The manifest as a document, or why it is not one of ``day``'s."""
    try:
        document = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        return None, _manifest_break(key, "not JSON")
    if not isinstance(document, dict) or not str(document.get("format", "")).startswith(MANIFEST_FORMAT):
        return None, _manifest_break(key, f"not an audit manifest ({MANIFEST_FORMAT}*)")
    streams, shards = document.get("streams"), _integer(document.get("shards"))
    if document.get("day") != day or not isinstance(streams, dict) or shards is None:
        return None, _manifest_break(key, f"not {day}'s manifest (day, shards or streams do not fit)")
    expected = {f"{day}#{shard}" for shard in range(shards)}
    if set(streams) != expected or not all(isinstance(anchor, dict) for anchor in streams.values()):
        return None, _manifest_break(key, f"its streams are not the {shards} shards of {day}")
    try:
        _epoch(str(document.get("exported_at")))
    except ValueError:
        return None, _manifest_break(key, "exported_at is not an instant")
    return document, None


@dataclass
class ExportVerifier:
    """Check every day of a range in one bucket; see :func:`verify_export`."""

    reader: ExportBucketReader
    prefix: str = EXPORT_PREFIX
    require_all: bool = False
    require_lock: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def day(self, day: str, report: ExportReport) -> DayCheck:
        key = manifest_key(day, self.prefix)
        check = DayCheck(day=day, manifest_key=key)
        body = self.reader.read(key)
        if body is None:
            if self.require_all:
                check.found = ExportBreak(None, None, "not_exported", f"{day} has no manifest ({key})", key=key)
                check.status = "broken"
            return check
        manifest, check.found = _parse_manifest(day, key, body)
        check.manifest_retention = self._lock(key, report, check)
        if manifest is not None:
            check.exported_at = str(manifest["exported_at"])
            exported_at = _epoch(check.exported_at)
            for stream, anchor in sorted(manifest["streams"].items(), key=lambda pair: int(pair[0].split("#")[1])):
                check.streams.append(self._stream(stream, anchor, exported_at, report))
        check.status = "broken" if check.breaks else "verified"
        return check

    def _stream(self, stream: str, anchor: Mapping[str, Any], exported_at: int, report: ExportReport) -> StreamCheck:
        if not _integer(anchor.get("last_sequence")):
            return StreamCheck(stream=stream)  # no record that day: nothing exported
        key = anchor.get("key")
        if not isinstance(key, str) or not key:
            found = ExportBreak(stream, None, "manifest", f"the manifest names no object for {stream}")
            return StreamCheck(stream=stream, found=found)
        check = check_stream(stream, anchor, self.reader.read(key), exported_at, key)
        if check.sha256_ok is not None:
            check.retention = self._lock(key, report, check)
        return check

    def _lock(self, key: str, report: ExportReport, check: StreamCheck | DayCheck) -> Retention | None:
        retention = self.reader.retention(key)
        if retention is None:
            if self.require_lock and check.found is None:
                stream = check.stream if isinstance(check, StreamCheck) else None
                check.found = ExportBreak(stream, None, "unlocked", f"{key} has no Object Lock retention", key=key)
            else:
                report.warnings.append(f"{key} has no Object Lock retention")
        elif _epoch(retention.retain_until) <= self.now.timestamp():
            report.warnings.append(f"{key}: its Object Lock retention ended at {retention.retain_until}")
        return retention


def verify_export(
    s3: Any,
    bucket: str,
    since: date,
    until: date,
    *,
    prefix: str = EXPORT_PREFIX,
    require_all: bool = False,
    require_lock: bool = False,
    now: datetime | None = None,
) -> ExportReport:
    """Check the exported days from ``since`` to ``until`` in ``bucket`` (an S3 client's reads only).

    A day without a manifest is ``not_exported`` (a break only with ``require_all``); an object
    without Object Lock retention is a warning (a break with ``require_lock``). Raises
    :class:`ExportAccessError` when the bucket cannot be read.
    """
    verifier = ExportVerifier(
        ExportBucketReader(s3, bucket), prefix, require_all, require_lock, now or datetime.now(UTC)
    )
    report = ExportReport(bucket=bucket, prefix=prefix, since=since.isoformat(), until=until.isoformat())
    for day in days_between(since, until):
        report.days.append(verifier.day(day, report))
    return report
