"""Every path of a request leaves its audit rows, each naming the principal, the database and the
Step Functions execution that ran it (the investigator's pivot to the workflow's history)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from accessctl.access_requests import revoke_early, submit_request
from accessctl.approvals import ApprovalsStore, Approver, cast_vote, open_approval
from accessctl.audit_query import access_between
from accessctl.errors import TransientError
from accessctl.grants import evaluate_request, issue_grant, revoke_grant, sweep_expired_grants
from accessctl.models import (
    AccessRequestSubmission,
    AuditEvent,
    AuditEventType,
    Outcome,
    RevokeReason,
    SubmissionAnswer,
)
from accessctl.policy import PolicyEngine
from tests.conftest import ACCOUNT_ID, Estate
from tests.faults.support import FaultyClient, audit_write_fails_once, move_clock
from tests.support.requests import policy_engine_for, workload_caller
from tests.support.template import create_table

RULES = """
@id("paths-auto")
@outcome("auto")
@max_minutes("15")
permit (principal == Role::"orders-service", action == Action::"connect", resource in Database::"orders-prod")
when { resource.name == "app_rw" };

@id("paths-approval")
@outcome("approval")
@approver_group("db-owners")
@approvals("1")
@max_minutes("15")
permit (principal == Role::"orders-service", action == Action::"connect", resource in Database::"orders-prod")
when { resource.name == "app_ro" };

@id("paths-break-glass")
@outcome("auto")
@break_glass("true")
@max_minutes("15")
permit (principal == Role::"reporting-job", action == Action::"connect", resource in Database::"orders-prod")
when { resource.name == "app_rw" };
"""
APPROVER = Approver(identity="bob@example.com", groups=frozenset({"db-owners"}), via="slack:T0001/U0002")


def policy_engine() -> PolicyEngine:
    return policy_engine_for(RULES)


@pytest.fixture
def orders(estate: Estate) -> None:
    for role in ("orders-service", "reporting-job"):
        estate.role(role, path="/workloads/")
    estate.postgres("orders-prod")


class ResumingSfn:
    """Step Functions as the workflow sees it, where the approval's task token is one it waits on."""

    def __init__(self, sfn: Any) -> None:
        self._sfn = sfn
        self.resumed: list[dict[str, Any]] = []

    def send_task_success(self, **kwargs: Any) -> dict[str, Any]:
        self.resumed.append(kwargs)
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sfn, name)


def _submit(estate: Estate, deps: Any, role: str, db_user: str, reason: str) -> SubmissionAnswer:
    caller = workload_caller(deps.iam, role)
    body = {"database": "orders-prod", "db_user": db_user, "duration_minutes": 10, "reason": reason}
    return submit_request(AccessRequestSubmission.model_validate(body), caller, deps)


def _records(estate: Estate, subject: str) -> dict[AuditEventType, AuditEvent]:
    return {event.event_type: event for event in estate.deps.audit.for_subject(subject)}


def _assert_linked(records: dict[AuditEventType, AuditEvent], answer: SubmissionAnswer) -> None:
    """Each record names the request's principal, database and the execution StartExecution answered."""
    assert answer.execution_arn is not None
    for kind, event in records.items():
        assert event.execution_arn == answer.execution_arn, kind
        assert (event.principal_arn or "").endswith("/task-1"), kind
        assert event.database == "orders-prod", kind


def test_given_an_allowed_request_when_granted_and_revoked_at_expiry_then_each_step_is_audited_and_linked(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an allowed request, granted
    answer = _submit(estate, estate.deps, "orders-service", "app_rw", "grant path")
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)
    # When its workflow revokes it at expiry
    move_clock(monkeypatch, 11)
    revoke_grant(answer.request_id, RevokeReason.EXPIRED, "workflow", estate.deps)

    # Then submitted, decided (allow), issued and revoked (expired) are on the trail, each linked
    records = _records(estate, answer.request_id)
    assert list(records) == [
        AuditEventType.REQUEST_SUBMITTED,
        AuditEventType.REQUEST_DECIDED,
        AuditEventType.GRANT_ISSUED,
        AuditEventType.GRANT_REVOKED,
    ]
    assert records[AuditEventType.REQUEST_DECIDED].outcome == Outcome.ALLOW.value
    assert records[AuditEventType.GRANT_REVOKED].reason == RevokeReason.EXPIRED.value
    _assert_linked(records, answer)


