"""The export check's rules for gaps, on stream objects built in memory (no AWS needed).

The exporter writes what the table held when it ran; a sequence may be absent only if its record
may have expired by then, judged by the records' own ``retain_until`` (``accessctl.audit.verify``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from accessctl_client.audit_chain import genesis_hash, record_hash
from accessctl_client.export_check import check_stream

STREAM = "2026-06-01#2"
DAY_START = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
HOUR, DAY = 3600, 86400


def _chain(count: int, retention_days: int | None) -> list[dict[str, Any]]:
    """``count`` records of STREAM, an hour apart from 06:00, chained as the controller does."""
    records: list[dict[str, Any]] = []
    previous = genesis_hash(STREAM)
    for sequence in range(1, count + 1):
        at = DAY_START + (5 + sequence) * HOUR
        record: dict[str, Any] = {
            "subject": "req-1",
            "event_key": f"{sequence:04d}",
            "at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
            "stream": STREAM,
            "sequence": sequence,
            "previous_hash": previous,
        }
        if retention_days is not None:
            record["retain_until"] = at + retention_days * DAY
        record["record_hash"] = previous = record_hash(record)
        records.append(record)
    return records


def _exported(records: list[dict[str, Any]]) -> tuple[bytes, dict[str, Any]]:
    """The object and manifest entry the exporter writes for ``records`` (what the table still held)."""
    body = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records).encode()
    head = records[-1]
    anchor = {
        "last_sequence": head["sequence"],
        "head_hash": head["record_hash"],
        "records": len(records),
        "first_retain_until": records[0].get("retain_until") if records[0]["sequence"] == 1 else None,
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    return body, anchor


# (retention in days or None, sequences absent when exported, days after the day the export ran,
#  expected: None = verifies, else (kind, sequence))
GAPS = {
    "no retention: a gap is a deletion, however late": (None, [3], 3650, ("missing", 3)),
    "inside retention: a gap is a deletion": (30, [3], 1, ("missing", 3)),
    "past retention: a gap in the middle expired": (1, [3], 3, None),
    "past retention: leading gaps expired": (1, [1, 2], 3, None),
    "inside retention: leading gaps are deletions": (30, [1, 2], 1, ("missing", 1)),
    "past retention: a run of gaps expired": (1, [2, 3, 4], 3, None),
}


@pytest.mark.parametrize(("retention", "absent", "days_later", "expected"), GAPS.values(), ids=GAPS.keys())
def test_given_an_export_with_gaps_when_checked_then_only_records_that_may_have_expired_may_be_absent(
    retention: int | None, absent: list[int], days_later: int, expected: tuple[str, int] | None
) -> None:
    # Given an export of a stream of six records, some absent from the table when it ran
    records = _chain(6, retention)
    body, anchor = _exported([r for r in records if r["sequence"] not in absent])
    exported_at = DAY_START + days_later * DAY

    # When the object is checked against its manifest entry
    check = check_stream(STREAM, anchor, body, exported_at, key="audit/2026-06-01/stream-2.jsonl")

    # Then gaps are expiry or a deletion as the records' retain_until says
    if expected is None:
        assert check.found is None, check.found
        assert (check.records, check.expired) == (6 - len(absent), len(absent))
    else:
        assert check.found is not None
        assert (check.found.kind, check.found.sequence) == expected
    assert check.sha256_ok
