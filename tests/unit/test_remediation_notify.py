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


class RecordingSns:
    """Stands for an SNS client: keeps what was published; one chosen message fails."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.published: list[dict[str, Any]] = []
        self._fail_on = fail_on

    def publish(self, **request: Any) -> dict[str, Any]:
        message = json.loads(request["Message"])
        if self._fail_on is not None and message["findings"][0]["resource"] == f"security-group/sg-{self._fail_on:08d}":
            raise RuntimeError("publish failed")
        self.published.append(message)
        return {"MessageId": str(len(self.published))}


@pytest.mark.parametrize("count", [1, 7 * 50 - 16])
def test_given_a_scan_s_findings_when_sent_then_every_batch_is_published_once(count: int) -> None:
    sns = RecordingSns()
    results = [result(number, 40) for number in range(count)]

    notify.SnsRemediationNotifier(sns, "arn:aws:sns:us-east-1:123456789012:topic").send(
        Trigger(kind="schedule"), results
    )

    published = sorted(finding["resource"] for message in sns.published for finding in message["findings"])
    assert published == sorted(r.finding.resource.subject for r in results)
    assert len(sns.published) == -(-count // 50)


def test_given_one_publish_failing_then_the_other_batches_are_still_published_and_the_failure_raised() -> None:
    sns = RecordingSns(fail_on=100)  # the third batch
    results = [result(number, 40) for number in range(334)]

    with pytest.raises(RuntimeError, match="publish failed"):
        notify.SnsRemediationNotifier(sns, "arn:aws:sns:us-east-1:123456789012:topic").send(
            Trigger(kind="schedule"), results
        )

    assert len(sns.published) == 6
