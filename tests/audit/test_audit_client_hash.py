"""The client's copy of the chain hashing (``accessctl_client.audit_chain``) agrees with the controller's.

The client checks exports without installing the controller's layer, so it carries its own few lines
of hashing; these tests keep the two from drifting apart.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from accessctl.audit import event_item, genesis_hash, record_hash
from accessctl.models import AuditEvent, AuditEventType
from accessctl_client import audit_chain
from tests.audit.support import write
from tests.conftest import Estate


def _stored(details: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A record as the controller stores it (details as JSON text), chained by hand."""
    event = AuditEvent(
        event_id=str(uuid.uuid4()),
        event_type=AuditEventType.GRANT_ISSUED,
        at="2026-06-01T10:00:00.123456Z",
        subject="req-ü",
        actor="arn:aws:sts::123456789012:assumed-role/Ops/zoë",
        reason=fields.pop("reason", None),
        details=details,
    )
    item = {**event_item(event), "stream": "2026-06-01#3", "sequence": 7, "previous_hash": "ab" * 32, **fields}
    item["record_hash"] = record_hash(item)
    return item


RECORDS = {
    "unicode everywhere": _stored({"note": "naïve café 東京 🚀", "quote": 'say "hi"\n\ttab'}, reason="für Zoë ✓"),
    "nested details": _stored({"grant": {"policy": {"Statement": [{"Effect": "Allow", "Resource": ["a", "b"]}]}}}),
    "line and paragraph separators": _stored({"text": "a\u2028b\u2029c\x00d\\e/f"}),
    "numbers": _stored(
        {"minutes": 90, "ratio": 0.25, "big": 2**63 + 1, "negative": -3}, retain_until=1783000000, score=0.1
    ),
    "dynamodb decimals": _stored({}, retain_until=Decimal(1783000000), sequence=Decimal(12), weight=Decimal("1.5")),
    "booleans, nulls and lists": _stored({"ok": True, "none": None, "list": [1, "two", [3]]}, tags=["x", "ÿ"]),
    "empty details": _stored({}),
}


@pytest.mark.parametrize("item", RECORDS.values(), ids=RECORDS.keys())
def test_given_a_stored_record_when_hashed_by_the_client_then_it_equals_the_controllers_hash(
    item: dict[str, Any],
) -> None:
    # Given a record as stored (and as exported: one canonical JSON line, read back)
    exported_line = json.loads(json.dumps(audit_chain.plain(item), ensure_ascii=False))

    # Then the client computes the controller's hash from the item and from its exported line
    assert audit_chain.record_hash(item) == record_hash(item) == item["record_hash"]
    assert audit_chain.record_hash(exported_line) == record_hash(exported_line)


@pytest.mark.parametrize("stream", ["2026-06-01#0", "2026-12-31#7", "1999-01-01#12"])
def test_given_a_stream_when_its_genesis_is_computed_by_the_client_then_it_equals_the_controllers(
    stream: str,
) -> None:
    assert audit_chain.genesis_hash(stream) == genesis_hash(stream)


def test_given_records_written_and_read_back_from_the_table_then_the_client_hash_matches_each(
    estate: Estate,
) -> None:
    # Given records chained by the controller and read back from DynamoDB (numbers as Decimal)
    table = estate.deps.audit.table
    written = [write(table, f"2026-06-01T10:0{n}:00.000000Z", subject=f"req-{n}") for n in range(4)]
    read_back = [table.get_item(Key={"subject": w["subject"], "event_key": w["event_key"]})["Item"] for w in written]

    # Then the client's hash of each equals the hash the chain wrote
    assert [audit_chain.record_hash(item) for item in read_back] == [w["record_hash"] for w in written]
