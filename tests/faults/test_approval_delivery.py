"""A decided approval reaches the workflow: a resume (SendTaskSuccess) that failed after the store
recorded the decision is sent again by the retried worker or a later click, and the workflow's
timeout step acts on a decision made before the deadline instead of ending the request EXPIRED.

Step Functions is the emulator's, wrapped twice: ``ResumingSfn`` accepts the task token as a
workflow waiting on it would (the emulated account runs no execution here), and ``FaultyClient``
makes it fail on cue first. The workflow's side is the real step functions, called as the ASL
calls them (``record_outcome(..., "APPROVAL_TIMED_OUT")``, then ``issue_grant``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from accessctl.approvals import ApprovalsStore, Approver, VoteOutcome, cast_vote, open_approval
from accessctl.errors import ForbiddenError, TransientError
from accessctl.grants import issue_grant, record_outcome
from accessctl.models import ApprovalStatus, AuditEventType, RequestStatus, utc_now
from accessctl.observability import metrics
from tests.audit.test_audit_paths import ResumingSfn
from tests.conftest import Estate
from tests.faults.support import FaultyClient, approval_request, audit_write_fails_once, grant_policies, throttled
from tests.faults.test_retried_steps import RecordingChannel, audited
from tests.support.template import create_table

BOB = Approver(identity="bob@example.com", groups=frozenset({"db-owners"}), via="slack:T0001/U0BOB")
DAVE = Approver(identity="dave@example.com", groups=frozenset({"db-owners"}), via="slack:T0001/U0DAVE")


def task_timed_out() -> ClientError:
    """What Step Functions answers for a token whose task timed out or was already closed."""
    return ClientError(
        {"Error": {"Code": "TaskTimedOut", "Message": "Task Timed Out"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "SendTaskSuccess",
    )


def waiting_for_approval(estate: Estate, *faults: BaseException) -> tuple[str, Any, ResumingSfn]:
    """A request that needs one db-owners approval, its approval step run (token ``token-1``), and
    Step Functions that raises ``faults`` on the first SendTaskSuccess calls, then accepts."""
    create_table(estate.session.client("dynamodb"), "ChatOpsTable", "chatops")
    sfn = ResumingSfn(estate.deps.sfn)
    table = estate.session.resource("dynamodb").Table("chatops")
    deps = replace(estate.deps, approvals=ApprovalsStore(table), sfn=FaultyClient(sfn, send_task_success=list(faults)))
    request_id = approval_request(estate)
    record_outcome(request_id, "NEEDS_APPROVAL", None, deps)
    open_approval(request_id, "token-1", deps, None)
    return request_id, deps, sfn


def accepted(sfn: ResumingSfn) -> list[dict[str, Any]]:
    """The SendTaskSuccess calls the waiting workflow accepted (not the ones that failed first)."""
    return list(sfn.resumed)


@pytest.fixture
def emitted() -> Any:
    metrics.clear_metrics()
    yield metrics.metric_set
    metrics.clear_metrics()


def test_given_an_approval_whose_resume_was_throttled_when_the_worker_runs_again_then_it_is_delivered_once(
    estate: Estate, orders: Any, emitted: dict[str, Any]
) -> None:
    # Given bob's approval recorded, and Step Functions throttling its resume past the SDK's retries
    request_id, deps, sfn = waiting_for_approval(estate, throttled("SendTaskSuccess"))
    channel = RecordingChannel()
    with pytest.raises(TransientError):
        cast_vote(request_id, BOB, "APPROVE", deps, channel)
    approval, _ = deps.approvals.get(request_id)
    assert (approval.status, approval.delivered_at) == (ApprovalStatus.APPROVED, None)

    # When Lambda runs the worker again with the same click, and bob then clicks once more
    again = cast_vote(request_id, BOB, "APPROVE", deps, channel)
    later = cast_vote(request_id, BOB, "APPROVE", deps, channel)

    # Then the workflow got the decision once, with the approver, and the store says it was delivered
    assert again.outcome == VoteOutcome.APPROVED and "bob@example.com" in again.message
    assert [call["taskToken"] for call in accepted(sfn)] == ["token-1"]
    approval, _ = deps.approvals.get(request_id)
    assert approval.delivered_via == "task_token" and approval.delivered_at is not None
    assert deps.grants.get(request_id).status == RequestStatus.APPROVED
    # And bob's vote is on the trail once; only the click after delivery is a refusal (already decided)
    assert audited(estate, request_id, AuditEventType.APPROVAL_VOTE) == 1
    assert later.outcome == VoteOutcome.ALREADY_DECIDED
    assert audited(estate, request_id, AuditEventType.APPROVAL_REFUSED) == 1
    assert emitted["ApprovalsGranted"]["Value"] == [1.0]

    # And the workflow, resumed, grants it
    issue_grant(request_id, deps)
    assert deps.grants.get(request_id).status == RequestStatus.ACTIVE


def test_given_a_decided_undelivered_approval_when_another_approver_clicks_then_it_is_delivered_and_the_click_refused(
    estate: Estate, orders: Any
) -> None:
    # Given bob's approval recorded, its resume failed (the network) and the worker never retried
    request_id, deps, sfn = waiting_for_approval(estate, throttled("SendTaskSuccess"))
    with pytest.raises(TransientError):
        cast_vote(request_id, BOB, "APPROVE", deps, None)

    # When dave clicks approve on the same message
    result = cast_vote(request_id, DAVE, "APPROVE", deps, None)

    # Then bob's decision is delivered, dave's click is refused as already decided and counts nothing
    assert [call["taskToken"] for call in accepted(sfn)] == ["token-1"]
    assert result.outcome == VoteOutcome.ALREADY_DECIDED
    approval, _ = deps.approvals.get(request_id)
    assert approval.decided_by == ["bob@example.com"] and approval.delivered_via == "task_token"
    assert audited(estate, request_id, AuditEventType.APPROVAL_VOTE) == 1


def test_given_an_approval_the_workflow_stopped_waiting_for_when_resent_then_nothing_changes_until_the_timeout_step(
    estate: Estate, orders: Any
) -> None:
    # Given bob's approval recorded and a workflow whose wait already timed out (the token is closed)
    request_id, deps, sfn = waiting_for_approval(estate, task_timed_out(), task_timed_out())

    # When bob's click resumes, and his retried click resumes again
    first = cast_vote(request_id, BOB, "APPROVE", deps, None)
    second = cast_vote(request_id, BOB, "APPROVE", deps, None)

    # Then the approval stays APPROVED and undelivered (not EXPIRED): the timeout step acts on it
    assert first.outcome == second.outcome == VoteOutcome.APPROVED
    approval, _ = deps.approvals.get(request_id)
    assert (approval.status, approval.delivered_at) == (ApprovalStatus.APPROVED, None)
    assert accepted(sfn) == []


def test_given_an_approval_never_delivered_when_the_wait_times_out_then_the_workflow_grants_it_audited_once(
    estate: Estate, orders: Any, emitted: dict[str, Any]
) -> None:
    # Given bob approved in time and every resume failed
    request_id, deps, sfn = waiting_for_approval(estate, *[throttled("SendTaskSuccess")] * 3)
    for _ in range(3):
        with pytest.raises(TransientError):
            cast_vote(request_id, BOB, "APPROVE", deps, None)

    # When the workflow's wait times out and its timeout step runs (and is run again)
    channel = RecordingChannel()
    answer = record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, channel)
    again = record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, channel)

    # Then it answers approved (the ASL routes to IssueGrant), and the grant is made
    assert answer is not None and again == answer
    assert (answer.status, answer.approved, answer.decided_by) == (ApprovalStatus.APPROVED, True, [BOB.identity])
    issue_grant(request_id, deps)
    assert deps.grants.get(request_id).status == RequestStatus.ACTIVE
    assert len(grant_policies(estate)) == 1
    # And the trail says who approved, when, and that it was acted on at the timeout, once; not expired
    (applied,) = [
        e
        for e in estate.deps.audit.for_subject(request_id)
        if e.event_type == AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT
    ]
    assert applied.outcome == "APPROVED" and applied.details["decided_by"] == [BOB.identity]
    assert applied.details["decided_at"] < applied.details["deadline"]
    assert "timed out" in (applied.reason or "")
    assert audited(estate, request_id, AuditEventType.REQUEST_EXPIRED) == 0
    (issued,) = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_ISSUED]
    assert issued.details["approved_by"] == [BOB.identity]
    approval, _ = deps.approvals.get(request_id)
    assert approval.delivered_via == "timeout" and accepted(sfn) == []
    assert emitted["ApprovalsAppliedAtTimeout"]["Value"] == [1.0]
    assert emitted["ApprovalsGranted"]["Value"] == [1.0]
    assert "ApprovalsExpired" not in emitted


def test_given_a_deny_never_delivered_when_the_wait_times_out_then_the_request_ends_denied(
    estate: Estate, orders: Any
) -> None:
    # Given dave denied in time and the resume failed
    request_id, deps, _ = waiting_for_approval(estate, throttled("SendTaskSuccess"))
    with pytest.raises(TransientError):
        cast_vote(request_id, DAVE, "DENY", deps, None)

    # When the wait times out: the timeout step, then the denied path of the ASL
    answer = record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, RecordingChannel())
    assert answer is not None and (answer.status, answer.approved) == (ApprovalStatus.DENIED, False)
    record_outcome(request_id, "APPROVAL_DENIED", None, deps)

    # Then the request is DENIED by dave (not EXPIRED), audited once as acted on at the timeout, and nothing granted
    request = deps.grants.get(request_id)
    assert request.status == RequestStatus.DENIED and "dave@example.com" in (request.failure or "")
    assert audited(estate, request_id, AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT) == 1
    assert audited(estate, request_id, AuditEventType.REQUEST_EXPIRED) == 0
    with pytest.raises(ForbiddenError):
        issue_grant(request_id, deps)
    assert grant_policies(estate) == {}


def test_given_no_decision_when_the_wait_times_out_then_the_request_expires_and_a_late_click_changes_nothing(
    estate: Estate, orders: Any
) -> None:
    # Given a request nobody decided
    request_id, deps, sfn = waiting_for_approval(estate)
    channel = RecordingChannel()

    # When the wait times out (the step run twice), and bob clicks afterwards
    answer = record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, channel)
    record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, channel)
    late = cast_vote(request_id, BOB, "APPROVE", deps, None)

    # Then it expired as before: nothing granted, nobody resumed, one record, the approvers shown it
    assert answer is not None and (answer.status, answer.approved) == (ApprovalStatus.EXPIRED, False)
    assert deps.grants.get(request_id).status == RequestStatus.EXPIRED
    assert late.outcome == VoteOutcome.ALREADY_DECIDED
    assert accepted(sfn) == []
    assert audited(estate, request_id, AuditEventType.REQUEST_EXPIRED) == 1
    assert audited(estate, request_id, AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT) == 0
    assert set(channel.shown) == {"EXPIRED"}
    with pytest.raises(ForbiddenError):
        issue_grant(request_id, deps)


def test_given_the_deadline_passed_while_a_vote_was_counted_when_it_decides_then_nothing_is_decided(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a request waiting for approval, and bob's click checked just before the deadline
    request_id, deps, sfn = waiting_for_approval(estate)
    past_deadline = utc_now() + timedelta(hours=2)
    original_add_vote = deps.approvals.add_vote

    def counted_then_late(request_id: str, vote: Any) -> Any:
        counted = original_add_vote(request_id, vote)
        monkeypatch.setattr("accessctl.approvals.utc_now", lambda: past_deadline)  # the decision comes too late
        return counted

    monkeypatch.setattr(deps.approvals, "add_vote", counted_then_late)

    # When his vote would decide the request
    result = cast_vote(request_id, BOB, "APPROVE", deps, None)

    # Then the store refuses the decision (a decision in the store is always one made in time)
    assert result.outcome == VoteOutcome.EXPIRED
    assert deps.approvals.get(request_id)[0].status == ApprovalStatus.PENDING
    assert accepted(sfn) == []
    answer = record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, None)
    assert answer is not None and answer.status == ApprovalStatus.EXPIRED


def test_given_a_timeout_step_that_stopped_before_its_audit_record_when_run_again_then_audited_once(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch, emitted: dict[str, Any]
) -> None:
    # Given bob approved in time, the resume failed, and the timeout step stopped before its record
    request_id, deps, _ = waiting_for_approval(estate, throttled("SendTaskSuccess"))
    with pytest.raises(TransientError):
        cast_vote(request_id, BOB, "APPROVE", deps, None)
    audit_write_fails_once(estate, monkeypatch, AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT)
    with pytest.raises(RuntimeError):
        record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, None)

    # When the workflow runs the step again
    answer = record_outcome(request_id, "APPROVAL_TIMED_OUT", None, deps, None)

    # Then it answers approved, with one record and one count of the approval
    assert answer is not None and answer.approved
    assert audited(estate, request_id, AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT) == 1
    assert emitted["ApprovalsGranted"]["Value"] == [1.0]
