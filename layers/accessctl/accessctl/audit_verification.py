"""Verification of the audit chain over many days, asynchronously: the API answers within 30 seconds.

``POST /audit/verifications`` records an ``AUDIT_VERIFY_REQUESTED`` record (subject
``audit-verify/<id>``: who asked for which range) and invokes the verify function with
``InvocationType=Event``; that function runs :func:`accessctl.audit.verify` (anchored on the
export's manifests when asked) and appends ``AUDIT_VERIFIED`` with the report. ``GET
/audit/verifications/{id}`` reads both records: nothing is stored outside the append-only
audit table, and every verification is itself on the trail. A verification still without a
result after :data:`LOST_AFTER` (the function's timeout and Lambda's two retries) is ``FAILED``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from accessctl.audit import VerifyReport, days_between, verify
from accessctl.audit_export import load_manifests
from accessctl.aws import call
from accessctl.dependencies import Dependencies
from accessctl.errors import AccessctlError, BadRequestError, NotFoundError
from accessctl.models import AuditEvent, AuditEventType

SUBJECT_PREFIX = "audit-verify/"
LOST_AFTER = timedelta(hours=1)
ACTOR = "verifier"


class Verification(BaseModel):
    verification_id: str
    status: Literal["RUNNING", "DONE", "FAILED"]
    since: str
    until: str
    anchored: bool = False
    requested_by: str
    requested_at: str
    report: VerifyReport | None = None


def _subject(verification_id: str) -> str:
    return f"{SUBJECT_PREFIX}{verification_id}"


def start_verification(since: str, until: str, anchored: bool, requested_by: str, deps: Dependencies) -> Verification:
    """Record the request, hand it to the verify function, and answer at once."""
    if deps.settings.verify_function_name is None:
        raise AccessctlError("VERIFY_FUNCTION_NAME is not set: asynchronous verification is not deployed")
    if anchored and deps.settings.audit_export_bucket is None:
        raise BadRequestError("anchored verification needs the audit export (AuditExport=true)")
    verification_id = str(uuid.uuid4())
    requested = deps.audit.append(
        AuditEventType.AUDIT_VERIFY_REQUESTED,
        subject=_subject(verification_id),
        actor=requested_by,
        details={"since": since, "until": until, "anchored": anchored, "days": len(days_between(since, until))},
    )
    call(
        deps.lambda_client.invoke,
        FunctionName=deps.settings.verify_function_name,
        InvocationType="Event",
        Payload=json.dumps({"verification_id": verification_id}).encode(),
    )
    return _view(verification_id, requested, None, datetime.now(UTC))


def run_verification(verification_id: str, deps: Dependencies, s3: Any) -> Verification:
    """The verify function's work; a retried invocation finds the result already recorded."""
    requested, verified = _records(verification_id, deps)
    if verified is None:
        details = requested.details
        since, until, anchored = str(details["since"]), str(details["until"]), bool(details.get("anchored"))
        anchors = None
        if anchored and deps.settings.audit_export_bucket is not None:
            anchors = load_manifests(s3, deps.settings.audit_export_bucket, days_between(since, until))
        report = verify(deps.audit.table, since, until, anchors=anchors)
        verified = deps.audit.append(
            AuditEventType.AUDIT_VERIFIED,
            subject=_subject(verification_id),
            actor=ACTOR,
            outcome="OK" if report.ok else "BROKEN",
            reason=report.first_break.detail if report.first_break else None,
            details=report.model_dump(mode="json"),
        )
    return _view(verification_id, requested, verified, datetime.now(UTC))


def get_verification(verification_id: str, deps: Dependencies, now: datetime | None = None) -> Verification:
    requested, verified = _records(verification_id, deps)
    return _view(verification_id, requested, verified, now or datetime.now(UTC))


def _records(verification_id: str, deps: Dependencies) -> tuple[AuditEvent, AuditEvent | None]:
    events = deps.audit.for_subject(_subject(verification_id))
    requested = next((e for e in events if e.event_type == AuditEventType.AUDIT_VERIFY_REQUESTED), None)
    if requested is None:
        raise NotFoundError(f"no verification {verification_id}")
    verified = next((e for e in events if e.event_type == AuditEventType.AUDIT_VERIFIED), None)
    return requested, verified


def _view(verification_id: str, requested: AuditEvent, verified: AuditEvent | None, now: datetime) -> Verification:
    details = requested.details
    if verified is not None:
        status: Literal["RUNNING", "DONE", "FAILED"] = "DONE"
    else:
        started = datetime.fromisoformat(requested.at.replace("Z", "+00:00"))
        status = "FAILED" if now - started > LOST_AFTER else "RUNNING"
    return Verification(
        verification_id=verification_id,
        status=status,
        since=str(details["since"]),
        until=str(details["until"]),
        anchored=bool(details.get("anchored")),
        requested_by=requested.actor,
        requested_at=requested.at,
        report=VerifyReport.model_validate(verified.details) if verified is not None else None,
    )
