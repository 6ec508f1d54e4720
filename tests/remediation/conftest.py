"""Fixtures for the drift-remediation tests on the local stack."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from accessctl_local import LocalStack
from tests.remediation.support import Emulated


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


def subscribe(stack: LocalStack) -> Inbox:
    sqs, sns = stack.client("sqs"), stack.client("sns")
    url = sqs.create_queue(QueueName="drift-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=stack.resources["NotificationsTopic"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return Inbox(stack, url)


def audit_records(stack: LocalStack, subject: str) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").query(
        TableName=stack.resources["AuditTable"],
        KeyConditionExpression="subject = :s",
        ExpressionAttributeValues={":s": {"S": subject}},
    )["Items"]
    records = [{key: next(iter(value.values())) for key, value in item.items()} for item in items]
    for record in records:
        record["details"] = json.loads(record.get("details") or "{}")
    return records


@pytest.fixture(scope="module")
def emulated(stack: LocalStack) -> Emulated:
    return Emulated(stack.client)


@pytest.fixture(scope="module")
def inbox(stack: LocalStack) -> Inbox:
    return subscribe(stack)
