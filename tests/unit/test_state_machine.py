"""The workflow's ASL as written: what each step receives, and which errors it retries or catches.

Read from statemachine/access_request.asl.json (no AWS): the same file the template deploys and the
local stack runs. The fault tests on the local stack show these paths executing; these tests pin
the structure so a change to it is deliberate.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from accessctl.models import OutcomeInput, RevokeInput
from tests.support.template import PROJECT_ROOT

ASL = PROJECT_ROOT / "statemachine" / "access_request.asl.json"
REQUEST_ID = "5f0c3a52-8d0e-4a43-9d7e-3f6a2b1c9e10"


@cache
def states() -> dict[str, Any]:
    return dict(json.loads(ASL.read_text(encoding="utf-8"))["States"])


def test_compensation_receives_the_error_of_the_step_that_failed() -> None:
    # Given the issue step's Catch, which puts the error at $.error and goes to CompensateGrant
    (catch,) = states()["IssueGrant"]["Catch"]
    assert (catch["ResultPath"], catch["Next"]) == ("$.error", "CompensateGrant")

    # Then CompensateGrant hands that error to the revoke function with the request id
    payload = states()["CompensateGrant"]["Parameters"]["Payload"]
    assert payload["error.$"] == "$.error"
    assert payload["reason"] == "COMPENSATION"


def test_the_revoke_step_input_turns_the_error_into_the_reason_recorded() -> None:
    # Given what Step Functions puts at $.error when a Lambda function raised
    error = {
        "Error": "LimitExceededException",
        "Cause": json.dumps({"errorMessage": "Cannot exceed quota for PoliciesPerRole: 10", "errorType": "X"}),
    }

    # When the compensation and the failure record parse it
    compensation = RevokeInput.model_validate({"request_id": REQUEST_ID, "reason": "COMPENSATION", "error": error})
    outcome = OutcomeInput.model_validate({"request_id": REQUEST_ID, "outcome": "FAILED", "error": error})

    # Then both record the same reason, in words
    expected = "LimitExceededException: Cannot exceed quota for PoliciesPerRole: 10"
    assert compensation.error is not None and compensation.error.detail() == expected
    assert outcome.detail() == expected
    assert RevokeInput.model_validate({"request_id": REQUEST_ID, "reason": "EXPIRED"}).error is None


# What Step Functions reports when a Lambda function runs past its Timeout (older runtimes:
# Lambda.Unknown), beside the Lambda service errors every step already retries.
LAMBDA_TIMED_OUT = ("Sandbox.Timedout", "Lambda.Unknown")
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# Steps whose function is safe to run again after it timed out part-way (each checks what an
# earlier run already did; a notification claims each channel's delivery before sending): every Lambda task.
RERUNNABLE_STEPS = [
    "EvaluateRequest",
    "RecordDenied",
    "RecordNeedsApproval",
    "RequestApproval",
    "RecordApprovalDenied",
    "CheckApprovalAtTimeout",
    "IssueGrant",
    "RevokeGrant",
    "CompensateGrant",
    "RecordFailed",
    "RecordRevokeFailed",
    "NotifyDenied",
    "NotifyExpired",
    "NotifyExtended",
    "NotifyGranted",
    "NotifyExpiring",
    "NotifyRevoked",
    "NotifyFailed",
]


def retried_errors(state: dict[str, Any]) -> set[str]:
    return {name for retrier in state.get("Retry", []) for name in retrier["ErrorEquals"]}


def test_every_lambda_task_is_rerunnable() -> None:
    tasks = {name for name, state in states().items() if state["Type"] == "Task"}
    assert tasks == set(RERUNNABLE_STEPS)


@pytest.mark.parametrize("step", RERUNNABLE_STEPS)
def test_a_step_whose_lambda_timed_out_is_retried(step: str) -> None:
    # Given the step's Retry list (States.ALL matches every error but States.Runtime)
    retried = retried_errors(states()[step])

    # Then a function that ran past its Timeout is run again, like a Lambda service error
    if "States.ALL" not in retried:
        assert set(LAMBDA_TIMED_OUT) <= retried
        assert set(LAMBDA_SERVICE_ERRORS) <= retried
        assert "TransientError" in retried


def test_a_timed_out_issue_step_is_retried_before_it_is_compensated() -> None:
    issue = states()["IssueGrant"]
    (timed_out,) = [retrier for retrier in issue["Retry"] if "Sandbox.Timedout" in retrier["ErrorEquals"]]
    assert timed_out["MaxAttempts"] >= 2
    assert issue["Catch"][0]["ErrorEquals"] == ["States.ALL"]
