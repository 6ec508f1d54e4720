"""`accessctl audit verify-export`: an auditor checks the S3 export with their own credentials, not the API.

A real export (the controller's exporter, on the emulator over loopback) of a day with several
streams is made once; each test copies it, altered or not, into a bucket of its own (without
Object Lock, so it can be altered) and runs the CLI against that, reaching the emulator through
AWS_ENDPOINT_URL as an auditor's shell would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from accessctl.audit import AuditLog, record_hash
from accessctl.audit_export import export_closed_days, manifest_key
from accessctl_client.cli import main
from accessctl_local import moto_patches
from accessctl_local.emulator import Emulator
from tests.audit.support import delete_link, delete_record, write
from tests.support.template import create_table

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "auditor", "aws_secret_access_key": "auditor-secret"}
LOCKED = "accessctl-audit-export"
# The exporter stamps its manifest with the real time (exported_at), and expiry is judged at that time:
# so the days are recent. DAY: 18 records kept 30 days, exported now, all inside retention.
TODAY = datetime.now(UTC).date()
DAY = (TODAY - timedelta(days=2)).isoformat()
NOT_EXPORTED = (TODAY - timedelta(days=1)).isoformat()
# One day's retention: its expired records that TTL had removed (with their links) are not exported.
EXPIRING_DAY = (TODAY - timedelta(days=5)).isoformat()

pytestmark = pytest.mark.usefixtures("auditor_env")


@dataclass
class ExportedEstate:
    endpoint_url: str
    s3: Any
    streams: dict[str, list[dict[str, Any]]]  # DAY's streams -> their records in sequence order
    expired: int  # records of EXPIRING_DAY that TTL removed before the export


def _lines_of(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for r in records]


@pytest.fixture(scope="module")
def exported() -> Iterator[ExportedEstate]:
    emulator = Emulator()
    emulator.start()
    moto_patches.install_s3_object_retention()
    try:
        session = boto3.session.Session(region_name=REGION, **CREDENTIALS)
        dynamodb = session.client("dynamodb", endpoint_url=emulator.endpoint_url)
        create_table(dynamodb, "AuditTable", "audit")
        table = session.resource("dynamodb", endpoint_url=emulator.endpoint_url).Table("audit")
        s3 = session.client("s3", endpoint_url=emulator.endpoint_url)
        s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=LOCKED,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}},
            },
        )
        # Given a day of records over six subjects (so several streams), exported
        written = [
            write(table, f"{DAY}T{6 + n // 2:02d}:{n % 2 * 30:02d}:00.000000Z", subject=f"req-{n % 6}")
            for n in range(18)
        ]
        audit = AuditLog(table)
        export_closed_days(table, s3, LOCKED, audit, table_name="audit", day=DAY)
        # And a day with one day's retention whose first two records and a later one had expired
        # (TTL removed them with their links) when it was exported
        expiring = [
            write(table, f"{EXPIRING_DAY}T0{n}:00:00.000000Z", subject="req-x", retention_days=1) for n in range(6)
        ]
        for gone in (expiring[0], expiring[1], expiring[3]):
            delete_record(table, gone)
            delete_link(table, gone)
        export_closed_days(table, s3, LOCKED, audit, table_name="audit", day=EXPIRING_DAY)
        streams: dict[str, list[dict[str, Any]]] = {}
        for record in written:
            streams.setdefault(record["stream"], []).append(record)
        yield ExportedEstate(emulator.endpoint_url, s3, streams, expired=3)
    finally:
        moto_patches.uninstall_s3_object_retention()
        emulator.stop()


@pytest.fixture
def auditor_env(exported: ExportedEstate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The auditor's shell: their own static credentials, no profiles, S3 reached through AWS_ENDPOINT_URL."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "ACCESSCTL_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", exported.endpoint_url)


# An alteration of one stream object's lines (None: the object is removed).
Alteration = Callable[[list[str]], list[str] | None]


def copy_export(
    exported: ExportedEstate,
    *,
    stream: str | None = None,
    alter: Alteration | None = None,
    manifest: Callable[[bytes], bytes | None] | None = None,
) -> str:
    """Copy the locked export into a new bucket without Object Lock, altering one stream's object or
    DAY's manifest (None: removed)."""
    bucket = f"copy-{uuid.uuid4().hex[:12]}"
    s3 = exported.s3
    s3.create_bucket(Bucket=bucket)
    altered_key = f"audit/{DAY}/stream-{stream.split('#')[1]}.jsonl" if stream else None
    for listed in s3.list_objects_v2(Bucket=LOCKED, Prefix="audit/")["Contents"]:
        key = listed["Key"]
        body: bytes | None = s3.get_object(Bucket=LOCKED, Key=key)["Body"].read()
        if key == altered_key and alter is not None:
            lines = alter(body.decode().splitlines())
            body = None if lines is None else "".join(f"{line}\n" for line in lines).encode()
        if manifest is not None and key == manifest_key(DAY):
            body = manifest(body)
        if body is not None:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


