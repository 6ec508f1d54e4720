"""Fixtures for the drift-remediation tests on the local stack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accessctl_local import LocalStack
from tests.remediation.support import Emulated
from tests.support.stacks import Inbox, subscribe


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
    return subscribe(stack, "drift-notifications")
