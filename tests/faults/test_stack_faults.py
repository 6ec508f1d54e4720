"""Faults on the local stack: template.yaml deployed into the emulator, the real ASL executing, the
real handlers running in-process. IAM throttles issuing or revoking, and the issue step runs past
its Lambda Timeout (once, and on every attempt); the workflow's own Retry/Catch must leave every grant with one consistent
record, and after one sweep no grant outlives its expiry (``check_estate``, the in-process faults'
invariant, over the whole estate). A notification step that times out after sending is run again
without sending twice; an early revoke whose StopExecution is throttled is stopped by the retried
DELETE; a policy IAM still shows after deletion is retried, not recorded as a failure; and the
grants table write that follows an IAM change fails (throttled when issuing, refused when revoking).

IAM faults are raised by the emulator itself (its IAM backend runs in this process), so they reach
the handlers as real throttling responses. Grants last a few seconds (the grant module's expiry
is shortened in-process) and the SDK's own backoff sleeps are skipped: neither changes which step
fails or what the ASL does about it. Nothing here asserts on timing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from moto.iam.exceptions import IAMException
from moto.iam.models import IAMBackend

from accessctl.models import to_iso, utc_now
from accessctl.store import GrantsStore
from accessctl_local import LocalStack
from accessctl_local.estate import Workload, attached_policies, audit_trail, grant_policies, workload
from tests.conftest import Estate
from tests.faults.support import check_estate
from tests.support.stacks import demo_stack
from tests.support.template import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRANT_SECONDS = 4
SDK_ATTEMPTS = 6  # accessctl.aws: adaptive, max_attempts 5 (botocore: retries after the first); then TransientError
TEMPLATE_TIMEOUT_SECONDS = 30  # Globals.Function.Timeout
GRANTS_PATH = "/accessctl/grants/"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with demo_stack() as running:
        yield running


@pytest.fixture(scope="module")
def orders(stack: LocalStack) -> Workload:
    return workload(stack, "orders-service", session_name="orders-task-1")


@pytest.fixture(autouse=True)
def short_grants_and_fast_sdk_retries(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grants of GRANT_SECONDS (the handlers' copy of the grant module), SDK retries without sleeping."""

    def seconds_not_minutes(granted_at: Any, minutes: int) -> str:
        return to_iso(granted_at + timedelta(seconds=GRANT_SECONDS))

    # Resolved now, while the stack runs: the handlers' own copy of the package (see LocalStack).
    monkeypatch.setattr("accessctl.grants.grant_expiry", seconds_not_minutes)
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    monkeypatch.setattr("botocore.retries.adaptive.ClientRateLimiter.on_sending_request", lambda self, **kwargs: None)


@pytest.fixture(autouse=True)
def no_grant_outlives_its_test(stack: LocalStack) -> Iterator[None]:
    yield
    for policy in grant_policies(stack):
        grant_id = policy["PolicyName"].removeprefix("accessctl-grant-")
        stack.invoke("RevokeGrantFunction", {"request_id": grant_id, "reason": "EARLY", "actor": "test-cleanup"})


# ------------------------------------------------------------------ helpers


