"""No remediation record is lost, on the local stack: template.yaml deployed into the emulator, the
remediator and the audit outbox's consumer run in-process, the outbox's SQS event source polled
with Lambda's batch semantics.

DynamoDB refuses the audit table's transactions after the fixes were applied (throttled past the
SDK's retries, raised by the emulator itself): the records wait in the outbox, and once DynamoDB
answers again the consumer appends each once, in a chain that verifies, found by the audit query
at their original time. Should the outbox be unreachable too, the run says how many were lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from accessctl.models import precise_now
from accessctl_local import LocalStack
from tests.remediation.support import Emulated, cidrs, opened, tcp
from tests.support.template import PROJECT_ROOT

pytestmark = [pytest.mark.integration]

FUNCTION = "RemediateDriftFunction"
CONSUMER = "ReplayAuditOutboxFunction"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.start(
        project_root=PROJECT_ROOT,
        run_schedules=False,
        run_queues=False,  # the tests consume the outbox when DynamoDB is back (drain_queue)
        parameter_overrides={"RemediationMode": "enforce"},
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def fast_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    monkeypatch.setattr("botocore.retries.adaptive.ClientRateLimiter.on_sending_request", lambda self, **kwargs: None)


class Outage:
    """The emulator's DynamoDB throttles every transaction on the audit table while ``on``."""

    def __init__(self, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
        from moto.dynamodb.models import DynamoDBBackend

        self.on, self.refused = True, 0
        table = stack.resources["AuditTable"]
        original = DynamoDBBackend.transact_write_items

        def maybe_refused(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
            audit = any(action.get("Put", {}).get("TableName") == table for action in transact_items)
            if self.on and audit:
                self.refused += 1
                raise DynamodbException(ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException", "injected")
            original(backend, transact_items)

        monkeypatch.setattr(DynamoDBBackend, "transact_write_items", maybe_refused)


def metric(output: str, name: str) -> float:
    """The sum of one metric over the EMF lines the functions printed (Powertools' metrics)."""
    values = [json.loads(line).get(name) for line in output.splitlines() if line.startswith('{"_aws"')]
    return sum(sum(value) if isinstance(value, list) else value for value in values if value is not None)


def outbox_depth(stack: LocalStack) -> int:
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.resources["AuditOutboxQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def consume_outbox(stack: LocalStack) -> None:
    """Poll the outbox's event source until it is empty; every batch handled without a failure."""
    invocations = stack.drain_queue(CONSUMER)
    assert invocations
    for invocation in invocations:
        assert not invocation.errored and invocation.payload == {"batchItemFailures": []}, invocation.payload
    assert outbox_depth(stack) == 0


def applied(stack: LocalStack, group: str, since: str | None = None, until: str | None = None) -> list[Any]:
    """The group's REMEDIATION_APPLIED records, through the audit query the API answers (by subject)."""
    from accessctl.audit_query import AuditFilter, query_all

    table = stack.session().resource("dynamodb", endpoint_url=stack.endpoint_url).Table(stack.resources["AuditTable"])
    wanted = AuditFilter(subject=f"security-group/{group}", event_type="REMEDIATION_APPLIED", since=since, until=until)
    return list(query_all(table, wanted))


def chain_holds(stack: LocalStack, records: list[Any]) -> None:
    from accessctl.audit import verify

    table = stack.session().resource("dynamodb", endpoint_url=stack.endpoint_url).Table(stack.resources["AuditTable"])
    report = verify(table, min(r.at for r in records), max(r.at for r in records))
    assert report.ok, report.first_break


def open_groups(emulated: Emulated, prefix: str, count: int) -> list[str]:
    groups = [emulated.group(tcp(5432, "0.0.0.0/0", "10.0.0.0/8")) for _ in range(count)]
    for number, group in enumerate(groups):
        emulated.postgres(f"{prefix}-{number}", group)
    return groups


def test_given_a_scan_whose_audit_write_fails_after_the_fixes_when_the_outbox_is_consumed_then_every_record_is_there(
    stack: LocalStack, emulated: Emulated, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three protected databases opened to the world, and DynamoDB throttling the audit table
    groups = open_groups(emulated, "outbox-scan", 3)
    outage = Outage(stack, monkeypatch)

    # When the scheduled scan runs
    started = precise_now()
    invocation = stack.fire_schedule(FUNCTION)
    scanned = precise_now()

    # Then the fixes are applied and the run succeeds with nothing lost: the records wait in the outbox
    assert not invocation.errored, invocation.payload
    assert invocation.payload["audit_lost"] == 0 and invocation.payload["errors"] == []
    for group in groups:
        assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
        assert applied(stack, group) == []
    assert outage.refused > 0 and outbox_depth(stack) >= 1
    deferred = metric(capsys.readouterr().out, "AuditRecordsDeferred")
    assert deferred >= 3  # the three fixes' records, and the scan's report-only findings

    # When DynamoDB answers again and the outbox is consumed
    outage.on = False
    consume_outbox(stack)
    assert metric(capsys.readouterr().out, "AuditRecordsReplayed") == deferred

    # Then each fix has its one record, at the time of the scan, in a chain that holds, found by the
    # query by group at that time
    records = [record for group in groups for record in applied(stack, group)]
    assert sorted(record.subject for record in records) == sorted(f"security-group/{group}" for group in groups)
    assert all(record.details["trigger"]["kind"] == "schedule" for record in records)
    assert all(started <= record.at <= scanned for record in records)  # the fix's time, not the replay's
    assert [len(applied(stack, group, since=started, until=scanned)) for group in groups] == [1, 1, 1]
    chain_holds(stack, records)

    # And a second scan finds nothing left to fix, and nothing more to write for them
    again = stack.fire_schedule(FUNCTION)
    assert not again.errored
    assert [record.event_id for group in groups for record in applied(stack, group)] == [r.event_id for r in records]


def test_given_an_event_whose_audit_write_fails_after_the_fix_when_the_outbox_is_consumed_then_its_record_is_there(
    stack: LocalStack, emulated: Emulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a protected database whose group was opened, and DynamoDB throttling the audit table
    (group,) = open_groups(emulated, "outbox-event", 1)
    outage = Outage(stack, monkeypatch)

    # When the CloudTrail event is handled
    invocation = stack.invoke(FUNCTION, opened(group))

    # Then the range is closed, the invocation succeeds, and its record waits in the outbox
    assert not invocation.errored and invocation.payload["counts"]["fixed"] == 1, invocation.payload
    assert invocation.payload["audit_lost"] == 0
    assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
    assert applied(stack, group) == []

    # When DynamoDB answers again and the outbox is consumed twice over (a redelivered message)
    outage.on = False
    body = stack.client("sqs").receive_message(QueueUrl=stack.resources["AuditOutboxQueue"], VisibilityTimeout=0)
    stack.client("sqs").send_message(
        QueueUrl=stack.resources["AuditOutboxQueue"], MessageBody=body["Messages"][0]["Body"]
    )
    consume_outbox(stack)

    # Then the record is there once, naming the event and its revoke, in a chain that holds
    (record,) = applied(stack, group)
    assert record.details["trigger"]["event_name"] == "AuthorizeSecurityGroupIngress"
    assert [call.operation for call in record.aws_requests or []] == ["RevokeSecurityGroupIngress"]
    chain_holds(stack, [record])


def test_given_the_outbox_unreachable_too_then_the_run_reports_how_many_records_were_lost(
    stack: LocalStack, emulated: Emulated, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from moto.sqs.exceptions import QueueDoesNotExist
    from moto.sqs.models import SQSBackend

    # Given DynamoDB throttling the audit table and SQS refusing every message
    groups = open_groups(emulated, "outbox-lost", 2)
    Outage(stack, monkeypatch)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise QueueDoesNotExist()

    monkeypatch.setattr(SQSBackend, "send_message", refuse)

    # When the scan runs
    invocation = stack.fire_schedule(FUNCTION)

    # Then the fixes are applied, and the run reports the lost records with their number
    assert not invocation.errored, invocation.payload
    for group in groups:
        assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
    summary = invocation.payload
    fixed = summary["counts"]["fixed"]
    assert fixed == 2 and summary["audit_lost"] >= fixed
    assert any(f"of {summary['audit_lost']} records not written" in error for error in summary["errors"])
    assert json.dumps(summary).count("AuditBatchError") == 1
    # and the metric RemediationFailingAlarm watches counts them
    assert metric(capsys.readouterr().out, "AuditRecordsLost") == summary["audit_lost"]
