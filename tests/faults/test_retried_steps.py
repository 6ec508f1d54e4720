"""Steps run again after their function timed out part-way (the workflow retries Sandbox.Timedout):
the effects of the earlier run are found and completed, never made twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from accessctl.approvals import ApprovalsStore, open_approval
from accessctl.errors import ForbiddenError, TransientError
from accessctl.grant_policy import grant_policy_problems
from accessctl.grants import current_policy_document, evaluate_request, issue_grant, record_outcome, revoke_grant
from accessctl.models import AccessRequest, Approval, AuditEventType, MessageRef, RequestStatus, RevokeReason
from tests.conftest import OPT_IN_TAG, Estate
from tests.faults.support import (
    FaultyClient,
    allowed_request,
    approval_request,
    audit_write_fails_once,
    grant_policies,
    move_clock,
    policy_engine,
    server_error,
    store_failing,
    sweep_then_check,
    throttled,
)
from tests.support.template import create_table


def audited(estate: Estate, request_id: str, event_type: AuditEventType) -> int:
    return sum(1 for event in estate.deps.audit.for_subject(request_id) if event.event_type == event_type)


def test_given_a_decided_request_when_the_decision_step_runs_again_then_one_decision_and_one_record(
    estate: Estate, orders: Any
) -> None:
    # Given a request decided (and audited) by a run that then timed out
    request_id = allowed_request(estate)
    first = estate.deps.grants.get(request_id).decision

    # When the step runs again
    again = evaluate_request(request_id, policy_engine(), estate.deps)

    # Then the recorded decision stands and is audited once
    assert again == first
    assert estate.deps.grants.get(request_id).decision == first
    assert audited(estate, request_id, AuditEventType.REQUEST_DECIDED) == 1


def test_given_an_extension_recorded_by_a_run_that_timed_out_when_issued_again_then_extended_once(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a live grant, and a second request for the same access whose issue step extended it
    # and then stopped before writing the audit records
    live = allowed_request(estate)
    grant = issue_grant(live, estate.deps)
    second = allowed_request(estate, reason="a second request")
    audit_write_fails_once(estate, monkeypatch, AuditEventType.GRANT_EXTENDED)
    with pytest.raises(RuntimeError):
        issue_grant(second, estate.deps)
    assert estate.deps.grants.get(second).status == RequestStatus.EXTENDED

    # When the workflow runs the step again (twice)
    extended = issue_grant(second, estate.deps)
    issue_grant(second, estate.deps)

    # Then it answers with the extended grant (the workflow's "extended" branch), one policy
    # exists, and each request has one GRANT_EXTENDED record
    assert extended.grant_id == live
    assert extended.expires_at == estate.deps.grants.get(live).grant.expires_at  # type: ignore[union-attr]
    assert list(grant_policies(estate)) == [grant.policy_name]
    assert estate.deps.grants.get(second).status == RequestStatus.EXTENDED
    assert audited(estate, live, AuditEventType.GRANT_EXTENDED) == 1
    assert audited(estate, second, AuditEventType.GRANT_EXTENDED) == 1
    sweep_then_check(estate, move_clock(monkeypatch, 16))


def test_given_an_extension_that_stopped_before_recording_the_second_request_when_issued_again_then_extended_once(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a live grant, and a second request a minute later whose issue step moved the live grant's
    # expiry (record and policy) and then stopped before recording the second request as EXTENDED
    live = allowed_request(estate)
    issued = issue_grant(live, estate.deps)
    second = allowed_request(estate, reason="a second request")
    move_clock(monkeypatch, 1)
    with pytest.raises(TransientError):
        issue_grant(
            second,
            replace(estate.deps, grants=store_failing(estate, RequestStatus.EXTENDED, server_error("UpdateItem"))),
        )
    extended_to = estate.deps.grants.get(live).grant.expires_at  # type: ignore[union-attr]
    assert extended_to > issued.expires_at

    # When the workflow runs the step again, a minute later still
    move_clock(monkeypatch, 2)
    extended = issue_grant(second, estate.deps)

    # Then the extension the first run made stands: not moved again, recorded once, one policy version
    live_grant = estate.deps.grants.get(live).grant
    assert live_grant is not None
    assert extended.expires_at == live_grant.expires_at == extended_to
    assert live_grant.extended_by == [second]
    assert (
        grant_policy_problems(current_policy_document(issued.policy_arn, estate.deps), issued.resource_arn, extended_to)
        == []
    )
    assert len(estate.session.client("iam").list_policy_versions(PolicyArn=issued.policy_arn)["Versions"]) == 1
    assert estate.deps.grants.get(second).status == RequestStatus.EXTENDED
    assert audited(estate, live, AuditEventType.GRANT_EXTENDED) == 1
    assert audited(estate, second, AuditEventType.GRANT_EXTENDED) == 1
    sweep_then_check(estate, move_clock(monkeypatch, 16))


WHY = "TransientError: Rate exceeded"


def attach_throttled(estate: Estate, request_id: str) -> None:
    """The issue step created the policy, then IAM throttled the attach through every retry."""
    iam = FaultyClient(estate.deps.iam, attach_role_policy=[throttled("AttachRolePolicy")])
    with pytest.raises(TransientError):
        issue_grant(request_id, replace(estate.deps, iam=iam))


def role_opted_out(estate: Estate, request_id: str) -> None:
    """The issue step refused before any change: the role is no longer opted in."""
    estate.session.client("iam").untag_role(RoleName="orders-service", TagKeys=[OPT_IN_TAG])
    with pytest.raises(ForbiddenError):
        issue_grant(request_id, estate.deps)


@pytest.mark.parametrize("failed_issue", [attach_throttled, role_opted_out])
def test_given_a_compensation_that_stopped_before_its_audit_record_when_run_again_then_compensated_once(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch, failed_issue: Callable[[Estate, str], None]
) -> None:
    # Given a failed issue step, and a compensation that recorded FAILED and then stopped
    request_id = allowed_request(estate)
    failed_issue(estate, request_id)
    audit_write_fails_once(estate, monkeypatch, AuditEventType.GRANT_COMPENSATED)
    with pytest.raises(RuntimeError):
        revoke_grant(request_id, RevokeReason.COMPENSATION, "workflow", estate.deps, failure=WHY)
    first = estate.deps.grants.get(request_id)

    # When CompensateGrant runs again (twice), and RecordFailed twice
    again = revoke_grant(request_id, RevokeReason.COMPENSATION, "workflow", estate.deps, failure=WHY)
    revoke_grant(request_id, RevokeReason.COMPENSATION, "workflow", estate.deps, failure=WHY)
    record_outcome(request_id, "FAILED", WHY, estate.deps)
    record_outcome(request_id, "FAILED", WHY, estate.deps)

    # Then the request stays FAILED as first recorded, and each record is written once
    assert again.status == "ALREADY_REVOKED"
    assert estate.deps.grants.get(request_id) == first
    assert (first.status, first.failure) == (RequestStatus.FAILED, WHY)
    assert audited(estate, request_id, AuditEventType.GRANT_COMPENSATED) == 1
    assert audited(estate, request_id, AuditEventType.REQUEST_FAILED) == 1
    assert grant_policies(estate) == {}
    sweep_then_check(estate, move_clock(monkeypatch, 11))


def test_given_a_revoke_failure_recorded_by_a_run_that_timed_out_when_recorded_again_then_one_record(
    estate: Estate, orders: Any
) -> None:
    # Given a live grant whose revoke step failed, and a RecordRevokeFailed run that wrote its record
    request_id = allowed_request(estate)
    issue_grant(request_id, estate.deps)
    record_outcome(request_id, "REVOKE_FAILED", WHY, estate.deps)

    # When the step runs again
    record_outcome(request_id, "REVOKE_FAILED", WHY, estate.deps)

    # Then one REVOKE_FAILED record, and the grant is still indexed for the sweeper
    assert audited(estate, request_id, AuditEventType.REVOKE_FAILED) == 1
    assert estate.deps.grants.get(request_id).status == RequestStatus.ACTIVE


class RecordingChannel:
    """An approval channel that keeps what it posted and showed (a stand-in for Slack)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.shown: list[str] = []

    def ask(self, request: AccessRequest, approval: Approval) -> list[MessageRef]:
        self.asked.append(request.request_id)
        return [MessageRef(channel="C0DBOWNERS", ts=f"1.{len(self.asked):06d}")]

    def show_decision(self, request: AccessRequest, approval: Approval) -> None:
        self.shown.append(approval.status.value)


