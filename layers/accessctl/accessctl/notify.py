"""Notifications: one interface, with SNS as the channel every deployment has.

Chat channels (Slack, Teams) implement :class:`Notifier` too; a failed notification never
fails a grant or a revocation (the workflow catches it), but it is logged.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from accessctl.aws import call
from accessctl.models import AccessRequest
from accessctl.observability import logger

NOTIFY_EVENTS = ("GRANTED", "EXTENDED", "DENIED", "REVOKED", "FAILED")


class Notifier(Protocol):
    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None: ...


def summary(event: str, request: AccessRequest) -> str:
    who = f"{request.role_name} ({request.principal_arn})"
    where = f"{request.database} as {request.db_user}"
    if event == "GRANTED" and request.grant is not None:
        return f"Access granted to {who} on {where} until {request.grant.expires_at}."
    if event == "EXTENDED" and request.grant is not None:
        return f"Access for {who} on {where} extended until {request.grant.expires_at} (grant {request.extends})."
    if event == "BREAK_GLASS":
        return f"BREAK-GLASS: {who} was granted {where} outside the normal rules ({request.reason})."
    if event == "DENIED":
        reason = request.decision.reason if request.decision else "no decision recorded"
        return f"Access denied to {who} on {where}: {reason}."
    if event == "REVOKED":
        return f"Access revoked for {who} on {where}."
    if event == "TAMPERED":
        return f"Grant {request.request_id} for {who} on {where} was changed after issue and has been removed."
    if event == "ORPHAN_REMOVED":
        return f"A leftover grant policy for {who} on {where} was found and removed."
    return f"Access request {request.request_id} for {who} on {where} failed: {request.failure or 'see audit'}."


class SnsNotifier:
    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        call(
            self._sns.publish,
            TopicArn=self._topic_arn,
            Subject=f"accessctl: {event.lower()} {request.database}"[:100],
            Message=json.dumps({"event": event, "summary": summary(event, request), "request_id": request.request_id}),
            MessageAttributes={
                "event": {"DataType": "String", "StringValue": event},
                "severity": {"DataType": "String", "StringValue": severity},
            },
        )


class LogNotifier:
    """Used when no channel is configured: the notification still lands in the logs."""

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        log = logger.warning if severity == "high" else logger.info
        log(summary(event, request), extra={"request_id": request.request_id, "event": event, "severity": severity})
