"""Approvals: the workflow waits (``.waitForTaskToken``) until enough distinct approvers agree.

The task token is stored server-side beside the approval, keyed by request id; nothing a chat
payload says is trusted beyond which request was clicked. Every change is a conditional write
on the approval's status, so a second click, a click racing the timeout, or a retried step can
never resume the workflow twice or grant twice:

- ``PENDING`` -> ``APPROVED`` once ``approvals_required`` distinct approvers approved, before the
  deadline (the condition is part of the write);
- ``PENDING`` -> ``DENIED`` on the first deny, before the deadline;
- ``PENDING`` -> ``EXPIRED`` when the workflow's wait timed out with no decision recorded.

A decision is then delivered: ``SendTaskSuccess`` with the stored token resumes the workflow, and
``delivered_at`` records that it was accepted. A delivery that failed (throttled, the network, the
function stopped right after the store write) is sent again by the retried worker invocation or by
any later click on the approval; repeating it is harmless (a task already closed answers
``TaskTimedOut``, which changes nothing). The backstop is the workflow's own timeout: its
``CheckApprovalAtTimeout`` step reads the store, and an approval decided before the deadline but
never delivered is acted on then (granted, or denied), audited as ``APPROVAL_APPLIED_AT_TIMEOUT``.
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
    ApprovalAnswer,
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
# What SendTaskSuccess answers when the task no longer waits on the token: it timed out, or it was
# already closed (an earlier SendTaskSuccess of the same decision was accepted).
TASK_CLOSED_ERRORS = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")


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
        """Move to a final status if still in an expected one; False if someone got there first.

        An approval or a deny is recorded only before the deadline: a decision in the store is
        always one made in time, which the workflow's timeout step relies on."""
        now = to_iso(utc_now())
        values = {"status": status.value, "decided_at": now, "decided_by": decided_by}
        in_time = Attr("deadline").gt(now) if status in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED) else None
        try:
            self._update(request_id, values, expected=expected, what="decide", condition=in_time)
        except ConflictError:
            return False
        return True

    def mark_delivered(self, request_id: str, via: str) -> bool:
        """The decision reached the workflow (``via``: "task_token" or "timeout"). False: already marked."""
        try:
            self._update(
                request_id,
                {"delivered_at": to_iso(utc_now()), "delivered_via": via},
                expected=(ApprovalStatus.APPROVED, ApprovalStatus.DENIED),
                what="mark delivered",
                # Approvals stored before this field existed lack it; newer ones hold null until delivered.
                condition=Attr("delivered_at").not_exists() | Attr("delivered_at").attribute_type("NULL"),
            )
        except ConflictError:
            return False
        return True

    def set_messages(self, request_id: str, messages: list[MessageRef]) -> None:
        self._update(request_id, {"messages": [ref.model_dump(mode="json") for ref in messages]}, expected=None)

    def _update(
        self,
        request_id: str,
        values: dict[str, Any],
        *,
        expected: tuple[ApprovalStatus, ...] | None,
        what: str = "",
        condition: ConditionBase | None = None,
    ) -> None:
        update, names, placeholders = update_expression(values)
        required: ConditionBase = Attr("pk").exists()
        if expected is not None:
            required = required & Attr("status").is_in([status.value for status in expected])
        if condition is not None:
            required = required & condition
        try:
            with transient_errors_surface():
                self._table.update_item(
                    Key={"pk": APPROVAL_PREFIX + request_id},
                    UpdateExpression=update,
                    ConditionExpression=required,
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
    if approval.decided and approval.delivered_at is None:
        # Decided, but the workflow may not have the decision (the click that made it failed after
        # the store write): deliver it now, whoever clicked. The decider's own click again (a retried
        # invocation of the worker, or a second click) gets the decision's answer, not a refusal.
        delivered = _deliver(request, approval, token, deps, channel)
        if approver.identity in approval.decided_by:
            return delivered
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
        if approval.status == ApprovalStatus.PENDING:  # the deadline passed while this vote was counted
            return VoteResult(VoteOutcome.EXPIRED, "this approval has expired; the requester must ask again", approval)
        return VoteResult(VoteOutcome.ALREADY_DECIDED, "already decided by someone else", approval)
    decided, _ = store.get(request.request_id)
    return _deliver(request, decided, token, deps, channel)


def _deliver(
    request: AccessRequest, approval: Approval, token: str, deps: ApprovalDeps, channel: ApprovalChannel | None
) -> VoteResult:
    """Resume the workflow with a decision recorded in the store; safe to repeat.

    A throttled or unreachable Step Functions raises (TransientError): the worker's invocation
    fails and is retried, and every later click delivers again. A token the workflow no longer
    waits on (its wait timed out, or an earlier send was accepted) changes nothing: the workflow
    either has the decision or acts on it at its timeout, since it was made before the deadline.
    """
    approved = approval.status == ApprovalStatus.APPROVED
    if approved:
        deps.grants.record_approved(request.request_id)  # before the workflow resumes: IssueGrant requires it
    output = {"approved": approved, "decided_by": approval.decided_by}
    try:
        call(deps.sfn.send_task_success, taskToken=token, output=json.dumps(output))
    except ClientError as error:
        if error_code(error) not in TASK_CLOSED_ERRORS:
            raise
        logger.warning(
            "the workflow no longer waits for this approval; it acts on the decision at its timeout",
            extra={"request_id": request.request_id, "error": error_code(error)},
        )
    else:
        acknowledge_delivery(request.request_id, "task_token", deps)
    decided, _ = _store(deps).get(request.request_id)
    if channel is not None:
        channel.show_decision(request, decided)
    words = " and ".join(approval.decided_by)
    return VoteResult(
        VoteOutcome.APPROVED if approved else VoteOutcome.DENIED,
        f"request {'approved' if approved else 'denied'} by {words}",
        decided,
    )


def acknowledge_delivery(request_id: str, via: str, deps: ApprovalDeps) -> None:
    """Record that the workflow has the decision (once; counted in ``ApprovalsGranted``/``ApprovalsDenied``).

    Called where delivery is certain: SendTaskSuccess accepted, the workflow's timeout step acting
    on the decision, or the workflow's next step running (an accepted send whose record was lost)."""
    store = _store(deps)
    if store.mark_delivered(request_id, via):
        approval = store.find(request_id)
        approved = approval is not None and approval.status == ApprovalStatus.APPROVED
        metrics.add_metric(name="ApprovalsGranted" if approved else "ApprovalsDenied", unit="Count", value=1)


def expire_approval(request_id: str, deps: ApprovalDeps, channel: ApprovalChannel | None) -> None:
    """The end of an approval wait that timed out, for executions started before the timeout step
    read the store (their ``RecordExpired`` step): nothing is granted, even if it was decided."""
    store = _store(deps)
    store.decide(request_id, ApprovalStatus.EXPIRED, [], expected=(ApprovalStatus.PENDING, ApprovalStatus.APPROVED))
    _record_expiry(request_id, store.find(request_id), deps, channel)


def act_on_timed_out_approval(request_id: str, deps: ApprovalDeps, channel: ApprovalChannel | None) -> ApprovalAnswer:
    """The workflow's wait timed out: what the store says decides how the request ends.

    - no decision (still pending, or the approval step never stored one): EXPIRED, nothing granted;
    - APPROVED before the deadline but never delivered: the workflow goes on to IssueGrant, which
      checks the approval and the role again as it does for any approval;
    - DENIED before the deadline but never delivered: the request ends DENIED.

    A decided approval is audited once as ``APPROVAL_APPLIED_AT_TIMEOUT`` (who decided, when, and
    that the workflow acted on it at its timeout). Safe to run again.
    """
    store = _store(deps)
    store.decide(request_id, ApprovalStatus.EXPIRED, [], expected=(ApprovalStatus.PENDING,))
    approval = store.find(request_id)  # None: the approval step failed before storing anything
    if approval is None or not approval.decided:
        _record_expiry(request_id, approval, deps, channel)
        return ApprovalAnswer(status=ApprovalStatus.EXPIRED, approved=False, decided_by=[])
    approved = approval.status == ApprovalStatus.APPROVED
    if approved:
        deps.grants.record_approved(request_id)
    acknowledge_delivery(request_id, "timeout", deps)
    if not deps.audit.recorded(request_id, AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT):
        words = " and ".join(approval.decided_by)
        deps.audit.append(
            AuditEventType.APPROVAL_APPLIED_AT_TIMEOUT,
            subject=request_id,
            actor="workflow",
            request=deps.grants.get(request_id),
            outcome=approval.status.value,
            reason=(
                f"{'approved' if approved else 'denied'} by {words} at {approval.decided_at}, before the deadline "
                f"{approval.deadline}; the decision did not reach the workflow, which acted on it when its wait "
                "timed out"
            ),
            details={
                "decided_by": approval.decided_by,
                "decided_at": approval.decided_at,
                "deadline": approval.deadline,
                "approvals": [vote.model_dump() for vote in approval.votes],
            },
        )
        metrics.add_metric(name="ApprovalsAppliedAtTimeout", unit="Count", value=1)
    logger.warning(
        "approval decided before the deadline but not delivered; acted on at the workflow's timeout",
        extra={"request_id": request_id, "status": approval.status.value},
    )
    return ApprovalAnswer(status=approval.status, approved=approved, decided_by=approval.decided_by)


def _record_expiry(
    request_id: str, approval: Approval | None, deps: ApprovalDeps, channel: ApprovalChannel | None
) -> None:
    """Nothing is granted; everyone who saw the question is told."""
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