Run = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def verify_export(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `accessctl audit verify-export --json`: its exit code and report."""

    def run(bucket: str, *options: str, since: str = DAY, until: str = DAY) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        arguments = ["audit", "verify-export", "--bucket", bucket, "--since", since, "--until", until, *options]
        code = main([*arguments, "--json"])
        return code, json.loads(capsys.readouterr().out)

    return run


def _longest(exported: ExportedEstate) -> str:
    return max(exported.streams, key=lambda stream: len(exported.streams[stream]))


def _rehashed(line: dict[str, Any]) -> dict[str, Any]:
    line["record_hash"] = record_hash(line)
    return line


def _edit(lines: list[str], index: int) -> list[str]:
    edited = json.loads(lines[index])
    edited["actor"] = "someone-else"
    return [*lines[:index], json.dumps(edited, sort_keys=True, separators=(",", ":")), *lines[index + 1 :]]


def _edit_and_rehash(lines: list[str], index: int) -> list[str]:
    edited = _rehashed({**json.loads(lines[index]), "actor": "someone-else"})
    return [*lines[:index], json.dumps(edited, sort_keys=True, separators=(",", ":")), *lines[index + 1 :]]


def _rechain_from(lines: list[str], index: int) -> list[str]:
    """Edit a record and re-chain every later one: internally consistent, but not what was exported."""
    records = [json.loads(line) for line in lines]
    records[index]["actor"] = "someone-else"
    for position in range(index, len(records)):
        if position > index:
            records[position]["previous_hash"] = records[position - 1]["record_hash"]
        _rehashed(records[position])
    return _lines_of(records)


# (alteration of the longest stream's lines, expected kind, expected sequence: None = the object as a whole,
#  -1 = the stream's last sequence)
ALTERATIONS: dict[str, tuple[Alteration, str, int | None]] = {
    "a line edited": (lambda lines: _edit(lines, 1), "edited", 2),
    "a line edited and re-hashed": (lambda lines: _edit_and_rehash(lines, 1), "previous_hash", 3),
    "a line deleted": (lambda lines: [lines[0], *lines[2:]], "missing", 2),
    "the last line removed": (lambda lines: lines[:-1], "truncated", -1),
    "a line repeated": (lambda lines: [lines[0], *lines], "order", 1),
    "a line that is not JSON": (lambda lines: [lines[0], "{not json", *lines[2:]], "unparsable", 2),
    "the stream rewritten and re-chained": (lambda lines: _rechain_from(lines, 1), "head", -1),
    "same records, other bytes": (
        lambda lines: [json.dumps(json.loads(line), sort_keys=True) for line in lines],
        "sha256",
        None,
    ),
    "the object removed": (lambda lines: None, "object_missing", None),
}


def test_given_an_intact_locked_export_when_verified_then_ok_with_every_record_and_lock(
    exported: ExportedEstate, verify_export: Run
) -> None:
    # When the auditor verifies the exported day in the locked bucket
    code, report = verify_export(LOCKED)

    # Then it holds: every stream's records verify, every object is locked, exit code 0
    assert code == 0 and report["ok"] and report["breaks"] == [] and report["warnings"] == []
    (day,) = report["days"]
    assert (day["day"], day["status"]) == (DAY, "verified")
    assert report["records"] == sum(len(records) for records in exported.streams.values())
    verified = {stream["stream"]: stream for stream in day["streams"] if stream["records"]}
    assert set(verified) == set(exported.streams) and len(verified) > 1
    assert all(stream["sha256_ok"] and stream["retention"]["mode"] == "COMPLIANCE" for stream in verified.values())
    assert day["manifest_retention"]["mode"] == "COMPLIANCE"


@pytest.mark.parametrize(("alter", "kind", "sequence"), ALTERATIONS.values(), ids=ALTERATIONS.keys())
def test_given_an_altered_copy_of_the_export_when_verified_then_the_first_break_is_where_it_was_altered(
    exported: ExportedEstate, verify_export: Run, alter: Alteration, kind: str, sequence: int | None
) -> None:
    # Given a copy of the export with one stream's object altered
    stream = _longest(exported)
    bucket = copy_export(exported, stream=stream, alter=alter)

    # When verified
    code, report = verify_export(bucket)

    # Then that stream breaks, at the altered position, and only it; exit code 1
    assert code == 1 and not report["ok"]
    (found,) = report["breaks"]
    last = exported.streams[stream][-1]["sequence"]
    assert (found["stream"], found["kind"], found["sequence"]) == (stream, kind, last if sequence == -1 else sequence)
    assert found["key"] == f"audit/{DAY}/stream-{stream.split('#')[1]}.jsonl"
    assert report["days"][0]["status"] == "broken"


def test_given_a_line_edited_when_verified_as_text_then_it_says_where(
    exported: ExportedEstate, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _longest(exported)
    bucket = copy_export(exported, stream=stream, alter=lambda lines: _edit(lines, 1))

    code = main(["audit", "verify-export", "--bucket", bucket, "--since", DAY, "--until", DAY])

    output = capsys.readouterr().out
    assert code == 1
    assert f"BROKEN at {stream} #2 (edited)" in output
    assert f"audit/{DAY}/stream-{stream.split('#')[1]}.jsonl line 2" in output


def test_given_a_day_without_manifest_when_verified_then_reported_not_exported_and_a_break_only_if_required(
    exported: ExportedEstate, verify_export: Run
) -> None:
    # Given a copy of the export whose manifest is gone, and a range with a day never exported
    bucket = copy_export(exported, manifest=lambda body: None)

    # When verified
    code, report = verify_export(bucket, until=NOT_EXPORTED)

    # Then both days are reported as not exported, which is no break by default
    assert code == 0 and report["ok"]
    assert [(day["day"], day["status"]) for day in report["days"]] == [
        (DAY, "not_exported"),
        (NOT_EXPORTED, "not_exported"),
    ]
    # And with --require-all they are breaks
    code, report = verify_export(bucket, "--require-all", until=NOT_EXPORTED)
    assert code == 1
    assert [(found["kind"], found["key"]) for found in report["breaks"]] == [
        ("not_exported", manifest_key(DAY)),
        ("not_exported", manifest_key(NOT_EXPORTED)),
    ]


@pytest.mark.parametrize(
    "replacement",
    [b"{not json", b'{"format": "something-else/1"}', b'{"format": "accessctl-audit-manifest/1", "day": "1999-01-01"}'],
    ids=["not JSON", "not a manifest", "another day's"],
)
def test_given_a_manifest_replaced_when_verified_then_the_day_breaks_on_its_manifest(
    exported: ExportedEstate, verify_export: Run, replacement: bytes
) -> None:
    bucket = copy_export(exported, manifest=lambda body: replacement)

    code, report = verify_export(bucket)

    (found,) = report["breaks"]
    assert code == 1 and (found["kind"], found["key"], found["stream"]) == ("manifest", manifest_key(DAY), None)


def test_given_an_intact_copy_without_object_lock_when_verified_then_a_warning_or_with_require_lock_a_break(
    exported: ExportedEstate, verify_export: Run
) -> None:
    # Given an unaltered copy in a bucket without Object Lock
    bucket = copy_export(exported)

    # When verified, the records hold but every object is reported as unlocked
    code, report = verify_export(bucket)
    objects = 1 + len(exported.streams)
    assert code == 0 and report["ok"]
    assert len(report["warnings"]) == objects
    assert all("no Object Lock retention" in warning for warning in report["warnings"])

    # And with --require-lock each unlocked object is a break
    code, report = verify_export(bucket, "--require-lock")
    assert code == 1
    assert {found["kind"] for found in report["breaks"]} == {"unlocked"}
    assert len(report["breaks"]) == objects


def test_given_records_expired_before_the_export_when_verified_then_the_gaps_are_expiry_not_breaks(
    exported: ExportedEstate, verify_export: Run
) -> None:
    # When the day whose records had partly expired when it was exported is verified
    code, report = verify_export(LOCKED, since=EXPIRING_DAY, until=EXPIRING_DAY)

    # Then the gaps they left are accepted, by their own retain_until against the export's time
    assert code == 0 and report["ok"], report["breaks"]
    assert (report["records"], report["expired"]) == (3, exported.expired)


def test_given_records_inside_retention_when_the_first_line_is_deleted_then_it_is_missing(
    exported: ExportedEstate, verify_export: Run
) -> None:
    # Given a copy of the export in which a stream's first line (its sequence 1, kept 30 days) is deleted
    stream = _longest(exported)
    bucket = copy_export(exported, stream=stream, alter=lambda lines: lines[1:])

    code, report = verify_export(bucket)

    (found,) = report["breaks"]
    assert code == 1 and (found["kind"], found["sequence"]) == ("missing", 1)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--bucket", "no-such-bucket", "--since", DAY, "--until", DAY],
        ["--bucket", LOCKED, "--since", "2026-6-1", "--until", DAY],
        ["--bucket", LOCKED, "--since", NOT_EXPORTED, "--until", DAY],
        ["--bucket", LOCKED, "--since", DAY],
        ["--bucket", LOCKED, "--since", DAY, "--until", DAY, "--no-such-option"],
        ["--bucket", LOCKED, "--since", DAY, "--until", DAY, "--profile", "no-such-profile"],
    ],
    ids=["no such bucket", "not a day", "since after until", "no until", "unknown option", "unknown profile"],
)
def test_given_bad_arguments_or_an_unreadable_bucket_when_verifying_then_exit_2_not_a_break(
    exported: ExportedEstate, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        raise SystemExit(main(["audit", "verify-export", *arguments]))

    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err


def test_given_no_credentials_when_verifying_then_exit_2_not_a_break(
    exported: ExportedEstate, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    code = main(["audit", "verify-export", "--bucket", LOCKED, "--since", DAY, "--until", DAY])

    assert code == 2
    assert "credentials" in capsys.readouterr().err.lower()
