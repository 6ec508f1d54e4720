"""Notifications: what changed, who changed it, what the controller did. One SNS message per batch
of findings (an event has one or two; a scan may have hundreds, sent in batches)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from accessctl.aws import call
from accessctl.observability import logger
from accessctl.remediation.models import FindingResult, Outcome, Trigger

_MAX_MESSAGE_BYTES = 240_000  # SNS allows 256 KB


class RemediationNotifier(Protocol):
    def send(self, trigger: Trigger, results: list[FindingResult]) -> None: ...


def describe(result: FindingResult, trigger: Trigger) -> dict[str, Any]:
    finding = result.finding
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.value,
        "resource": finding.resource.subject,
        "databases": finding.databases,
        "what_changed": finding.summary,
        "changed_by": trigger.changed_by or "unknown (found by the scheduled scan)",
        "event": trigger.event_name,
        "mode": result.mode.value,
        "outcome": result.outcome.value,
        "action": result.detail,
        "needs_reboot": bool(finding.fix and finding.fix.needs_reboot and result.outcome == Outcome.FIXED),
        "before": finding.before,
        "after": finding.after if result.outcome == Outcome.FIXED else None,
        "error": result.error,
    }


def subject(trigger: Trigger, results: list[FindingResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    origin = trigger.event_name or "scheduled scan"
    return f"accessctl drift: {tally} ({origin})"[:100]


def batches(trigger: Trigger, results: list[FindingResult], size: int) -> list[dict[str, Any]]:
    """Messages of up to ``size`` findings, a message closed once its findings' JSON passes the limit.

    The findings' JSON length is kept as a running total (each finding encoded once): a list encodes
    as ``[`` + its items joined by ``, `` + ``]``, so the total is what encoding the list would give.
    """
    messages: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    encoded = 2  # "[]"
    for result in results:
        described = describe(result, trigger)
        encoded += len(json.dumps(described, default=str)) + (2 if current else 0)
        current.append(described)
        if len(current) >= size or encoded > _MAX_MESSAGE_BYTES:
            messages.append({"event": "DRIFT", "trigger": trigger.model_dump(mode="json"), "findings": current})
            current, encoded = [], 2
    if current:
        messages.append({"event": "DRIFT", "trigger": trigger.model_dump(mode="json"), "findings": current})
    return messages


class SnsRemediationNotifier:
    def __init__(self, sns: Any, topic_arn: str, batch_size: int = 50) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._batch_size = batch_size

    def send(self, trigger: Trigger, results: list[FindingResult]) -> None:
        title = subject(trigger, results)
        for message in batches(trigger, results, self._batch_size):
            call(
                self._sns.publish,
                TopicArn=self._topic_arn,
                Subject=title,
                Message=json.dumps(message, default=str),
                MessageAttributes={"event": {"DataType": "String", "StringValue": "DRIFT"}},
            )


class LogRemediationNotifier:
    """When no topic is configured: the notification still lands in the logs."""

    def send(self, trigger: Trigger, results: list[FindingResult]) -> None:
        for message in batches(trigger, results, 50):
            logger.info(subject(trigger, results), extra={"notification": message})
