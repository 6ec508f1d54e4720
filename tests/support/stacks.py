"""The local stack as most stack tests want it: the real template, the demo database, and no
schedules of its own (tests fire them, so a sweep never races an assertion)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from accessctl_local import LocalStack
from accessctl_local.estate import create_database
from tests.support.template import PROJECT_ROOT

DEMO_DATABASE = "orders-demo"


@contextmanager
def demo_stack(parameter_overrides: dict[str, Any] | None = None) -> Iterator[LocalStack]:
    with LocalStack.start(
        project_root=PROJECT_ROOT, run_schedules=False, parameter_overrides=parameter_overrides
    ) as running:
        create_database(running, DEMO_DATABASE)
        yield running


@dataclass
class Inbox:
    """An SQS queue subscribed to the stack's notifications topic (raw delivery)."""

    stack: LocalStack
    queue_url: str

    def drain(self) -> list[dict[str, Any]]:
        sqs = self.stack.client("sqs")
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def subscribe(stack: LocalStack, queue_name: str) -> Inbox:
    """A new queue subscribed to the stack's notifications topic: what its subscribers receive from now on."""
    sqs, sns = stack.client("sqs"), stack.client("sns")
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=stack.resources["NotificationsTopic"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return Inbox(stack, url)
