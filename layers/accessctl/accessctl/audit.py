"""The append-only audit log: every decision, grant, revocation and failure leaves a record here.

Records are put once (conditional on absence) and never updated or deleted by the application.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from accessctl.aws import transient_errors_surface
from accessctl.models import AccessRequest, AuditEvent, AuditEventType, precise_now
from accessctl.store import drop_none


class AuditLog:
    """Append-only: records are put once (conditional on absence) and never updated."""

    def __init__(self, table: Any) -> None:
        self._table = table

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
            details=details or {},
        )
        item = {
            **drop_none(event.model_dump(mode="json")),
            "event_key": f"{event.at}#{event.event_id}",
            "day": event.at[:10],
            # Nested documents are stored as JSON text: DynamoDB rejects floats and empty keys.
            "details": json.dumps(event.details, sort_keys=True),
        }
        with transient_errors_surface():
            self._table.put_item(Item=item, ConditionExpression=Attr("event_key").not_exists())
        return event

    def for_subject(self, subject: str) -> list[AuditEvent]:
        events: list[AuditEvent] = []
        query: dict[str, Any] = {"KeyConditionExpression": Key("subject").eq(subject)}
        while True:
            with transient_errors_surface():
                page = self._table.query(**query)
            for item in page.get("Items", []):
                item = dict(item)
                item["details"] = json.loads(item.get("details") or "{}")
                events.append(AuditEvent.model_validate(item))
            if "LastEvaluatedKey" not in page:
                return events
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
