"""Records written at chosen instants, and DynamoDB's TTL process played by hand (moto does not expire items)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from accessctl.audit import AuditChain, event_item, link_key
from accessctl.models import AuditEvent, AuditEventType


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def write(
    table: Any, instant: str, subject: str = "req-1", retention_days: int = 30, chained_at: str | None = None
) -> dict[str, Any]:
    """Append one record whose time is ``instant`` (its day's stream), chained as the application does
    (``chained_at``: appended late, as the audit outbox's replay does)."""
    event = AuditEvent(
        event_id=str(uuid.uuid4()),
        event_type=AuditEventType.REQUEST_SUBMITTED,
        at=instant,
        subject=subject,
        actor="tester",
    )
    chain = AuditChain(table.meta.client, table.name, typed=False, retention_days=retention_days)
    (item,) = chain.append([event_item(event)], chained_at=chained_at)
    return item


def delete_record(table: Any, item: dict[str, Any]) -> None:
    table.delete_item(Key={"subject": item["subject"], "event_key": item["event_key"]})


def delete_link(table: Any, item: dict[str, Any]) -> None:
    table.delete_item(Key=link_key(item["stream"], int(item["sequence"])))
