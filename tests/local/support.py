"""Helpers shared by the local stack's tests."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from accessctl_local import LocalStack


def run_execution(
    stack: LocalStack, state_machine_arn: str, payload: dict[str, Any], limit_s: float = 60
) -> dict[str, Any]:
    """Start an execution and poll until it leaves RUNNING (the limit only stops a hung test)."""
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=f"t-{uuid.uuid4()}", input=json.dumps(payload))[
        "executionArn"
    ]
    deadline = time.monotonic() + limit_s
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(described)
        time.sleep(0.1)


def history_errors(stack: LocalStack, execution_arn: str) -> list[str]:
    """Error names of the execution's failed Lambda tasks, in order."""
    events = stack.client("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    return [e["taskFailedEventDetails"]["error"] for e in events if "taskFailedEventDetails" in e]