def with_approvals(estate: Estate) -> Any:
    create_table(estate.session.client("dynamodb"), "ChatOpsTable", "chatops")
    return replace(estate.deps, approvals=ApprovalsStore(estate.session.resource("dynamodb").Table("chatops")))


def test_given_an_approval_step_that_stopped_after_asking_when_run_again_then_asked_once_with_the_new_token(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a request that needs approval, and an approval step that asked and then stopped
    deps = with_approvals(estate)
    request_id = approval_request(estate)
    channel = RecordingChannel()
    audit_write_fails_once(estate, monkeypatch, AuditEventType.APPROVAL_REQUESTED)
    with pytest.raises(RuntimeError):
        open_approval(request_id, "token-1", deps, channel)

    # When the workflow runs it again (each attempt of a .waitForTaskToken task has its own token)
    open_approval(request_id, "token-2", deps, channel)
    open_approval(request_id, "token-3", deps, channel)

    # Then the approvers were asked once, the latest token is the one a click resumes, one record
    approval, token = deps.approvals.get(request_id)
    assert channel.asked == [request_id]
    assert (token, len(approval.messages)) == ("token-3", 1)
    assert audited(estate, request_id, AuditEventType.APPROVAL_REQUESTED) == 1


def test_given_an_expiry_recorded_by_a_run_that_stopped_when_recorded_again_then_one_record_and_shown_as_expired(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an approval that timed out, and a RecordExpired run that stopped before its audit record
    deps = with_approvals(estate)
    request_id = approval_request(estate)
    channel = RecordingChannel()
    open_approval(request_id, "token-1", deps, channel)
    audit_write_fails_once(estate, monkeypatch, AuditEventType.REQUEST_EXPIRED)
    with pytest.raises(RuntimeError):
        record_outcome(request_id, "EXPIRED", None, deps, channel)

    # When the step runs again (twice)
    record_outcome(request_id, "EXPIRED", None, deps, channel)
    record_outcome(request_id, "EXPIRED", None, deps, channel)

    # Then the request and approval are EXPIRED, the approvers see it, and it is audited once
    assert estate.deps.grants.get(request_id).status == RequestStatus.EXPIRED
    assert deps.approvals.get(request_id)[0].status.value == "EXPIRED"
    assert channel.shown and set(channel.shown) == {"EXPIRED"}
    assert audited(estate, request_id, AuditEventType.REQUEST_EXPIRED) == 1
