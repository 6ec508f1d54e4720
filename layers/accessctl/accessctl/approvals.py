"""Approvals: the workflow waits (``.waitForTaskToken``) until enough distinct approvers agree.

The task token is stored server-side beside the approval, keyed by request id; nothing a chat
payload says is trusted beyond which request was clicked. Every change is a conditional write
on the approval's status, so a second click, a click racing the timeout, or a retried step can
never resume the workflow twice or grant twice:

- ``PENDING`` -> ``APPROVED`` once ``approvals_required`` distinct approvers approved;
- ``PENDING`` -> ``DENIED`` on the first deny;
- ``PENDING``/``APPROVED`` -> ``EXPIRED`` when the workflow's wait timed out (the workflow is the
  authority: if it timed out, it never received the approval, and nothing is granted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from boto3.dynamodb.conditions import Attr, ConditionBase
from botocore.exceptions import ClientError

from accessctl.aws import call, error_code, transient_errors_surface
from accessctl.errors import ConflictError, NotFoundError
from accessctl.models import (
    AccessRequest,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    AuditEventType,
    MessageRef,
    Outcome,
    RequestStatus,
    to_iso,
    utc_now,
)
from accessctl.observability import correlate, logger, metrics
from accessctl.store import update_expression

APPROVAL_PREFIX = "approval#"
# Approval items outlive their request by a while (for "already decided" answers), then DynamoDB
# removes them; the audit trail keeps the history.
APPROVAL_ITEM_DAYS = 30
DEFAULT_TIMEOUT_SECONDS = 3600


class ApprovalChannel(Protocol):
    """Where approvers are asked (Slack, ...): post the question, later show the decision."""

    def ask(self, request: AccessRequest, approval: Approval) -> list[MessageRef]: ...

    def show_decision(self, request: AccessRequest, approval: Approval) -> None: ...


class ApprovalsStore:
    """Approvals and their task tokens in the chat-ops table (key ``pk``)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def open(self, approval: Approval, task_token: str) -> Approval:
        """Record a new approval, or hand a retried step's new token to the one already pending."""
        item = {
            "pk": APPROVAL_PREFIX + approval.request_id,
            **approval.model_dump(mode="json"),
            "task_token": task_token,
            "voters": [],
            "expires_at_epoch": int((utc_now() + timedelta(days=APPROVAL_ITEM_DAYS)).timestamp()),
        }
        try:
            with transient_errors_surface():
                self._table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())
            return approval
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
        # The step ran before (a retry, or a redelivery): keep its votes, take the new token.
        self._update(
            approval.request_id, {"task_token": task_token}, expected=(ApprovalStatus.PENDING,), what="re-open"
        )
        return self.get(approval.request_id)[0]

    def get(self, request_id: str) -> tuple[Approval, str]:
        with transient_errors_surface():
            item = self._table.get_item(Key={"pk": APPROVAL_PREFIX + request_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise NotFoundError(f"no approval is pending for request {request_id}")
        return _approval_of(item), str(item["task_token"])

    def find(self, request_id: str) -> Approval | None:
        """The approval of a request, if it ever needed one (without its token)."""
        try:
            return self.get(request_id)[0]
        except NotFoundError:
            return None

    def add_vote(self, request_id: str, vote: ApprovalVote) -> Approval | None:
        """Count one approver once, while pending. ``None``: not counted (re-read to say why)."""
        try:
            with transient_errors_surface():
                answer = self._table.update_item(
                    Key={"pk": APPROVAL_PREFIX + request_id},
                    UpdateExpression="SET votes = list_append(votes, :vote), voters = list_append(voters, :voter)",
                    ConditionExpression=Attr("status").eq(ApprovalStatus.PENDING.value)
                    & ~Attr("voters").contains(vote.approver),
                    ExpressionAttributeValues={":vote": [vote.model_dump(mode="json")], ":voter": [vote.approver]},
                    ReturnValues="ALL_NEW",
                )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise
        return _approval_of(answer["Attributes"])

    def decide(
        self,
        request_id: str,
        status: ApprovalStatus,
        decided_by: list[str],
        *,
        expected: tuple[ApprovalStatus, ...] = (ApprovalStatus.PENDING,),
    ) -> bool:
        """Move to a final status if still in an expected one; False if someone got there first."""
        values = {"status": status.value, "decided_at": to_iso(utc_now()), "decided_by": decided_by}
        try:
            self._update(request_id, values, expected=expected, what="decide")
        except ConflictError:
            return False
        return True

    def set_messages(self, request_id: str, messages: list[MessageRef]) -> None:
        self._update(request_id, {"messages": [ref.model_dump(mode="json") for ref in messages]}, expected=None)

    def _update(
        self, request_id: str, values: dict[str, Any], *, expected: tuple[ApprovalStatus, ...] | None, what: str = ""
    ) -> None:
        update, names, placeholders = update_expression(values)
        condition: ConditionBase = Attr("pk").exists()
        if expected is not None:
            condition = condition & Attr("status").is_in([status.value for status in expected])
        try:
            with transient_errors_surface():
                self._table.update_item(
                    Key={"pk": APPROVAL_PREFIX + request_id},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=placeholders,
                )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise ConflictError(f"approval of {request_id}: cannot {what} in its current state") from error
            raise


def _approval_of(item: dict[str, Any]) -> Approval:
    fields = {key: value for key, value in item.items() if key in Approval.model_fields}
    fields["approvals_required"] = int(fields["approvals_required"])
    return Approval.model_validate(fields)


# ------------------------------------------------------------------ use cases


@dataclass(frozen=True)
class Approver:
    """Who clicked, as established server-side (verified identity and directory groups)."""

    identity: str
    groups: frozenset[str]
    via: str  # "slack:T0001/U0002", or the signing principal's ARN


class VoteOutcome(StrEnum):
    COUNTED = "COUNTED"  # counted; more approvals are needed
    APPROVED = "APPROVED"  # this vote completed the approval; the workflow resumes
    DENIED = "DENIED"  # this vote denied the request; the workflow resumes and ends it
    ALREADY_DECIDED = "ALREADY_DECIDED"
    ALREADY_VOTED = "ALREADY_VOTED"
    SELF_APPROVAL = "SELF_APPROVAL"
    NOT_AN_APPROVER = "NOT_AN_APPROVER"
    EXPIRED = "EXPIRED"


REFUSALS = frozenset(
    {
        VoteOutcome.ALREADY_DECIDED,
        VoteOutcome.ALREADY_VOTED,
        VoteOutcome.SELF_APPROVAL,
        VoteOutcome.NOT_AN_APPROVER,
        VoteOutcome.EXPIRED,
    }
)


@dataclass(frozen=True)
class VoteResult:
    outcome: VoteOutcome
    message: str  # for the person who clicked
    approval: Approval | None = None


class ApprovalDeps(Protocol):
    """What the approval use cases need (a subset of :class:`accessctl.dependencies.Dependencies`)."""

    @property
    def grants(self) -> Any: ...

    @property
    def audit(self) -> Any: ...

    @property
    def sfn(self) -> Any: ...

    @property
    def approvals(self) -> ApprovalsStore | None: ...


def _store(deps: ApprovalDeps) -> ApprovalsStore:
    if deps.approvals is None:
        raise NotFoundError("approvals are not configured in this deployment")
    return deps.approvals


def open_approval(request_id: str, task_token: str, deps: ApprovalDeps, channel: ApprovalChannel | None) -> Approval:
    """The workflow's approval step: store the token, ask the approver group, and wait.

    The deadline shown to approvers is the workflow's own timeout (the decision's
    ``approval_timeout_seconds``), counted from now: the wait started a moment ago.
    """
    request: AccessRequest = deps.grants.get(request_id)
    decision = request.decision
    if decision is None or decision.outcome != Outcome.NEEDS_APPROVAL or not decision.approver_group:
        raise ConflictError(f"request {request_id} does not need approval")
    now = utc_now()
    approval = _store(deps).open(
        Approval(
            request_id=request_id,
            approver_group=decision.approver_group,
            approvals_required=max(1, decision.approvals_required),
            requester=request.requested_by,
            requested_at=to_iso(now),
            deadline=to_iso(now + timedelta(seconds=decision.approval_timeout_seconds or DEFAULT_TIMEOUT_SECONDS)),
        ),
        task_token,
    )
    if channel is not None and not approval.messages:
        refs = channel.ask(request, approval)
        _store(deps).set_messages(request_id, refs)
        approval = approval.model_copy(update={"messages": refs})
    if deps.audit.recorded(request_id, AuditEventType.APPROVAL_REQUESTED):
        return approval  # a retried step (with a new token): asked and recorded by the earlier run
    deps.audit.append(
        AuditEventType.APPROVAL_REQUESTED,
        subject=request_id,
        actor="workflow",
        request=request,
        outcome="PENDING",
        reason=f"{approval.approvals_required} approval(s) from {approval.approver_group} needed",
        details={
            "approver_group": approval.approver_group,
            "approvals_required": approval.approvals_required,
            "deadline": approval.deadline,
            "messages": [ref.model_dump() for ref in approval.messages],
        },
    )
    metrics.add_metric(name="ApprovalsRequested", unit="Count", value=1)
    return approval


def cast_vote(
    request_id: str,
    approver: Approver,
    decision: str,
    deps: ApprovalDeps,
    channel: ApprovalChannel | None,
) -> VoteResult:
    """One approver's click. Refusals change nothing but the audit trail."""
    correlate(request_id)
    store = _store(deps)
    try:
        approval, token = store.get(request_id)
    except NotFoundError:
        return VoteResult(VoteOutcome.ALREADY_DECIDED, f"request {request_id} is not waiting for approval")
    request: AccessRequest = deps.grants.get(request_id)
    vote, counted, refusal, audit_vote = _take_vote(store, approval, approver, decision, deps)
    if refusal is not None:
        _audit_refusal(request, approver, refusal, deps)
        return refusal
    assert vote is not None and counted is not None
    if audit_vote:
        _audit_vote(request, vote, counted, deps)
    if vote.decision == "DENY":
        return _finish(request, counted, token, ApprovalStatus.DENIED, [approver.identity], deps, channel)
    if len(counted.approvers) >= counted.approvals_required:
        return _finish(request, counted, token, ApprovalStatus.APPROVED, counted.approvers, deps, channel)
    still = counted.approvals_required - len(counted.approvers)
    if channel is not None:
        channel.show_decision(request, counted)
    return VoteResult(
        VoteOutcome.COUNTED, f"approval counted; {still} more needed from {counted.approver_group}", counted
    )


def _take_vote(
    store: ApprovalsStore, approval: Approval, approver: Approver, decision: str, deps: ApprovalDeps
) -> tuple[ApprovalVote | None, Approval | None, VoteResult | None, bool]:
    """(vote, the approval counting it, None, whether to audit it), or (None, None, why it is refused, False).

    An approver clicking again after a click that counted the vote and stopped before auditing it or
    deciding gets that vote finished, not refused."""
    refusal = _refusal(approval, approver)
    if refusal is not None and refusal.outcome == VoteOutcome.ALREADY_VOTED:
        unfinished = _unfinished_vote(approval, approver, deps)
        if unfinished is not None:
            return unfinished[0], approval, None, unfinished[1]
    if refusal is not None:
        return None, None, refusal, False
    vote = ApprovalVote(
        approver=approver.identity,
        decision="APPROVE" if decision == "APPROVE" else "DENY",
        at=to_iso(utc_now()),
        via=approver.via,
    )
    counted = store.add_vote(approval.request_id, vote)
    if counted is None:
        approval, _ = store.get(approval.request_id)
        refusal = _refusal(approval, approver) or VoteResult(
            VoteOutcome.ALREADY_DECIDED, "this request was already decided", approval
        )
        return None, None, refusal, False
    return vote, counted, None, True


def _unfinished_vote(approval: Approval, approver: Approver, deps: ApprovalDeps) -> tuple[ApprovalVote, bool] | None:
    """The approver's counted vote on a still-pending approval, if an earlier click stopped before
    finishing it: its audit record missing (``True``: write it), or the decision it completes not made."""
    if approval.status != ApprovalStatus.PENDING:
        return None
    vote = next((vote for vote in approval.votes if vote.approver == approver.identity), None)
    if vote is None:
        return None
    audited = any(
        event.event_type == AuditEventType.APPROVAL_VOTE and event.actor == approver.identity
        for event in deps.audit.for_subject(approval.request_id)
    )
    decides = vote.decision == "DENY" or len(approval.approvers) >= approval.approvals_required
    return (vote, not audited) if not audited or decides else None


def _refusal(approval: Approval, approver: Approver) -> VoteResult | None:
    if approval.status != ApprovalStatus.PENDING:
        word = approval.status.value.lower()
        return VoteResult(VoteOutcome.ALREADY_DECIDED, f"already decided: this request was {word}", approval)
    if approval.deadline <= to_iso(utc_now()):
        return VoteResult(VoteOutcome.EXPIRED, "this approval has expired; the requester must ask again", approval)
    if approver.identity == approval.requester:
        return VoteResult(VoteOutcome.SELF_APPROVAL, "you cannot approve or deny your own request", approval)
    if approval.approver_group not in approver.groups:
        return VoteResult(
            VoteOutcome.NOT_AN_APPROVER, f"only members of {approval.approver_group} can decide this request", approval
        )
    if approver.identity in {vote.approver for vote in approval.votes}:
        return VoteResult(VoteOutcome.ALREADY_VOTED, "you already approved this request", approval)
    return None


def _finish(
    request: AccessRequest,
    approval: Approval,
    token: str,
    status: ApprovalStatus,
    decided_by: list[str],
    deps: ApprovalDeps,
    channel: ApprovalChannel | None,
) -> VoteResult:
    store = _store(deps)
    if not store.decide(request.request_id, status, decided_by):
        approval, _ = store.get(request.request_id)
        return VoteResult(VoteOutcome.ALREADY_DECIDED, "already decided by someone else", approval)
    approved = status == ApprovalStatus.APPROVED
    if approved:
        deps.grants.record_status(request.request_id, RequestStatus.APPROVED)
    output = {"approved": approved, "decided_by": decided_by}
    try:
        call(deps.sfn.send_task_success, taskToken=token, output=json.dumps(output))
    except ClientError as error:
        if error_code(error) not in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            raise
        # The workflow stopped waiting first: it ends the request as expired, never granted.
        store.decide(request.request_id, ApprovalStatus.EXPIRED, [], expected=(status,))
        logger.warning("approval arrived after the workflow stopped waiting", extra={"request_id": request.request_id})
        return VoteResult(VoteOutcome.EXPIRED, "this approval has expired; the requester must ask again")
    decided, _ = store.get(request.request_id)
    if channel is not None:
        channel.show_decision(request, decided)
    metrics.add_metric(name="ApprovalsGranted" if approved else "ApprovalsDenied", unit="Count", value=1)
    words = " and ".join(decided_by)
    return VoteResult(
        VoteOutcome.APPROVED if approved else VoteOutcome.DENIED,
        f"request {'approved' if approved else 'denied'} by {words}",
        decided,
    )


def expire_approval(request_id: str, deps: ApprovalDeps, channel: ApprovalChannel | None) -> None:
    """The workflow's wait timed out: nothing is granted; everyone who saw the question is told."""
    store = _store(deps)
    store.decide(request_id, ApprovalStatus.EXPIRED, [], expected=(ApprovalStatus.PENDING, ApprovalStatus.APPROVED))
    approval = store.find(request_id)  # None: the approval step failed before storing anything
    request: AccessRequest = deps.grants.get(request_id)
    deps.grants.record_status(request_id, RequestStatus.EXPIRED)
    if not deps.audit.recorded(request_id, AuditEventType.REQUEST_EXPIRED):  # once, also when the step is retried
        deps.audit.append(
            AuditEventType.REQUEST_EXPIRED,
            subject=request_id,
            actor="workflow",
            request=request,
            outcome="EXPIRED",
            reason="the required approvals did not arrive before the deadline; nothing was granted",
            details={"approvals": [vote.model_dump() for vote in approval.votes] if approval else []},
        )
        metrics.add_metric(name="ApprovalsExpired", unit="Count", value=1)
    # Showing the outcome edits the messages in place: done again on a retry, in case that is what failed.
    if channel is not None and approval is not None and approval.status == ApprovalStatus.EXPIRED:
        channel.show_decision(request, approval)


def _audit_vote(request: AccessRequest, vote: ApprovalVote, approval: Approval, deps: ApprovalDeps) -> None:
    deps.audit.append(
        AuditEventType.APPROVAL_VOTE,
        subject=request.request_id,
        actor=vote.approver,
        request=request,
        outcome=vote.decision,
        reason=f"{vote.approver} {'approved' if vote.decision == 'APPROVE' else 'denied'} via {vote.via}",
        details={
            "via": vote.via,
            "approvers": approval.approvers,
            "approvals_required": approval.approvals_required,
        },
    )


def _audit_refusal(request: AccessRequest, approver: Approver, refusal: VoteResult, deps: ApprovalDeps) -> None:
    deps.audit.append(
        AuditEventType.APPROVAL_REFUSED,
        subject=request.request_id,
        actor=approver.identity,
        request=request,
        outcome=refusal.outcome.value,
        reason=refusal.message,
        details={"via": approver.via},
    )
    metrics.add_metric(name="ApprovalsRefused", unit="Count", value=1)
