"""The daily export to an Object Lock bucket, and verification anchored on its manifests."""

from __future__ import annotations

import json
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from accessctl.audit import record_hash, verify
from accessctl.audit_export import ExportBucket, export_closed_days, load_manifests, stream_key
from accessctl.errors import BadRequestError
from accessctl.models import AuditEventType
from tests.audit.support import at, delete_link, delete_record, write
from tests.conftest import Estate
from tests.integration.test_api_handler import api  # noqa: F401

BUCKET = "accessctl-audit-export"
DAY = "2026-06-01"
EXPORTED_AT = at("2026-06-02T00:20:00Z")  # the daily run, the next morning


@pytest.fixture
def s3(estate: Estate) -> Any:
    client = estate.session.client("s3")
    client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}},
        },
    )
    return client


@pytest.fixture
def table(estate: Estate) -> Any:
    return estate.deps.audit.table


@pytest.fixture
def day_records(table: Any) -> list[dict[str, Any]]:
    """Twelve records of DAY over six subjects (so several streams)."""
    return [
        write(table, f"{DAY}T{8 + n:02d}:{n * 3:02d}:00.000000Z", subject=f"req-{n % 6}", retention_days=30)
        for n in range(12)
    ]


def _export(estate: Estate, s3: Any, now: Any = EXPORTED_AT, day: str | None = DAY) -> Any:
    return export_closed_days(
        estate.deps.audit.table, s3, BUCKET, estate.deps.audit, table_name="audit", now=now, day=day
    )


def _versions(s3: Any) -> int:
    return len(s3.list_object_versions(Bucket=BUCKET).get("Versions", []))


def test_given_a_closed_day_when_exported_then_each_stream_and_a_manifest_of_heads_are_locked_in_s3(
    estate: Estate, s3: Any, day_records: list[dict[str, Any]]
) -> None:
    # When the day is exported
    report = _export(estate, s3)

    # Then every record is in its stream's object, in order, each line re-hashing to its record_hash
    (exported,) = report.days
    assert (exported.status, exported.records) == ("EXPORTED", 12)
    (manifest,) = load_manifests(s3, BUCKET, [DAY]).values()
    for stream, anchor in manifest.streams.items():
        mine = sorted((r for r in day_records if r["stream"] == stream), key=lambda r: r["sequence"])
        if not mine:
            assert anchor.last_sequence == 0 and anchor.key is None
            continue
        body = s3.get_object(Bucket=BUCKET, Key=anchor.key)["Body"].read().decode()
        lines = [json.loads(line) for line in body.splitlines()]
        assert [line["event_key"] for line in lines] == [r["event_key"] for r in mine]
        assert all(record_hash(line) == line["record_hash"] for line in lines)
        # And the manifest holds the stream's head
        assert (anchor.last_sequence, anchor.head_hash) == (mine[-1]["sequence"], mine[-1]["record_hash"])
        assert anchor.first_retain_until == mine[0]["retain_until"]
    # And every object is under Object Lock (the bucket's default retention)
    locked = s3.head_object(Bucket=BUCKET, Key=exported.manifest_key)
    assert locked["ObjectLockMode"] == "COMPLIANCE"
    # And the export is audited
    (audited,) = estate.deps.audit.for_subject(f"audit-export/{DAY}")
    assert audited.event_type == AuditEventType.AUDIT_EXPORTED and audited.details["records"] == 12


def test_given_an_exported_day_when_exported_again_then_nothing_is_written_twice(
    estate: Estate, s3: Any, day_records: list[dict[str, Any]]
) -> None:
    _export(estate, s3)
    versions = _versions(s3)

    again = _export(estate, s3)

    assert [day.status for day in again.days] == ["ALREADY_EXPORTED"]
    assert _versions(s3) == versions
    assert len(estate.deps.audit.for_subject(f"audit-export/{DAY}")) == 1


def test_given_a_run_interrupted_after_a_stream_object_when_run_again_then_the_first_object_is_kept_and_described(
    estate: Estate, s3: Any, day_records: list[dict[str, Any]]
) -> None:
    # Given a stream object written by an earlier run, which differs from the table now
    stream = day_records[0]["stream"]
    shard = int(stream.split("#")[1])
    ExportBucket(s3, BUCKET).put_once(stream_key(DAY, shard), b'{"sequence":1,"record_hash":"x"}\n', "x")

    # When the day is exported
    report = _export(estate, s3)

    # Then that object is not overwritten, the manifest describes it, and the difference is audited
    assert report.days[0].mismatched == [stream]
    (manifest,) = load_manifests(s3, BUCKET, [DAY]).values()
    assert (manifest.streams[stream].last_sequence, manifest.streams[stream].head_hash) == (1, "x")
    (audited,) = estate.deps.audit.for_subject(f"audit-export/{DAY}")
    assert audited.outcome == "MISMATCH" and stream in (audited.reason or "")


