"""The audit outbox in template.yaml: encrypted, backed by a dead-letter queue that alarms, and each
function holding only what it needs on it."""

from __future__ import annotations

from typing import Any

from tests.support.template import resources

QUEUE_ARN = {"Fn::GetAtt": "AuditOutboxQueue.Arn"}


def _arn(value: Any) -> Any:
    """``!GetAtt A.B`` as the loader reads it, whichever form it was written in."""
    if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), list):
        return {"Fn::GetAtt": ".".join(value["Fn::GetAtt"])}
    return value


def _statements(function: str) -> list[dict[str, Any]]:
    properties = resources("AWS::Serverless::Function")[function]["Properties"]
    found: list[dict[str, Any]] = []
    for policy in properties.get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            found += [s for s in policy["Statement"] if isinstance(s, dict) and "Action" in s]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_the_outbox_is_encrypted_and_its_failures_end_in_a_dead_letter_queue_that_alarms() -> None:
    queues = resources("AWS::SQS::Queue")
    outbox, dead = queues["AuditOutboxQueue"]["Properties"], queues["AuditOutboxDeadLetterQueue"]["Properties"]
    assert outbox["SqsManagedSseEnabled"] is True and dead["SqsManagedSseEnabled"] is True
    assert _arn(outbox["RedrivePolicy"]["deadLetterTargetArn"]) == {"Fn::GetAtt": "AuditOutboxDeadLetterQueue.Arn"}
    # Lambda's SQS event source wants a visibility timeout of six times the consumer's timeout
    consumer = resources("AWS::Serverless::Function")["ReplayAuditOutboxFunction"]["Properties"]
    assert outbox["VisibilityTimeout"] >= 6 * consumer["Timeout"]
    alarm = resources("AWS::CloudWatch::Alarm")["AuditOutboxDeadLettersAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert _arn(alarm["Dimensions"][0]["Value"]) == {"Fn::GetAtt": "AuditOutboxDeadLetterQueue.QueueName"}
    assert alarm["AlarmActions"] == [{"Ref": "NotificationsTopic"}]


def test_the_remediator_may_only_send_to_the_outbox() -> None:
    sqs = [s for s in _statements("RemediateDriftFunction") if any(a.startswith("sqs:") for a in _actions(s))]
    assert [(_actions(s), _arn(s["Resource"])) for s in sqs] == [(["sqs:SendMessage"], QUEUE_ARN)]
    environment = resources("AWS::Serverless::Function")["RemediateDriftFunction"]["Properties"]["Environment"]
    assert environment["Variables"]["AUDIT_OUTBOX_URL"] == {"Ref": "AuditOutboxQueue"}


def test_the_consumer_reads_only_its_queue_and_appends_only_what_its_client_calls() -> None:
    from accessctl.audit_outbox import REPLAY_DYNAMODB_OPERATIONS

    function = resources("AWS::Serverless::Function")["ReplayAuditOutboxFunction"]["Properties"]
    assert "Events" not in function  # a SAM SQS event would attach AWSLambdaSQSQueueExecutionRole (every queue)
    statements = _statements("ReplayAuditOutboxFunction")
    sqs = {a for s in statements for a in _actions(s) if a.startswith("sqs:")}
    assert sqs == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
    assert all(_arn(s["Resource"]) == QUEUE_ARN for s in statements if _actions(s)[0].startswith("sqs:"))
    dynamodb = {a for s in statements for a in _actions(s) if a.startswith("dynamodb:")}
    # TransactWriteItems is authorised per action: its puts need dynamodb:PutItem
    needed = {f"dynamodb:{'PutItem' if op == 'TransactWriteItems' else op}" for op in REPLAY_DYNAMODB_OPERATIONS}
    assert dynamodb == needed
    (mapping,) = resources("AWS::Lambda::EventSourceMapping").values()
    assert _arn(mapping["Properties"]["EventSourceArn"]) == QUEUE_ARN
    assert mapping["Properties"]["FunctionName"] == {"Ref": "ReplayAuditOutboxFunction"}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
