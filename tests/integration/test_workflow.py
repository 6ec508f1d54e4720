"""The real workflow on the local stack: template.yaml deployed into the emulator, the real ASL
executing, the real handlers running, requests signed with SigV4 over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from accessctl_client import AccessctlClient, AuthError, ValidationError
from accessctl_local import LocalStack
from accessctl_local.estate import (
    Workload,
    attached_policies,
    audit_trail,
    create_role,
    grant_policies,
    policy_document,
    workload,
)
from tests.support.stacks import demo_stack, subscribe
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with demo_stack() as running:
        yield running


@pytest.fixture(scope="module")
def orders(stack: LocalStack) -> Workload:
    return workload(stack, "orders-service", session_name="orders-task-1")


@pytest.fixture(autouse=True)
def no_grant_outlives_its_test(stack: LocalStack) -> Iterator[None]:
    """Each test starts with no live grant: a live one would be extended by the next request."""
    yield
    for policy in grant_policies(stack):
        grant_id = policy["PolicyName"].removeprefix("accessctl-grant-")
        stack.invoke("RevokeGrantFunction", {"request_id": grant_id, "reason": "EARLY", "actor": "test-cleanup"})


def request_status(client: AccessctlClient, request_id: str) -> str:
    return client.get_request(request_id).status


def submit(client: AccessctlClient, minutes: int = 1, db_user: str = "app_rw", key: str | None = None) -> str:
    return client.submit(
        database="orders-demo",
        db_user=db_user,
        duration_minutes=minutes,
        reason="integration test",
        idempotency_key=key,
    ).request_id


def until_expired(expires_at: str) -> None:
    expiry = datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()))


def policy_arns(stack: LocalStack) -> set[str]:
    return {policy["Arn"] for policy in grant_policies(stack)}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_given_two_grants_when_one_workflow_is_stopped_then_expiry_and_the_sweeper_revoke_both(
    stack: LocalStack, orders: Workload
) -> None:
    # Given two active grants (two roles), one of whose workflow is stopped mid-wait
    support = workload(stack, "support-engineer", session_name="alice")
    by_workflow = orders.client.wait(submit(orders.client, key="wf-1"), timeout=30)
    by_sweeper = support.client.wait(submit(support.client, db_user="app_ro", key="wf-2"), timeout=30)
    assert (by_workflow.status, by_sweeper.status) == ("ACTIVE", "ACTIVE")
    assert by_workflow.grant is not None and by_sweeper.grant is not None
    document = policy_document(stack, by_workflow.grant.policy_arn)
    (statement,) = document["Statement"]
    dbi = stack.client("rds").describe_db_instances(DBInstanceIdentifier="orders-demo")["DBInstances"][0]
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"] == f"arn:aws:rds-db:us-east-1:{stack.account_id}:dbuser:{dbi['DbiResourceId']}/app_rw"
    assert statement["Condition"] == {"DateLessThan": {"aws:CurrentTime": by_workflow.grant.expires_at}}
    assert attached_policies(stack, "orders-service") == [by_workflow.grant.policy_arn]
    assert attached_policies(stack, "support-engineer") == [by_sweeper.grant.policy_arn]
    stack.client("stepfunctions").stop_execution(
        executionArn=_execution_arn(stack, by_sweeper.request_id), error="Test", cause="stopped mid-wait"
    )
    notifications = subscribe(stack, "sweeper-test-notifications")

    # When both expire
    until_expired(max(by_workflow.grant.expires_at, by_sweeper.grant.expires_at))

    # Then the workflow revokes its own grant at expiry
    wait_for(lambda: request_status(orders.client, by_workflow.request_id) == "REVOKED", timeout=30)
    assert by_workflow.grant.policy_arn not in policy_arns(stack)
    # and the stopped one is still there until the sweeper runs, which revokes it
    assert request_status(support.client, by_sweeper.request_id) == "ACTIVE"
    assert by_sweeper.grant.policy_arn in policy_arns(stack)
    sweep = stack.fire_schedule("SweepGrantsFunctionSweep")
    assert not sweep.errored, sweep.payload
    assert sweep.payload["revoked"] == [by_sweeper.request_id], sweep.payload
    swept = support.client.get_request(by_sweeper.request_id)
    assert swept.status == "REVOKED"
    assert swept.grant is not None and swept.grant.revoke_reason == "SWEEP"
    assert attached_policies(stack, "orders-service") == []
    assert attached_policies(stack, "support-engineer") == []
    assert policy_arns(stack) == set()
    events = [row["event_type"] for row in audit_trail(stack, by_workflow.request_id)]
    assert events == ["REQUEST_SUBMITTED", "REQUEST_DECIDED", "GRANT_ISSUED", "GRANT_REVOKED"]
    swept_rows = audit_trail(stack, by_sweeper.request_id)
    assert swept_rows[-1]["actor"] == "sweeper"
    # and each holder was told of the revocation, the swept one by the sweeper as the workflow would have
    revoked = {message["request_id"] for message in notifications.drain() if message["event"] == "REVOKED"}
    assert revoked == {by_workflow.request_id, by_sweeper.request_id}


def _execution_arn(stack: LocalStack, request_id: str) -> str:
    machine = stack.resources["AccessRequestStateMachine"]
    return machine.replace(":stateMachine:", ":execution:") + f":{request_id}"


def test_given_a_db_user_no_rule_allows_when_requested_then_denied_with_the_reason_and_nothing_granted(
    stack: LocalStack, orders: Workload
) -> None:
    before = policy_arns(stack)

    view = orders.client.wait(submit(orders.client, db_user="app_admin"), timeout=30)

    assert view.status == "DENIED"
    assert view.decision is not None
    assert "no rule allows role orders-service to connect to orders-demo as app_admin" in view.decision.reason
    assert policy_arns(stack) == before


def test_given_the_same_idempotency_key_when_requested_twice_then_one_execution_and_one_grant(
    stack: LocalStack, orders: Workload
) -> None:
    before = policy_arns(stack)

    first = submit(orders.client, key="boot-dup")
    second = submit(orders.client, key="boot-dup")
    view = orders.client.wait(first, timeout=30)

    assert first == second
    assert view.status == "ACTIVE"
    assert len(policy_arns(stack) - before) == 1
    machine = stack.resources["AccessRequestStateMachine"]
    executions = stack.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions].count(first) == 1
    orders.client.revoke(first)


def test_given_an_active_grant_when_revoked_early_then_the_policy_is_gone_and_the_workflow_stops(
    stack: LocalStack, orders: Workload
) -> None:
    view = orders.client.wait(submit(orders.client, minutes=5, key="early"), timeout=30)
    assert view.grant is not None

    revoked = orders.client.revoke(view.request_id)

    assert revoked.status == "REVOKED"
    assert revoked.revoke_reason == "EARLY"
    assert view.grant.policy_arn not in policy_arns(stack)
    execution = stack.client("stepfunctions").describe_execution(executionArn=_execution_arn(stack, view.request_id))
    assert execution["status"] == "ABORTED"
    actors = [row["actor"] for row in audit_trail(stack, view.request_id) if row["event_type"] == "GRANT_REVOKED"]
    assert actors == [orders.principal_arn]


def test_given_attach_fails_after_the_policy_is_created_then_no_policy_is_left_and_the_request_failed(
    stack: LocalStack, orders: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.iam.exceptions import LimitExceededException
    from moto.iam.models import IAMBackend

    def role_is_full(self: IAMBackend, policy_arn: str, role_name: str) -> None:
        raise LimitExceededException("Cannot exceed quota for PoliciesPerRole: 10")

    # The emulator runs in this process: IAM refuses the attach that follows CreatePolicy.
    monkeypatch.setattr(IAMBackend, "attach_role_policy", role_is_full)
    before = policy_arns(stack)

    view = orders.client.wait(submit(orders.client, key="attach-fails"), timeout=60)

    # Then the first view that says FAILED also says why (the compensation writes both at once)
    assert view.status == "FAILED"
    assert "PoliciesPerRole" in (view.raw.get("failure") or "")
    assert policy_arns(stack) == before
    # and once the workflow has ended, the trail has the compensation and the failure, once each
    sfn = stack.client("stepfunctions")
    arn = _execution_arn(stack, view.request_id)
    wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", timeout=60)
    events = [row["event_type"] for row in audit_trail(stack, view.request_id)]
    assert events[-2:] == ["GRANT_COMPENSATED", "REQUEST_FAILED"]
    assert events.count("GRANT_COMPENSATED") == events.count("REQUEST_FAILED") == 1
    assert orders.client.get_request(view.request_id).raw.get("failure") == view.raw.get("failure")


def test_given_a_role_without_the_opt_in_tag_when_it_requests_then_403_and_iam_is_unchanged(stack: LocalStack) -> None:
    outsider = workload(stack, "batch-job", opted_in=False, session_name="batch-1")
    before = policy_arns(stack)

    with pytest.raises(AuthError, match="not enabled for accessctl"):
        submit(outsider.client)

    assert policy_arns(stack) == before
    assert attached_policies(stack, "batch-job") == []


@pytest.mark.parametrize(
    "body_change",
    [
        {"db_user": "*"},
        {"db_user": ".."},
        {"database": "arn:aws:rds:us-east-1:210987654321:db:orders"},
    ],
    ids=["wildcard db user", "dotdot db user", "another account's ARN"],
)
def test_given_a_bad_request_over_http_when_submitted_then_422_and_nothing_changes(
    stack: LocalStack, orders: Workload, body_change: dict[str, str]
) -> None:
    before = policy_arns(stack)
    body = {"database": "orders-demo", "db_user": "app_rw", "duration_minutes": 1, "reason": "bad input test"}
    body.update(body_change)

    with pytest.raises(ValidationError):
        orders.client.submit(
            database=body["database"], db_user=body["db_user"], duration_minutes=1, reason=body["reason"]
        )

    assert policy_arns(stack) == before


def test_given_an_unsigned_request_when_sent_then_the_api_refuses_it(stack: LocalStack) -> None:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{stack.api_url}/requests",
        data=json.dumps(
            {"database": "orders-demo", "db_user": "app_rw", "duration_minutes": 1, "reason": "x"}
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)

    assert refused.value.code == 403


def test_given_a_grant_tampered_by_hand_when_cloudtrail_reports_it_then_the_sweeper_removes_it(
    stack: LocalStack, orders: Workload
) -> None:
    import json

    from tests.support.events import load_event

    view = orders.client.wait(submit(orders.client, minutes=5, key="tamper"), timeout=30)
    assert view.grant is not None
    widened = policy_document(stack, view.grant.policy_arn)
    widened["Statement"][0].pop("Condition")
    stack.client("iam").create_policy_version(
        PolicyArn=view.grant.policy_arn, PolicyDocument=json.dumps(widened), SetAsDefault=True
    )
    event = load_event("cloudtrail_grant_policy_version.json")
    event["detail"]["requestParameters"]["policyArn"] = view.grant.policy_arn

    sweep = stack.invoke("SweepGrantsFunction", event)

    assert not sweep.errored, sweep.payload
    assert [finding["kind"] for finding in sweep.payload["findings"]] == ["tampered"]
    assert view.grant.policy_arn not in policy_arns(stack)
    revoked = orders.client.get_request(view.request_id)
    assert (revoked.status, revoked.grant.revoke_reason if revoked.grant else None) == ("REVOKED", "TAMPERED")
    reasons = [
        row.get("reason", "") for row in audit_trail(stack, view.request_id) if row["event_type"] == "GRANT_TAMPERED"
    ]
    assert "DateLessThan" in reasons[0]


def test_given_an_unrelated_iam_event_when_the_sweeper_gets_it_then_nothing_is_checked(stack: LocalStack) -> None:
    from tests.support.events import load_event

    event = load_event("cloudtrail_grant_policy_version.json")
    event["detail"]["requestParameters"]["policyArn"] = f"arn:aws:iam::{stack.account_id}:policy/team/other"

    sweep = stack.invoke("SweepGrantsFunction", event)

    assert sweep.payload["examined"] == 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_given_an_active_grant_when_the_workload_asks_again_then_one_policy_is_extended_and_revoked_once(
    stack: LocalStack, orders: Workload
) -> None:
    # Given an active one-minute grant
    first = orders.client.wait(submit(orders.client, minutes=1, key="overlap-1"), timeout=30)
    assert first.grant is not None
    time.sleep(20)

    # When the same role asks again for the same database user
    second = orders.client.wait(submit(orders.client, minutes=1, key="overlap-2"), timeout=30)

    # Then the first grant is extended in place: one policy, one version, a later expiry
    assert second.status == "EXTENDED"
    assert second.raw["extends"] == first.request_id
    extended = orders.client.get_request(first.request_id).grant
    assert extended is not None and extended.expires_at > first.grant.expires_at
    assert attached_policies(stack, "orders-service") == [first.grant.policy_arn]
    assert policy_document(stack, first.grant.policy_arn)["Statement"][0]["Condition"] == {
        "DateLessThan": {"aws:CurrentTime": extended.expires_at}
    }
    # and the first workflow, waking at the old expiry, waits again instead of revoking
    until_expired(first.grant.expires_at)
    time.sleep(3)
    assert request_status(orders.client, first.request_id) == "ACTIVE"
    assert first.grant.policy_arn in policy_arns(stack)
    until_expired(extended.expires_at)
    wait_for(lambda: request_status(orders.client, first.request_id) == "REVOKED", timeout=30)
    assert first.grant.policy_arn not in policy_arns(stack)
    revocations = [row for row in audit_trail(stack, first.request_id) if row["event_type"] == "GRANT_REVOKED"]
    assert len(revocations) == 1


def _new_default_version(change: Callable[[dict[str, Any]], None]) -> Callable[[LocalStack, str], None]:
    def tamper(stack: LocalStack, policy_arn: str) -> None:
        document = policy_document(stack, policy_arn)
        change(document["Statement"][0])
        stack.client("iam").create_policy_version(
            PolicyArn=policy_arn, PolicyDocument=json.dumps(document), SetAsDefault=True
        )

    return tamper


def _attach_to_another_role(stack: LocalStack, policy_arn: str) -> None:
    create_role(stack, "intruder", opted_in=False)
    stack.client("iam").attach_role_policy(RoleName="intruder", PolicyArn=policy_arn)


BY_HAND = {
    "condition removed": (_new_default_version(lambda statement: statement.pop("Condition")), "DateLessThan"),
    "resource widened": (
        _new_default_version(lambda statement: statement.update(Resource="*")),
        "Resource must be exactly one dbuser ARN",
    ),
    "attached to another role": (_attach_to_another_role, "attached to role/intruder"),
}


@pytest.mark.parametrize(("tamper", "why"), BY_HAND.values(), ids=BY_HAND.keys())
def test_given_a_grant_tampered_by_hand_when_the_scheduled_integrity_sweep_runs_then_it_is_removed_and_recorded_why(
    stack: LocalStack,
    orders: Workload,
    monkeypatch: pytest.MonkeyPatch,
    tamper: Callable[[LocalStack, str], None],
    why: str,
) -> None:
    from moto.sns.models import Topic

    published: list[dict[str, Any]] = []
    original_publish = Topic.publish

    def recorded(self: Topic, message: str, *args: Any, **kwargs: Any) -> str:
        published.append(json.loads(message))
        return original_publish(self, message, *args, **kwargs)

    monkeypatch.setattr(Topic, "publish", recorded)
    # Given an active grant changed by hand in IAM (no CloudTrail event reaches the sweeper)
    key = "tamper-" + "".join(c if c.isalnum() else "-" for c in why)
    view = orders.client.wait(submit(orders.client, minutes=5, key=key), timeout=30)
    assert view.grant is not None
    tamper(stack, view.grant.policy_arn)

    # When the integrity sweep's schedule fires
    sweep = stack.fire_schedule("SweepGrantsFunctionIntegritySweep")

    # Then the policy is gone from every principal, the grant is revoked as TAMPERED, the audit
    # trail says why, and operators were notified
    assert not sweep.errored, sweep.payload
    (finding,) = sweep.payload["findings"]
    assert finding["kind"] == "tampered" and any(why in problem for problem in finding["problems"])
    assert view.grant.policy_arn not in policy_arns(stack)
    assert attached_policies(stack, "orders-service") == []
    revoked = orders.client.get_request(view.request_id)
    assert (revoked.status, revoked.grant.revoke_reason if revoked.grant else None) == ("REVOKED", "TAMPERED")
    (tampered,) = [row for row in audit_trail(stack, view.request_id) if row["event_type"] == "GRANT_TAMPERED"]
    assert why in tampered.get("reason", "")
    assert {"event": "TAMPERED", "request_id": view.request_id} in [
        {"event": message["event"], "request_id": message["request_id"]} for message in published
    ]
