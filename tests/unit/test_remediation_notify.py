"""Notification batches: at most ``size`` findings a message, and a message closed once its findings'
JSON passes the limit, exactly where encoding the whole list each time would close it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accessctl.remediation import notify
from accessctl.remediation.models import Finding, FindingResult, Outcome, ResourceKind, ResourceRef, Severity, Trigger
from accessctl.remediation.settings import Mode


def result(number: int, summary_length: int) -> FindingResult:
    finding = Finding(
        rule_id="sg-open-ingress",
        severity=Severity.CRITICAL,
        resource=ResourceRef(kind=ResourceKind.SECURITY_GROUP, id=f"sg-{number:08d}"),
        summary="x" * summary_length + "\u00e9",  # non-ASCII: JSON escapes it, the length counts the escape
        databases=[f"instance/db-{number}"],
        before={"permission": {"FromPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}},
    )
    return FindingResult(finding=finding, mode=Mode.ENFORCE, outcome=Outcome.FIXED, detail="revoked")


def split_by_reencoding(trigger: Trigger, results: list[FindingResult], size: int, limit: int) -> list[list[Any]]:
    """The reference: re-encode the whole open message after each finding."""
    messages: list[list[Any]] = []
    current: list[Any] = []
    for each in results:
        current.append(notify.describe(each, trigger))
        if len(current) >= size or len(json.dumps(current, default=str)) > limit:
            messages.append(current)
            current = []
    return messages + ([current] if current else [])


@pytest.mark.parametrize(
    ("count", "summary_length", "size", "limit"),
    [
        (334, 40, 50, 240_000),  # a scan: split by count
        (120, 3_000, 50, 20_000),  # long findings: split by size
        (7, 100, 50, 240_000),  # one message
        (1, 100, 50, 10),  # one finding over the limit still goes, alone
    ],
)
def test_given_findings_when_batched_then_the_messages_split_where_reencoding_would_split_them(
    monkeypatch: pytest.MonkeyPatch, count: int, summary_length: int, size: int, limit: int
) -> None:
    monkeypatch.setattr(notify, "_MAX_MESSAGE_BYTES", limit)
    trigger = Trigger(kind="schedule")
    results = [result(number, summary_length) for number in range(count)]

    messages = notify.batches(trigger, results, size)

    assert [m["findings"] for m in messages] == split_by_reencoding(trigger, results, size, limit)
    assert all(
        m["event"] == "DRIFT"
        and m["trigger"]
        == {"kind": "schedule", **dict.fromkeys(("event_name", "event_id", "changed_by", "event_time", "source_ip"))}
        for m in messages
    )