def throttle(monkeypatch: pytest.MonkeyPatch, operation: str, times: int) -> list[str]:
    """The emulator's IAM answers ``operation`` with Throttling ``times`` times, then serves it."""
    original = getattr(IAMBackend, operation)
    throttled: list[str] = []

    def maybe_throttled(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        if len(throttled) < times:
            throttled.append(operation)
            raise IAMException("Throttling", "Rate exceeded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IAMBackend, operation, maybe_throttled)
    return throttled


def request(orders: Workload, key: str) -> str:
    return orders.client.submit(
        database="orders-demo", db_user="app_rw", duration_minutes=1, reason="fault test", idempotency_key=key
    ).request_id


def policy_arn_of(stack: LocalStack, request_id: str) -> str:
    account = stack.resources["AccessRequestStateMachine"].split(":")[4]
    return f"arn:aws:iam::{account}:policy{GRANTS_PATH}accessctl-grant-{request_id}"


def execution_arn(stack: LocalStack, request_id: str) -> str:
    machine = stack.resources["AccessRequestStateMachine"]
    return machine.replace(":stateMachine:", ":execution:") + f":{request_id}"


def finished(stack: LocalStack, request_id: str, limit_s: float = 120) -> dict[str, Any]:
    """The execution once it has left RUNNING (the limit only stops a hung test)."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + limit_s
    while True:
        described = sfn.describe_execution(executionArn=execution_arn(stack, request_id))
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(described)
        time.sleep(0.25)


def failed_tasks(stack: LocalStack, request_id: str) -> list[tuple[str, str]]:
    """(state, error) of every failed task attempt, in order."""
    events = stack.client("stepfunctions").get_execution_history(executionArn=execution_arn(stack, request_id))[
        "events"
    ]
    state = ""
    failures: list[tuple[str, str]] = []
    for event in events:
        if "stateEnteredEventDetails" in event:
            state = event["stateEnteredEventDetails"]["name"]
        if "taskFailedEventDetails" in event:
            failures.append((state, event["taskFailedEventDetails"]["error"]))
    return failures


def events_of(stack: LocalStack, request_id: str) -> list[str]:
    return [row["event_type"] for row in audit_trail(stack, request_id)]


def sweep_then_check_estate(stack: LocalStack) -> dict[str, Any]:
    """The template's sweeper once, then the whole-estate invariant at the current time."""
    sweep = stack.fire_schedule("SweepGrantsFunctionSweep")
    assert not sweep.errored, sweep.payload
    assert sweep.payload.get("failed", {}) == {}, sweep.payload
    session = stack.session()  # its clients reach the emulator through AWS_ENDPOINT_URL, set while the stack runs
    grants_table = session.resource("dynamodb").Table(stack.resources["GrantsTable"])
    deps = SimpleNamespace(
        settings=SimpleNamespace(grants_table=stack.resources["GrantsTable"], grants_path=GRANTS_PATH),
        grants=GrantsStore(grants_table),
        iam=session.client("iam"),
    )
    check_estate(Estate(session=session, deps=deps), utc_now())
    return dict(sweep.payload)


def issued_once_and_revoked_at_expiry(stack: LocalStack, orders: Workload, request_id: str) -> None:
    """One policy while it was live, one GRANT_ISSUED, revoked by its workflow at expiry, nothing left."""
    view = orders.client.get_request(request_id)
    assert view.status == "REVOKED"
    assert view.grant is not None and view.grant.revoke_reason == "EXPIRED"
    events = events_of(stack, request_id)
    assert events.count("GRANT_ISSUED") == 1
    assert events.count("GRANT_REVOKED") == 1
    assert attached_policies(stack, "orders-service") == []
    assert [p for p in grant_policies(stack) if p["PolicyName"].endswith(request_id)] == []


# ------------------------------------------------------------------ (a) IAM throttles the issue step


@pytest.mark.parametrize(
    ("operation", "throttles"),
    [("create_policy", SDK_ATTEMPTS), ("attach_role_policy", 2 * SDK_ATTEMPTS)],
    ids=["CreatePolicy throttled past one invocation's SDK retries", "AttachRolePolicy throttled past two"],
)
def test_given_iam_throttles_issuing_when_the_asl_retries_then_one_policy_one_record_and_revoked_at_expiry(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch, operation: str, throttles: int
) -> None:
    # Given IAM throttles a step of issuing for longer than the SDK retries within one invocation
    throttled = throttle(monkeypatch, operation, throttles)
    seen_policies: set[str] = set()
    watch = _watch_policies(stack, seen_policies)

    # When a request runs through the real workflow until its grant expires
    request_id = request(orders, key=f"throttle-{operation}")
    execution = finished(stack, request_id)
    watch()

    # Then the ASL's Retry on TransientError re-ran IssueGrant, the grant went live once, and the
    # workflow revoked it at expiry
    assert execution["status"] == "SUCCEEDED", execution
    assert len(throttled) == throttles
    assert failed_tasks(stack, request_id) == [("IssueGrant", "TransientError")] * (throttles // SDK_ATTEMPTS)
    assert seen_policies == {f"accessctl-grant-{request_id}"}  # never a second policy
    issued_once_and_revoked_at_expiry(stack, orders, request_id)
    assert sweep_then_check_estate(stack)["revoked"] == []


def _watch_policies(stack: LocalStack, seen: set[str]) -> Callable[[], None]:
    """Record every grant policy name that exists while the workflow runs (polled on a thread)."""
    import threading

    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.update(policy["PolicyName"] for policy in grant_policies(stack))
            stop.wait(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()

    def done() -> None:
        stop.set()
        thread.join(10)

    return done


# ------------------------------------------------------------------ (b) the issue step times out


@pytest.fixture
def issue_grant_times_out_after_2s(stack: LocalStack) -> Iterator[None]:
    """IssueGrantFunction's Timeout lowered through the Lambda API (the template says 30 s)."""
    lambda_client = stack.client("lambda")
    name = stack.resources["IssueGrantFunction"]
    lambda_client.update_function_configuration(FunctionName=name, Timeout=2)
    yield
    lambda_client.update_function_configuration(FunctionName=name, Timeout=TEMPLATE_TIMEOUT_SECONDS)


def issue_timeout_retries() -> int:
    """How often the ASL runs IssueGrant again after its function timed out (its Sandbox.Timedout retrier)."""
    states = json.loads((PROJECT_ROOT / "statemachine" / "access_request.asl.json").read_text(encoding="utf-8"))
    (retrier,) = [r for r in states["States"]["IssueGrant"]["Retry"] if "Sandbox.Timedout" in r["ErrorEquals"]]
    return int(retrier["MaxAttempts"])


def slow_attach(monkeypatch: pytest.MonkeyPatch, slow_calls: int | None) -> list[str]:
    """AttachRolePolicy takes effect at once but answers only after IssueGrant's 2 s Timeout
    (the first ``slow_calls`` times; None: always). Returns the policies attached, one per call."""
    original_attach = IAMBackend.attach_role_policy
    attached: list[str] = []

    def attach_then_wait(self: IAMBackend, policy_arn: str, role_name: str) -> None:
        original_attach(self, policy_arn, role_name)
        attached.append(policy_arn)
        if slow_calls is None or len(attached) <= slow_calls:
            time.sleep(3)

    monkeypatch.setattr(IAMBackend, "attach_role_policy", attach_then_wait)
    return attached


def test_given_issue_grant_times_out_once_after_attaching_when_the_asl_retries_then_one_grant_revoked_at_expiry(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch, issue_grant_times_out_after_2s: None
) -> None:
    # Given the first AttachRolePolicy takes effect but answers only after IssueGrant's Timeout
    attached = slow_attach(monkeypatch, slow_calls=1)
    seen_policies: set[str] = set()
    watch = _watch_policies(stack, seen_policies)

    # When a request runs through the real workflow until its grant expires
    request_id = request(orders, key="issue-timeout-once")
    execution = finished(stack, request_id)
    watch()

    # Then Lambda reported Sandbox.Timedout, IssueGrant's Retry ran it again, and the retry found
    # the policy the timed-out run had made and attached: one grant, live once, revoked at expiry
    assert execution["status"] == "SUCCEEDED", execution
    assert failed_tasks(stack, request_id) == [("IssueGrant", "Sandbox.Timedout")]
    assert set(attached) == {policy_arn_of(stack, request_id)}
    assert seen_policies == {f"accessctl-grant-{request_id}"}  # never a second policy
    issued_once_and_revoked_at_expiry(stack, orders, request_id)
    assert sweep_then_check_estate(stack)["revoked"] == []


def test_given_issue_grant_times_out_on_every_attempt_when_the_asl_gives_up_then_compensated_and_nothing_left(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch, issue_grant_times_out_after_2s: None
) -> None:
    # Given every AttachRolePolicy takes effect but answers only after IssueGrant's Timeout
    attached = slow_attach(monkeypatch, slow_calls=None)

    # When a request runs through the real workflow
    request_id = request(orders, key="issue-timeout")
    execution = finished(stack, request_id)

    # Then each attempt timed out (Sandbox.Timedout, retried as often as the ASL says), then Catch
    # ran the compensation, which removed the policy the timed-out invocations had attached
    attempts = 1 + issue_timeout_retries()
    assert execution["status"] == "FAILED", execution
    assert failed_tasks(stack, request_id) == [("IssueGrant", "Sandbox.Timedout")] * attempts
    assert attached == [policy_arn_of(stack, request_id)] * attempts  # each attempt got as far as the attach
    view = orders.client.get_request(request_id)
    assert view.status == "FAILED"
    assert "Sandbox.Timedout" in (view.raw.get("failure") or "")
    events = events_of(stack, request_id)
    assert "GRANT_ISSUED" not in events  # no timed-out invocation got past the attach
    assert events.count("GRANT_COMPENSATED") == 1 and events[-1] == "REQUEST_FAILED"
    assert attached_policies(stack, "orders-service") == []
    # and one sweep after expiry finds nothing left to revoke; the estate is consistent
    time.sleep(GRANT_SECONDS + 1)
    assert sweep_then_check_estate(stack)["revoked"] == []
    assert orders.client.get_request(request_id).status == "FAILED"


# ------------------------------------------------------------------ (c) IAM throttles the revoke step


def test_given_iam_throttles_revoking_at_expiry_when_the_asl_retries_then_revoked_once_by_the_workflow(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given IAM throttles DeletePolicy for longer than one RevokeGrant invocation's SDK retries
    throttled = throttle(monkeypatch, "delete_policy", SDK_ATTEMPTS)

    # When a grant is issued and expires
    request_id = request(orders, key="revoke-throttled")
    execution = finished(stack, request_id)

    # Then the ASL's Retry re-ran RevokeGrant, which revoked it (recorded once, by the workflow)
    assert execution["status"] == "SUCCEEDED", execution
    assert len(throttled) == SDK_ATTEMPTS
    assert failed_tasks(stack, request_id) == [("RevokeGrant", "TransientError")]
    issued_once_and_revoked_at_expiry(stack, orders, request_id)
    revoked = [row for row in audit_trail(stack, request_id) if row["event_type"] == "GRANT_REVOKED"]
    assert [row["actor"] for row in revoked] == ["workflow"]
    assert sweep_then_check_estate(stack)["revoked"] == []


# ------------------------------------------------------------------ (d) a notification step times out after sending


@pytest.fixture
def notify_times_out_after_2s(stack: LocalStack) -> Iterator[None]:
    """NotifyFunction's Timeout lowered through the Lambda API (the template says 30 s)."""
    lambda_client = stack.client("lambda")
    name = stack.resources["NotifyFunction"]
    lambda_client.update_function_configuration(FunctionName=name, Timeout=2)
    yield
    lambda_client.update_function_configuration(FunctionName=name, Timeout=TEMPLATE_TIMEOUT_SECONDS)


def slow_publish(monkeypatch: pytest.MonkeyPatch, slow_event: str) -> list[tuple[str, str]]:
    """SNS delivers every message at once, but answers the first ``slow_event`` publish only after
    NotifyFunction's 2 s Timeout. Returns (event, request id) of every message delivered."""
    from moto.sns.models import Topic

    original_publish = Topic.publish
    delivered: list[tuple[str, str]] = []

    def publish_then_wait(self: Topic, message: str, *args: Any, **kwargs: Any) -> str:
        message_id = original_publish(self, message, *args, **kwargs)
        body = json.loads(message)
        delivered.append((body["event"], body["request_id"]))
        if body["event"] == slow_event and delivered.count((slow_event, body["request_id"])) == 1:
            time.sleep(3)
        return message_id

    monkeypatch.setattr(Topic, "publish", publish_then_wait)
    return delivered


def test_given_the_granted_notification_times_out_after_sending_when_the_asl_retries_then_it_is_sent_once(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch, notify_times_out_after_2s: None
) -> None:
    # Given SNS takes the GRANTED message but answers only after NotifyFunction's Timeout
    delivered = slow_publish(monkeypatch, "GRANTED")

    # When a request runs through the real workflow until its grant expires
    request_id = request(orders, key="notify-timeout")
    execution = finished(stack, request_id)

    # Then Lambda reported Sandbox.Timedout and NotifyGranted ran again, which found the message
    # already handed to SNS: the requester is told once that access was granted, once that it was revoked
    assert execution["status"] == "SUCCEEDED", execution
    assert ("NotifyGranted", "Sandbox.Timedout") in failed_tasks(stack, request_id)
    mine = [event for event, of in delivered if of == request_id]
    assert mine == ["GRANTED", "REVOKED"]
    issued_once_and_revoked_at_expiry(stack, orders, request_id)
    assert sweep_then_check_estate(stack)["revoked"] == []


# ------------------------------------------------------------------ (e) an early revoke cannot stop its workflow at first


def test_given_stopping_the_workflow_is_throttled_when_the_holder_revokes_early_then_the_retried_delete_stops_it(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.responses import StepFunctionResponse

    # Given an active five-minute grant whose workflow waits for its expiry
    monkeypatch.setattr(
        "accessctl.grants.grant_expiry", lambda granted_at, minutes: to_iso(granted_at + timedelta(minutes=5))
    )
    view = orders.client.wait(request(orders, key="early-stop-throttled"), timeout=30)
    assert view.status == "ACTIVE"
    # and Step Functions throttling StopExecution past one invocation's SDK retries
    original_stop = StepFunctionResponse.stop_execution
    throttled: list[str] = []

    def stop_throttled(self: StepFunctionResponse) -> Any:
        if len(throttled) < SDK_ATTEMPTS:
            throttled.append("StopExecution")
            raise AWSError("Rate exceeded", exception_type="ThrottlingException")
        return original_stop(self)

    monkeypatch.setattr(StepFunctionResponse, "stop_execution", stop_throttled)

    # When the holder revokes it (DELETE /grants/{id}; the client retries a 503 as it does any)
    revoked = orders.client.revoke(view.request_id)

    # Then the first attempt revoked the grant but could not stop the workflow; the retried DELETE
    # found it revoked and stopped the workflow: nothing waits on to revoke or notify again at expiry
    assert len(throttled) == SDK_ATTEMPTS
    assert (revoked.status, revoked.revoke_reason) == ("REVOKED", "EARLY")
    assert finished(stack, view.request_id, limit_s=10)["status"] == "ABORTED"
    events = events_of(stack, view.request_id)
    assert events.count("GRANT_REVOKED") == 1
    assert attached_policies(stack, "orders-service") == []
    assert sweep_then_check_estate(stack)["revoked"] == []


# ------------------------------------------------------------------ (f) IAM still shows a deleted policy for a moment


def test_given_iam_still_shows_the_policy_after_deleting_it_when_revoking_at_expiry_then_the_asl_retries_and_revokes(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given IAM answers the first DeletePolicy but (eventually consistent) still serves the policy after it
    original_delete = IAMBackend.delete_policy
    deletes: list[str] = []

    def first_delete_not_seen_yet(self: IAMBackend, policy_arn: str) -> None:
        deletes.append(policy_arn)
        if len(deletes) > 1:
            original_delete(self, policy_arn)

    monkeypatch.setattr(IAMBackend, "delete_policy", first_delete_not_seen_yet)

    # When a grant is issued and expires
    request_id = request(orders, key="delete-not-seen-yet")
    execution = finished(stack, request_id)

    # Then the revoke step, finding the policy still there, failed as transient and its retry revoked
    # it: revoked by the workflow, with no revocation failure recorded or left for the sweeper
    assert execution["status"] == "SUCCEEDED", execution
    assert failed_tasks(stack, request_id) == [("RevokeGrant", "TransientError")]
    assert deletes == [policy_arn_of(stack, request_id)] * 2
    assert "REVOKE_FAILED" not in events_of(stack, request_id)
    issued_once_and_revoked_at_expiry(stack, orders, request_id)
    assert sweep_then_check_estate(stack)["revoked"] == []


# ------------------------------------------------------------------ (g) the grants table write after an IAM change fails


def status_write_fails(monkeypatch: pytest.MonkeyPatch, status: str, error: Exception, times: int) -> list[str]:
    """The emulator's DynamoDB refuses the first ``times`` UpdateItem calls that set ``status``
    (the write that records what IAM just did); the others are served."""
    from moto.dynamodb.models import DynamoDBBackend

    original_update = DynamoDBBackend.update_item
    refused: list[str] = []

    def maybe_refused(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        names = kwargs.get("expression_attribute_names") or {}
        values = kwargs.get("expression_attribute_values") or {}
        sets_status = names.get("#u0p0") == "status" and values.get(":u0") == {"S": status}
        if sets_status and len(refused) < times:
            refused.append(status)
            raise error
        return original_update(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", maybe_refused)
    return refused


def dynamodb_error(code: str) -> Exception:
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException

    return DynamodbException(ERROR_TYPE_PREFIX + code, message="injected")


def test_given_the_active_write_is_throttled_after_attaching_when_the_asl_retries_then_one_grant_revoked_at_expiry(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB throttles the ACTIVE write that follows AttachRolePolicy past the SDK's retries
    refused = status_write_fails(
        monkeypatch, "ACTIVE", dynamodb_error("ProvisionedThroughputExceededException"), SDK_ATTEMPTS
    )

    # When a request runs through the real workflow until its grant expires
    request_id = request(orders, key="active-write-throttled")
    execution = finished(stack, request_id)

    # Then IssueGrant's retry found the policy made and attached, recorded ACTIVE, and the grant
    # was revoked at expiry: one policy, one record, nothing left for the sweeper
    assert execution["status"] == "SUCCEEDED", execution
    assert len(refused) == SDK_ATTEMPTS
    assert failed_tasks(stack, request_id) == [("IssueGrant", "TransientError")]
    issued_once_and_revoked_at_expiry(stack, orders, request_id)
    assert sweep_then_check_estate(stack)["revoked"] == []


def test_given_the_revoked_write_fails_after_iam_deleted_the_policy_when_one_sweep_runs_then_revoked_once(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB refuses (not transient) the REVOKED write that follows the policy's deletion at expiry
    refused = status_write_fails(monkeypatch, "REVOKED", dynamodb_error("ValidationException"), 1)

    # When a grant is issued and expires, and the workflow's revocation ends there
    request_id = request(orders, key="revoked-write-fails")
    execution = finished(stack, request_id)
    assert execution["status"] == "FAILED" and execution.get("error") == "RevokeFailed", execution
    assert refused == ["REVOKED"]
    assert orders.client.get_request(request_id).status == "ACTIVE"  # still indexed for the sweeper
    assert attached_policies(stack, "orders-service") == []  # while IAM has already removed it
    assert "REVOKE_FAILED" in events_of(stack, request_id)

    # Then one sweep records it revoked, once, and the estate is consistent
    assert sweep_then_check_estate(stack)["revoked"] == [request_id]
    view = orders.client.get_request(request_id)
    assert view.status == "REVOKED" and view.grant is not None and view.grant.revoke_reason == "SWEEP"
    revoked = [row["actor"] for row in audit_trail(stack, request_id) if row["event_type"] == "GRANT_REVOKED"]
    assert revoked == ["sweeper"]