def test_given_a_request_no_rule_allows_when_decided_then_the_denial_and_its_reason_are_audited_and_linked(
    estate: Estate, orders: None
) -> None:
    answer = _submit(estate, estate.deps, "orders-service", "admin", "deny path")

    evaluate_request(answer.request_id, policy_engine(), estate.deps)

    records = _records(estate, answer.request_id)
    decided = records[AuditEventType.REQUEST_DECIDED]
    assert decided.outcome == Outcome.DENY.value and decided.reason
    _assert_linked(records, answer)


def test_given_a_request_needing_approval_when_approved_and_granted_then_the_approver_is_audited_and_answers_who_approved(
    estate: Estate, orders: None
) -> None:
    # Given a request that needs one approval from db-owners, asked of them
    create_table(estate.session.client("dynamodb"), "ChatOpsTable", "chatops")
    sfn = ResumingSfn(estate.deps.sfn)
    deps = replace(estate.deps, approvals=ApprovalsStore(estate.session.resource("dynamodb").Table("chatops")), sfn=sfn)
    answer = _submit(estate, deps, "orders-service", "app_ro", "approval path")
    assert evaluate_request(answer.request_id, policy_engine(), deps).outcome == Outcome.NEEDS_APPROVAL
    open_approval(answer.request_id, "token-1", deps, None)

    # When bob approves and the workflow resumes to grant
    cast_vote(answer.request_id, APPROVER, "APPROVE", deps, None)
    assert sfn.resumed and sfn.resumed[0]["taskToken"] == "token-1"
    issue_grant(answer.request_id, deps)

    # Then the request, the vote and the grant are audited and linked, and bob is who approved it
    records = _records(estate, answer.request_id)
    assert {
        AuditEventType.APPROVAL_REQUESTED,
        AuditEventType.APPROVAL_VOTE,
        AuditEventType.GRANT_ISSUED,
    } <= set(records)
    assert records[AuditEventType.APPROVAL_VOTE].actor == APPROVER.identity
    _assert_linked(records, answer)
    issued = records[AuditEventType.GRANT_ISSUED]
    (grant,) = access_between(estate.deps.audit.table, "orders-prod", issued.at, issued.at).grants
    assert grant.approved_by == [APPROVER.identity]


def test_given_a_live_grant_when_the_same_access_is_asked_again_then_the_extension_is_audited_on_both_and_linked(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _submit(estate, estate.deps, "orders-service", "app_rw", "first start")
    evaluate_request(first.request_id, policy_engine(), estate.deps)
    issue_grant(first.request_id, estate.deps)
    move_clock(monkeypatch, 5)

    second = _submit(estate, estate.deps, "orders-service", "app_rw", "second start")
    evaluate_request(second.request_id, policy_engine(), estate.deps)
    issue_grant(second.request_id, estate.deps)

    # The extension is recorded on the grant and on the request that asked, both linked to the
    # execution that made it (the second request's)
    extended_grant = _records(estate, first.request_id)[AuditEventType.GRANT_EXTENDED]
    assert extended_grant.execution_arn == second.execution_arn
    records = _records(estate, second.request_id)
    assert AuditEventType.GRANT_EXTENDED in records
    _assert_linked(records, second)


def test_given_a_grant_when_its_holder_revokes_it_early_then_the_revocation_is_audited_and_linked(
    estate: Estate, orders: None
) -> None:
    answer = _submit(estate, estate.deps, "orders-service", "app_rw", "early revoke path")
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)
    holder = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/task-1"

    revoke_grant(answer.request_id, RevokeReason.EARLY, holder, estate.deps)

    records = _records(estate, answer.request_id)
    revoked = records[AuditEventType.GRANT_REVOKED]
    assert (revoked.reason, revoked.actor) == (RevokeReason.EARLY.value, holder)
    _assert_linked(records, answer)


