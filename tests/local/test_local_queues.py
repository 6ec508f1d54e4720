"""SQS event sources on the local stack: a SAM ``Events: Type: SQS`` (an ``AWS::Lambda::EventSourceMapping``)
is polled with Lambda's batch semantics: batches of up to BatchSize, partial batch failures, a
failed invocation leaves its messages, and the redrive policy moves them to the dead-letter queue."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from accessctl_local import LocalStack

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  DeadLetters:
    Type: AWS::SQS::Queue
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      SqsManagedSseEnabled: true
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetters.Arn
        maxReceiveCount: 2
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker/
      Handler: app.lambda_handler
      Runtime: python3.13
      Timeout: 10
      Environment:
        Variables:
          WORK_QUEUE_URL: !Ref Work
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
"""

# Bodies "fail-*" are reported as failed items; a batch holding "crash" fails the whole invocation.
WORKER = """
BATCHES = []


def lambda_handler(event, context):
    bodies = [record["body"] for record in event["Records"]]
    BATCHES.append(event["Records"])
    if "crash" in bodies:
        raise RuntimeError("crash")
    failed = [r["messageId"] for r in event["Records"] if r["body"].startswith("fail")]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("queues")
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE).lstrip())
    (root / "functions" / "worker").mkdir(parents=True)
    (root / "functions" / "worker" / "app.py").write_text(textwrap.dedent(WORKER).lstrip())
    with LocalStack.start(root, run_schedules=False, run_queues=False, load_aws_managed_policies=False) as running:
        yield running


@pytest.fixture
def batches(stack: LocalStack) -> Iterator[list[Any]]:
    """The batches the worker received, emptied per test (the worker's module, loaded by the stack)."""
    import sys

    stack.invoke("Worker", {"Records": []})  # loads the handler module
    (module,) = [m for name, m in sys.modules.items() if name.startswith("_accessctl_local_fn_Worker")]
    module.BATCHES.clear()
    yield module.BATCHES
    _empty(stack, "Work")
    _empty(stack, "DeadLetters")


def _empty(stack: LocalStack, queue: str) -> None:
    """Delete every message, waiting for those in flight to come back (PurgeQueue: once a minute only)."""
    sqs, url = stack.client("sqs"), stack.resources[queue]
    deadline = time.monotonic() + 5
    while _counts(stack, queue) != (0, 0) and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        time.sleep(0.1)


def _send(stack: LocalStack, *bodies: str) -> None:
    for body in bodies:
        stack.client("sqs").send_message(QueueUrl=stack.resources["Work"], MessageBody=body)


def _counts(stack: LocalStack, queue: str) -> tuple[int, int]:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources[queue],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_template_queues_and_their_event_source_are_deployed(stack: LocalStack) -> None:
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.resources["Work"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "1"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.attribute("DeadLetters", "Arn")
    assert int(redrive["maxReceiveCount"]) == 2
    (source,) = stack.queues.sources if stack.queues else []
    assert source.queue_arn == stack.attribute("Work", "Arn") and source.batch_size == 5
    assert source.report_batch_item_failures
    assert stack.functions["Worker"].environment["WORK_QUEUE_URL"] == stack.resources["Work"]


def test_given_seven_messages_when_drained_then_batches_of_five_in_lambdas_shape_and_all_deleted(
    stack: LocalStack, batches: list[Any]
) -> None:
    # Given seven messages
    _send(stack, *(f"ok-{n}" for n in range(7)))

    # When the event source is drained
    invocations = stack.drain_queue("Worker")

    # Then the worker got them in batches of at most five, shaped as Lambda's SQS event, and they are gone
    assert [len(batch) for batch in batches] == [5, 2]
    assert sorted(record["body"] for batch in batches for record in batch) == [f"ok-{n}" for n in range(7)]
    record = batches[0][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == stack.attribute("Work", "Arn")
    assert {"messageId", "receiptHandle", "md5OfBody", "attributes", "awsRegion"} <= record.keys()
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert all(not invocation.errored for invocation in invocations)
    assert _counts(stack, "Work") == (0, 0)


def test_given_a_partial_batch_failure_then_only_the_failed_message_comes_back_and_then_dead_letters(
    stack: LocalStack, batches: list[Any]
) -> None:
    # Given two good messages and one the worker reports as failed
    _send(stack, "ok-a", "fail-b", "ok-c")

    # When drained: the good ones are deleted, the failed one stays in flight
    stack.drain_queue("Worker")
    assert _counts(stack, "Work") == (0, 1)

    # When its visibility timeout passes, it is received again (its second receive) and fails again
    time.sleep(1.2)
    stack.drain_queue("Worker")
    assert [record["body"] for record in batches[-1]] == ["fail-b"]

    # Then, past maxReceiveCount, the queue's redrive policy moves it to the dead-letter queue
    time.sleep(1.2)
    stack.drain_queue("Worker")
    assert _counts(stack, "Work") == (0, 0)
    assert _counts(stack, "DeadLetters") == (1, 0)
    assert sum(1 for batch in batches for record in batch if record["body"] == "fail-b") == 2


def test_given_a_failed_invocation_then_no_message_of_its_batch_is_deleted(
    stack: LocalStack, batches: list[Any]
) -> None:
    _send(stack, "ok-x", "crash")

    (invocation,) = stack.drain_queue("Worker")

    assert invocation.errored and invocation.error_type == "RuntimeError"
    assert _counts(stack, "Work") == (0, 2)


def test_given_the_background_poller_then_messages_are_handled_without_an_api_call_while_idle(
    stack: LocalStack, batches: list[Any]
) -> None:
    assert stack.queues is not None
    stack.queues.start()
    try:
        # Given an idle queue: the poller makes no API call
        stack.reset_api_call_counts()
        time.sleep(0.6)
        assert stack.api_call_counts() == {}

        # When a message arrives, then the worker gets it and it is deleted
        _send(stack, "ok-background")
        deadline = time.monotonic() + 10
        while not batches and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [record["body"] for batch in batches for record in batch] == ["ok-background"]
    finally:
        stack.queues.stop()
    assert _counts(stack, "Work") == (0, 0)