def test_given_a_whole_stream_and_its_links_deleted_when_verified_against_the_manifest_then_it_is_found(
    estate: Estate, s3: Any, table: Any, day_records: list[dict[str, Any]]
) -> None:
    # Given an exported day; then every record and link of one of its streams is deleted
    _export(estate, s3)
    stream = day_records[0]["stream"]
    for item in day_records:
        if item["stream"] == stream:
            delete_record(table, item)
            delete_link(table, item)
    now = EXPORTED_AT + timedelta(days=1)

    # When verified from the table alone, nothing is left to notice
    assert verify(table, DAY, DAY, now=now).ok
    # Then against the exported manifest, the deletion is found
    anchored = verify(table, DAY, DAY, now=now, anchors=load_manifests(s3, BUCKET, [DAY]))
    assert anchored.first_break is not None
    assert (anchored.first_break.kind, anchored.first_break.stream) == ("anchor", stream)
    assert "deleted" in anchored.first_break.detail


def test_given_an_exported_day_intact_when_verified_against_the_manifest_then_it_holds(
    estate: Estate, s3: Any, table: Any, day_records: list[dict[str, Any]]
) -> None:
    _export(estate, s3)

    report = verify(table, DAY, DAY, now=EXPORTED_AT, anchors=load_manifests(s3, BUCKET, [DAY]))

    assert report.ok and report.anchored_days == [DAY] and report.records == 12


def test_given_a_record_added_to_an_exported_day_when_verified_against_the_manifest_then_it_is_found(
    estate: Estate, s3: Any, table: Any, day_records: list[dict[str, Any]]
) -> None:
    _export(estate, s3)
    write(table, f"{DAY}T23:59:00.000000Z", subject="req-0")

    report = verify(table, DAY, DAY, now=EXPORTED_AT, anchors=load_manifests(s3, BUCKET, [DAY]))

    assert report.first_break is not None and report.first_break.kind == "anchor"
    assert "closed day" in report.first_break.detail


def test_given_an_exported_day_past_retention_when_verified_against_the_manifest_then_expiry_is_no_break(
    estate: Estate, s3: Any, table: Any, day_records: list[dict[str, Any]]
) -> None:
    _export(estate, s3)
    for item in day_records:  # TTL removed the whole day
        delete_record(table, item)
        delete_link(table, item)

    now = EXPORTED_AT + timedelta(days=31)
    report = verify(table, DAY, DAY, now=now, anchors=load_manifests(s3, BUCKET, [DAY]))

    assert report.ok, report.first_break


def test_given_a_scheduled_run_then_the_closed_days_of_the_last_week_are_exported_and_today_is_not(
    estate: Estate, s3: Any, day_records: list[dict[str, Any]]
) -> None:
    report = _export(estate, s3, now=at("2026-06-03T00:30:00Z"), day=None)

    days = [day.day for day in report.days]
    assert days[-1] == "2026-06-02" and DAY in days and len(days) == 7
    assert load_manifests(s3, BUCKET, ["2026-06-03"]) == {}


@pytest.mark.parametrize("day", ["2026-06-02", "not-a-day"])
def test_given_a_day_not_closed_or_malformed_when_asked_then_refused(estate: Estate, s3: Any, day: str) -> None:
    with pytest.raises(BadRequestError):
        _export(estate, s3, now=at("2026-06-02T12:00:00Z"), day=day)


# ---------------------------------------------------------------- GET /audit/verify?anchored=true


@pytest.fixture
def extra_api_env() -> dict[str, str]:
    return {"AUDIT_EXPORT_BUCKET": BUCKET}


def test_given_an_admin_when_verifying_anchored_over_the_api_then_the_manifest_is_compared(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    s3: Any,
    table: Any,
) -> None:
    from tests.audit.test_audit_api import ADMIN, _get

    # Given an exported day of records kept forever (the API verifies at the real time)
    day_records = [write(table, f"{DAY}T10:0{n}:00.000000Z", f"req-{n}", retention_days=0) for n in range(6)]
    estate.role("security-admin")
    _export(estate, s3)
    query = {"since": f"{DAY}T00:00:00Z", "until": f"{DAY}T23:59:59Z", "anchored": "true"}

    status, report = _get(api, "/audit/verify", query, ADMIN)
    assert status == 200 and report["ok"] and report["anchored_days"] == [DAY]

    stream = day_records[0]["stream"]
    for item in day_records:
        if item["stream"] == stream:
            delete_record(table, item)
            delete_link(table, item)
    status, report = _get(api, "/audit/verify", query, ADMIN)
    assert status == 200 and not report["ok"] and report["first_break"]["kind"] == "anchor"