def test_given_a_grant_its_workflow_missed_when_the_sweeper_revokes_it_then_that_is_audited_and_linked(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = _submit(estate, estate.deps, "orders-service", "app_rw", "sweeper path")
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)
    move_clock(monkeypatch, 11)

    sweep_expired_grants(estate.deps)

    records = _records(estate, answer.request_id)
    revoked = records[AuditEventType.GRANT_REVOKED]
    assert (revoked.reason, revoked.actor) == (RevokeReason.SWEEP.value, "sweeper")
    _assert_linked(records, answer)


def test_given_a_break_glass_rule_when_it_allows_then_a_high_severity_record_is_audited_and_linked(
    estate: Estate, orders: None
) -> None:
    answer = _submit(estate, estate.deps, "reporting-job", "app_rw", "break-glass path")

    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)

    records = _records(estate, answer.request_id)
    used = records[AuditEventType.BREAK_GLASS_USED]
    assert (used.outcome, used.details["rule_id"]) == ("HIGH", "paths-break-glass")
    assert AuditEventType.GRANT_ISSUED in records
    _assert_linked(records, answer)
    issued = records[AuditEventType.GRANT_ISSUED]
    (grant,) = access_between(estate.deps.audit.table, "orders-prod", issued.at, issued.at).grants
    assert grant.break_glass is True


def test_given_a_grant_past_expiry_the_sweeper_cannot_revoke_when_swept_twice_then_the_failure_is_audited_once(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant past expiry, and IAM refusing to detach its policy
    answer = _submit(estate, estate.deps, "orders-service", "app_rw", "sweeper failure path")
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)
    move_clock(monkeypatch, 11)
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DetachRolePolicy")
    failing = replace(estate.deps, iam=FaultyClient(estate.deps.iam, detach_role_policy=[refused, refused]))

    # When the sweeper tries, and tries again a minute later
    first, second = sweep_expired_grants(failing), sweep_expired_grants(failing)

    # Then both sweeps report it, and the trail says once that the sweeper could not revoke it
    assert answer.request_id in first.failed and answer.request_id in second.failed
    failures = [
        e for e in estate.deps.audit.for_subject(answer.request_id) if e.event_type == AuditEventType.REVOKE_FAILED
    ]
    assert len(failures) == 1
    assert failures[0].actor == "sweeper" and "AccessDenied" in (failures[0].reason or "")
    _assert_linked({AuditEventType.REVOKE_FAILED: failures[0]}, answer)


def test_given_a_vote_whose_audit_write_failed_when_the_approver_clicks_again_then_it_is_audited_once_and_decides(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a request waiting for one approval, and bob's approval counted but its audit write failed
    create_table(estate.session.client("dynamodb"), "ChatOpsTable", "chatops")
    sfn = ResumingSfn(estate.deps.sfn)
    deps = replace(estate.deps, approvals=ApprovalsStore(estate.session.resource("dynamodb").Table("chatops")), sfn=sfn)
    answer = _submit(estate, deps, "orders-service", "app_ro", "vote audit failure")
    evaluate_request(answer.request_id, policy_engine(), deps)
    open_approval(answer.request_id, "token-1", deps, None)
    audit_write_fails_once(estate, monkeypatch, AuditEventType.APPROVAL_VOTE)
    with pytest.raises(RuntimeError):
        cast_vote(answer.request_id, APPROVER, "APPROVE", deps, None)

    # When bob clicks again (Slack retries, or he does)
    result = cast_vote(answer.request_id, APPROVER, "APPROVE", deps, None)

    # Then his vote is on the trail once, and it decides the request: the workflow resumes
    votes = [
        e for e in estate.deps.audit.for_subject(answer.request_id) if e.event_type == AuditEventType.APPROVAL_VOTE
    ]
    assert [vote.actor for vote in votes] == [APPROVER.identity]
    assert result.outcome.value == "APPROVED"
    assert [call["taskToken"] for call in sfn.resumed] == ["token-1"]


class FailingRevokeFunction:
    """The revoke function as the API invokes it, failing (IAM throttled past its retries, say)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.payloads.append(json.loads(kwargs["Payload"]))
        error = {"errorType": "TransientError", "errorMessage": "AWS is throttling or unavailable: Throttling"}
        return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(error).encode())}


def test_given_an_early_revoke_that_fails_when_asked_then_the_failure_is_audited_with_who_asked_and_linked(
    estate: Estate, orders: None
) -> None:
    # Given a live grant, and a revoke function that fails
    answer = _submit(estate, estate.deps, "orders-service", "app_rw", "early revoke failure")
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)
    revoker = FailingRevokeFunction()
    deps = replace(estate.deps, lambda_client=revoker)
    holder = workload_caller(deps.iam, "orders-service")

    # When its holder asks to revoke it now
    with pytest.raises(TransientError):
        revoke_early(answer.request_id, holder, deps)

    # Then the trail says who asked and why it failed
    assert revoker.payloads[0]["reason"] == RevokeReason.EARLY.value
    failures = [
        e for e in estate.deps.audit.for_subject(answer.request_id) if e.event_type == AuditEventType.REVOKE_FAILED
    ]
    assert len(failures) == 1
    assert failures[0].actor == holder.principal_arn and "Throttling" in (failures[0].reason or "")
    assert failures[0].details["revoke_reason"] == RevokeReason.EARLY.value
    _assert_linked({AuditEventType.REVOKE_FAILED: failures[0]}, answer)


def test_given_a_submission_whose_audit_write_fails_then_the_request_is_recorded_failed_and_no_workflow_starts(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_write_fails_once(estate, monkeypatch, AuditEventType.REQUEST_SUBMITTED)
    started = estate.deps.sfn.list_executions(stateMachineArn=estate.deps.settings.state_machine_arn)["executions"]

    with pytest.raises(RuntimeError):
        _submit(estate, estate.deps, "orders-service", "app_rw", "unaudited submission")

    # Then the request that was recorded is not left pending: it failed, and why is recorded
    table = estate.session.resource("dynamodb").Table("grants")
    (item,) = table.scan()["Items"]
    assert item["status"] == "FAILED" and "audit" in item["failure"]
    after = estate.deps.sfn.list_executions(stateMachineArn=estate.deps.settings.state_machine_arn)["executions"]
    assert after == started


def test_given_an_early_revoke_that_revoked_then_failed_to_stop_the_workflow_then_no_revoke_failure_is_audited(
    estate: Estate, orders: None
) -> None:
    # Given a revoke function that revokes the grant, then fails (stopping the workflow was throttled)
    answer = _submit(estate, estate.deps, "orders-service", "app_rw", "revoked then failed")
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)

    class RevokesThenFails(FailingRevokeFunction):
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            revoke_grant(answer.request_id, RevokeReason.EARLY, "holder", estate.deps)
            return super().invoke(**kwargs)

    deps = replace(estate.deps, lambda_client=RevokesThenFails())

    with pytest.raises(TransientError):
        revoke_early(answer.request_id, workload_caller(deps.iam, "orders-service"), deps)

    # Then the trail has the revocation, and no failure
    kinds = [event.event_type for event in estate.deps.audit.for_subject(answer.request_id)]
    assert AuditEventType.GRANT_REVOKED in kinds and AuditEventType.REVOKE_FAILED not in kinds


def test_given_an_orphan_policy_the_sweeper_cannot_remove_when_swept_twice_then_the_finding_is_audited_once(
    estate: Estate, orders: None
) -> None:
    from accessctl.integrity import sweep_integrity

    # Given a grant policy nobody issued, attached to a role, and IAM refusing to detach it
    arn = estate.hand_made_grant_policy("orders-service")
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DetachRolePolicy")
    failing = replace(estate.deps, iam=FaultyClient(estate.deps.iam, detach_role_policy=[refused, refused]))

    # When the integrity sweep runs twice
    first, second = sweep_integrity(failing), sweep_integrity(failing)

    # Then both report it, and the trail holds the finding, and that it could not be removed, once
    assert arn in first.failed and arn in second.failed
    (failure,) = [e for e in estate.deps.audit.for_subject(arn) if e.event_type == AuditEventType.REVOKE_FAILED]
    assert failure.actor == "sweeper" and "AccessDenied" in (failure.reason or "")
    assert failure.details["finding"] == "orphan" and failure.details["policy_arn"] == arn
