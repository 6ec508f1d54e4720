"""Deciding, issuing and revoking grants: the workflow's steps and the sweeper.

Order of effects when issuing (each step is safe to repeat):
1. record the grant (status GRANTING, expiry indexed) - the sweeper can now find it;
2. create the policy (an existing policy of the same name is re-checked and reused);
3. attach it to the requester's role;
4. record ACTIVE and audit.
Revocation detaches the policy from every principal, deletes it, confirms with IAM that it is
gone, and only then records the grant as revoked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from accessctl.access_requests import stop_execution
from accessctl.approvals import ApprovalChannel, acknowledge_delivery, act_on_timed_out_approval, expire_approval
from accessctl.aws import aws_requests, call, error_code
from accessctl.databases import describe_database
from accessctl.decisions import decide_request
from accessctl.dependencies import Dependencies
from accessctl.errors import (
    ConflictError,
    ForbiddenError,
    GrantSlotBusy,
    QuotaExceededError,
    TransientError,
    UnsafeGrantError,
)
from accessctl.grant_policy import (
    build_grant_policy,
    check_grant_policy,
    dbuser_arn,
    grant_expiry,
    grant_policy_problems,
    policy_name_for,
)
from accessctl.id_tokens import oidc_settings
from accessctl.models import (
    AccessRequest,
    ApprovalAnswer,
    ApprovalStatus,
    AuditEventType,
    AwsRequest,
    Decision,
    Grant,
    Outcome,
    RequestStatus,
    RevokeReason,
    to_iso,
    utc_now,
)
from accessctl.notify import Notifier, SnsNotifier
from accessctl.observability import logger, metrics
from accessctl.policy import PolicyEngine
from accessctl.principals import lookup_role
from accessctl.sessions import SessionTermination
from accessctl.store import grant_slot_key

# A grant this close to its expiry is not extended (its revocation may begin before the extension
# is recorded): the request gets a grant of its own. Covers an extension step's read-to-write time and
# clock skew; the extension's write re-checks it.
EXTEND_MARGIN = timedelta(seconds=10)
# How long a request may hold the grant slot while its grant is being made, before it is taken to
# have stopped and the slot is free: from the claim to GRANTING is one database read (a holder left
# there was refused, e.g. at the role's policy quota, or its step died); from GRANTING to ACTIVE, a
# step and its retries (a minute or two).
SLOT_PATIENCE = {
    RequestStatus.PENDING: timedelta(seconds=30),
    RequestStatus.APPROVED: timedelta(seconds=30),
    RequestStatus.GRANTING: timedelta(minutes=5),
}


def evaluate_request(request_id: str, engine: PolicyEngine, deps: Dependencies) -> Decision:
    """Decide a request once. A step run again (an earlier run timed out) answers the decision
    recorded, since deciding again could differ, and writes only the records that run did not."""
    request = deps.grants.get(request_id)
    if request.decision is not None:
        _announce_decision(request, request.decision, deps, retried=True)
        return request.decision
    target = describe_database(
        deps.rds, request.database, region=deps.region, account_id=deps.account_id, partition=deps.partition
    )
    decision = decide_request(
        engine,
        request,
        target,
        iam=deps.iam,
        rds=deps.rds,
        now=utc_now(),
        ceiling_minutes=deps.settings.max_grant_minutes,
        oidc=oidc_settings(deps.settings),
        posture_store=deps.posture,
        max_posture_age=timedelta(hours=deps.settings.posture_max_age_hours),
        slack_workspace_enforces_mfa=deps.settings.slack_workspace_enforces_mfa,
        default_approval_timeout_minutes=deps.settings.approval_timeout_minutes,
    )
    deps.grants.record_decision(request_id, decision)
    _announce_decision(request, decision, deps, retried=False)
    return decision


def _announce_decision(request: AccessRequest, decision: Decision, deps: Dependencies, *, retried: bool) -> None:
    """The decision's audit record (and a break-glass alert); on a retry, only those not yet written."""
    recorded = {event.event_type for event in deps.audit.for_subject(request.request_id)} if retried else set()
    if AuditEventType.REQUEST_DECIDED not in recorded:
        deps.audit.append(
            AuditEventType.REQUEST_DECIDED,
            subject=request.request_id,
            actor="workflow",
            request=request,
            outcome=decision.outcome.value,
            reason=decision.reason,
            details=decision.model_dump(mode="json", exclude={"target", "outcome", "reason", "decided_at"}),
        )
        metrics.add_metric(name=f"Decisions{decision.outcome.value.title().replace('_', '')}", unit="Count", value=1)
    if decision.break_glass and decision.outcome == Outcome.ALLOW and AuditEventType.BREAK_GLASS_USED not in recorded:
        _announce_break_glass(request, decision, deps)


def _announce_break_glass(request: AccessRequest, decision: Decision, deps: Dependencies) -> None:
    """Break-glass is allowed, never quiet: a high-severity notification and audit record.

    The notification first: a step that stopped between the two sends it again on its retry
    (the record is what marks it done), rather than never."""
    if deps.settings.notify_topic_arn:
        SnsNotifier(deps.sns, deps.settings.notify_topic_arn).send("BREAK_GLASS", request, severity="high")
    deps.audit.append(
        AuditEventType.BREAK_GLASS_USED,
        subject=request.request_id,
        actor=request.principal_arn,
        request=request,
        outcome="HIGH",
        reason=decision.reason,
        details={"rule_id": decision.rule_id, "granted_minutes": decision.granted_minutes},
    )
    metrics.add_metric(name="BreakGlassUsed", unit="Count", value=1)
    logger.warning("break-glass access allowed", extra={"request_id": request.request_id, "rule_id": decision.rule_id})


def policy_arn_for(grant_id: str, deps: Dependencies) -> str:
    return f"arn:{deps.partition}:iam::{deps.account_id}:policy{deps.settings.grants_path}{policy_name_for(grant_id)}"


def issue_grant(request_id: str, deps: Dependencies) -> Grant:
    """Create and attach the grant of an allowed request. Safe to call again after any failure."""
    request = deps.grants.get(request_id)
    if request.status == RequestStatus.ACTIVE and request.grant is not None:
        # A retried step: the grant is complete, but its audit write may be what failed.
        _audit_issue_once(request, deps)
        return request.grant
    if request.status == RequestStatus.EXTENDED and request.grant is not None and request.extends is not None:
        # A retried step: this request was served by extending another grant; the audit writes may be what failed.
        _audit_extension_once(request, request.grant, deps)
        return request.grant
    decision = request.decision
    if decision is None or decision.outcome == Outcome.DENY or decision.target is None:
        raise ForbiddenError(f"request {request_id} was not allowed; no grant is issued")
    if decision.outcome == Outcome.NEEDS_APPROVAL:
        _require_approval(request_id, deps)
    if request.status not in (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.GRANTING):
        raise ConflictError(f"request {request_id} is {request.status}; no grant is issued")
    role = lookup_role(deps.iam, request.role_name)
    if not role.is_opted_in(deps.settings.opt_in_tag_key) or role.arn != request.role_arn:
        raise ForbiddenError(f"role {request.role_name} is no longer enabled for accessctl")

    if request.grant is None:
        extendable = _extendable_grants(request, deps)
        if extendable:
            return extend_grant(extendable[0], request, decision, deps)
        holder = _take_grant_slot(request, deps)
        if holder is not None:
            return extend_grant(holder, request, decision, deps)
        _check_role_policy_quota(request.role_name, deps)
    else:
        _still_holding_slot(request, deps)
    grant = request.grant or _new_grant(request, decision, deps)
    document = build_grant_policy(grant.resource_arn, grant.expires_at)
    deps.grants.record_granting(request_id, grant)
    with aws_requests(deps.iam) as iam_calls:  # their CloudTrail request ids go on the audit record
        _create_or_reuse_policy(grant, request, document, deps)
        call(deps.iam.attach_role_policy, RoleName=request.role_name, PolicyArn=grant.policy_arn)
    deps.grants.record_active(request_id)
    _audit_grant_issued(request, grant, deps, iam_calls=iam_calls)
    metrics.add_metric(name="GrantsIssued", unit="Count", value=1)
    metrics.add_metric(name="TimeToGrant", unit="Seconds", value=_seconds_since(request.requested_at))
    logger.info("grant issued", extra={"request_id": request_id, "expires_at": grant.expires_at})
    return grant


def _extendable_grants(request: AccessRequest, deps: Dependencies) -> list[AccessRequest]:
    """The role's live grants on this database user that are not about to be revoked.

    A grant within EXTEND_MARGIN of its expiry (or past it, its revocation not yet recorded) may
    be being revoked right now: extending it would put the new access on a policy that is being
    deleted. Such a request gets a grant of its own; the old one's revocation leaves the db user's
    sessions alone while another grant holds it (accessctl.sessions).
    """
    not_before = to_iso(utc_now() + EXTEND_MARGIN)
    active = deps.grants.active_grants_for(request.role_arn, request.database, request.db_user)
    return [other for other in active if other.grant is not None and other.grant.expires_at > not_before]


def _take_grant_slot(request: AccessRequest, deps: Dependencies) -> AccessRequest | None:
    """Make this request the one whose grant serves its role on this database user, or return the
    live grant that already does (to extend).

    The role index read above is eventually consistent and sees only ACTIVE grants: two requests
    issued at the same moment would both find nothing there and both make a policy. The slot is
    claimed with a conditional write, so one of them holds it; the other extends its grant, or
    waits for it (TransientError: the workflow retries the step) while it is being issued. A
    holder that can no longer be extended (revoked, failed, about to expire) or that has been
    "being issued" for longer than its SLOT_PATIENCE (refused, or its workflow stopped) is replaced: the new request
    gets a grant of its own, and the old one is revoked at its expiry as always.
    """
    key = grant_slot_key(request.role_arn, request.database, request.db_user)
    now = utc_now()
    slot = deps.grants.claim_slot(key, request.request_id, now=to_iso(now))
    if slot is None:
        return None
    holder = deps.grants.get(slot.holder)
    if holder.status == RequestStatus.EXTENDED and holder.extends is not None:
        holder = deps.grants.get(holder.extends)  # it was served by another live grant: that one serves
    if holder.status == RequestStatus.ACTIVE and holder.grant is not None:
        if holder.grant.expires_at > to_iso(now + EXTEND_MARGIN):
            return holder
    elif holder.status in SLOT_PATIENCE and slot.claimed_at > to_iso(now - SLOT_PATIENCE[holder.status]):
        raise GrantSlotBusy(f"grant {holder.request_id} for the same access is being issued; extending it once it is")
    if deps.grants.claim_slot(key, request.request_id, now=to_iso(now), replacing=slot.holder) is not None:
        raise GrantSlotBusy(f"another request took the grant slot of {request.role_name} on {request.db_user}")
    logger.info("grant slot taken over", extra={"request_id": request.request_id, "previous": slot.holder})
    return None


def _still_holding_slot(request: AccessRequest, deps: Dependencies) -> None:
    """A grant step run again while its grant is being made (GRANTING) completes it only while the
    request still holds its slot: one stalled past its patience may have been replaced by a request
    that made a grant of its own, and completing this one would make two. The step then fails for
    good, and its compensation removes whatever it had made."""
    key = grant_slot_key(request.role_arn, request.database, request.db_user)
    slot = deps.grants.claim_slot(key, request.request_id, now=to_iso(utc_now()))
    if slot is not None:
        raise ConflictError(f"request {slot.holder} took over the grant slot of this stalled grant; not completing it")


def _require_approval(request_id: str, deps: Dependencies) -> None:
    """A request that needed approval is granted only once its approval is recorded as approved."""
    if deps.approvals is None:
        raise ForbiddenError(f"request {request_id} needs approval and approvals are not configured")
    approval, _ = deps.approvals.get(request_id)
    if approval.status != ApprovalStatus.APPROVED:
        raise ForbiddenError(
            f"request {request_id} is {approval.status.value.lower()}, not approved; no grant is issued"
        )
    if approval.delivered_at is None:
        # The workflow is here, so it has the decision: a send whose record was lost (or the timeout step's).
        # Bookkeeping only: the grant never waits on it.
        try:
            acknowledge_delivery(request_id, "task_token", deps)
        except Exception:
            logger.exception("approval delivery not recorded", extra={"request_id": request_id})


def approvers_of(request_id: str, deps: Dependencies) -> list[str]:
    approval = deps.approvals.find(request_id) if deps.approvals else None
    return approval.approvers if approval else []


def _audit_issue_once(request: AccessRequest, deps: Dependencies) -> None:
    assert request.grant is not None
    if deps.audit.recorded(request.request_id, AuditEventType.GRANT_ISSUED):
        return
    _audit_grant_issued(request, request.grant, deps, recorded_on_retry=True)


def _audit_grant_issued(
    request: AccessRequest,
    grant: Grant,
    deps: Dependencies,
    iam_calls: list[AwsRequest] | None = None,
    **extra: Any,
) -> None:
    """The GRANT_ISSUED record, with the document as issued (rebuilt from the grant: it is deterministic).

    ``iam_calls``: the IAM calls that made it (none when the record is written on a retry: they
    were made, and are in CloudTrail, under the earlier invocation)."""
    deps.audit.append(
        AuditEventType.GRANT_ISSUED,
        subject=request.request_id,
        actor="workflow",
        request=request,
        outcome="GRANTED",
        reason=request.decision.reason if request.decision else None,
        details={
            "policy_arn": grant.policy_arn,
            "expires_at": grant.expires_at,
            "policy_document": build_grant_policy(grant.resource_arn, grant.expires_at),
            "approved_by": approvers_of(request.request_id, deps),
            **extra,
        },
        aws_requests=iam_calls,
    )


def _check_role_policy_quota(role_name: str, deps: Dependencies) -> None:
    """Refuse before any IAM change if the role cannot take one more managed policy."""
    paginator = deps.iam.get_paginator("list_attached_role_policies")
    attached = sum(len(page["AttachedPolicies"]) for page in paginator.paginate(RoleName=role_name))
    quota = deps.settings.role_policy_quota
    if attached >= quota:
        raise QuotaExceededError(
            f"role {role_name} already has {attached} managed policies attached (IAM quota {quota}); "
            "no grant was made - detach a policy or raise the quota (ROLE_POLICY_QUOTA)"
        )


def extend_grant(existing: AccessRequest, request: AccessRequest, decision: Decision, deps: Dependencies) -> Grant:
    """Serve ``request`` by moving ``existing``'s expiry later, never with a second policy.

    The new expiry is recorded first (the index never under-states a live policy), then the
    policy gets a new default version and the old version is deleted, so a grant keeps one
    version (IAM allows five). The original workflow's wait re-targets when it wakes (the revoke
    step answers EXTENDED with the new expiry). A step run again after it recorded the extension
    keeps that expiry (and completes the policy if the earlier run stopped before IAM had it).
    """
    assert existing.grant is not None and decision.granted_minutes is not None
    already_extended = request.request_id in existing.grant.extended_by
    if already_extended:
        expires_at = existing.grant.expires_at
    else:
        expires_at = max(grant_expiry(utc_now(), decision.granted_minutes), existing.grant.expires_at)
    document = build_grant_policy(existing.grant.resource_arn, expires_at)
    with aws_requests(deps.iam) as iam_calls:
        if not already_extended:
            # Also when the expiry does not move: the conditional write is what says the grant is
            # still live (and not about to be revoked) now, and it records who extended it.
            try:
                deps.grants.record_extension(
                    existing.request_id,
                    expires_at,
                    extended_by=request.request_id,
                    not_before=to_iso(utc_now() + EXTEND_MARGIN),
                )
            except ConflictError as error:
                # Revoked, or now too close to its expiry, since it was read: the step run again
                # (TransientError is retried) issues a grant of its own.
                raise TransientError(f"grant {existing.request_id} can no longer be extended: {error}") from error
            if expires_at != existing.grant.expires_at:
                _replace_policy_document(existing.grant.policy_arn, document, deps)
        elif grant_policy_problems(
            current_policy_document(existing.grant.policy_arn, deps), existing.grant.resource_arn, expires_at
        ):
            _replace_policy_document(existing.grant.policy_arn, document, deps)
    grant = existing.grant.model_copy(update={"expires_at": expires_at})
    deps.grants.record_extended(request.request_id, grant, extends=existing.request_id)
    for subject in (existing.request_id, request.request_id):
        _audit_extension(subject, request, grant, existing.grant.expires_at, deps, iam_calls=iam_calls)
    metrics.add_metric(name="GrantsExtended", unit="Count", value=1)
    # The requester's wait for the extension (its new expiry in force), apart from TimeToGrant: an
    # extension changes a policy version where a new grant creates and attaches a policy, so mixing
    # them would move TimeToGrant's percentiles (and any alarm on them) with the share of extensions.
    metrics.add_metric(name="TimeToExtend", unit="Seconds", value=_seconds_since(request.requested_at))
    return grant


def _audit_extension(
    subject: str,
    request: AccessRequest,
    grant: Grant,
    previous_expires_at: str | None,
    deps: Dependencies,
    iam_calls: list[AwsRequest] | None = None,
    **extra: Any,
) -> None:
    deps.audit.append(
        AuditEventType.GRANT_EXTENDED,
        subject=subject,
        actor="workflow",
        request=request,
        outcome="EXTENDED",
        reason=request.decision.reason if request.decision else None,
        details={
            "grant_id": grant.grant_id,
            "extended_by": request.request_id,
            "previous_expires_at": previous_expires_at,
            "expires_at": grant.expires_at,
            "approved_by": approvers_of(request.request_id, deps),
            **extra,
        },
        aws_requests=iam_calls,
    )


def _audit_extension_once(request: AccessRequest, grant: Grant, deps: Dependencies) -> None:
    """The GRANT_EXTENDED records (on the extended grant and on this request) a stopped step did not write."""
    for subject in (grant.grant_id, request.request_id):
        written = any(
            event.event_type == AuditEventType.GRANT_EXTENDED and event.details.get("extended_by") == request.request_id
            for event in deps.audit.for_subject(subject)
        )
        if not written:
            _audit_extension(subject, request, grant, None, deps, recorded_on_retry=True)


def _replace_policy_document(policy_arn: str, document: dict[str, Any], deps: Dependencies) -> None:
    versions = call(deps.iam.list_policy_versions, PolicyArn=policy_arn)["Versions"]
    for version in versions:
        if not version["IsDefaultVersion"]:
            _ignore_missing(deps.iam.delete_policy_version, PolicyArn=policy_arn, VersionId=version["VersionId"])
    previous = [version["VersionId"] for version in versions if version["IsDefaultVersion"]]
    call(deps.iam.create_policy_version, PolicyArn=policy_arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
    for version_id in previous:
        _ignore_missing(deps.iam.delete_policy_version, PolicyArn=policy_arn, VersionId=version_id)


def _new_grant(request: AccessRequest, decision: Decision, deps: Dependencies) -> Grant:
    assert decision.target is not None and decision.granted_minutes is not None
    issued_at = utc_now()
    return Grant(
        grant_id=request.request_id,
        policy_name=policy_name_for(request.request_id),
        policy_arn=policy_arn_for(request.request_id, deps),
        role_name=request.role_name,
        resource_arn=dbuser_arn(decision.target, request.db_user),
        issued_at=to_iso(issued_at),
        expires_at=grant_expiry(issued_at, decision.granted_minutes),
    )


def _create_or_reuse_policy(grant: Grant, request: AccessRequest, document: dict[str, Any], deps: Dependencies) -> None:
    try:
        call(
            deps.iam.create_policy,
            PolicyName=grant.policy_name,
            Path=deps.settings.grants_path,
            PolicyDocument=json.dumps(document),
            Description=f"accessctl grant {grant.grant_id} until {grant.expires_at}",
            Tags=[
                {"Key": "accessctl:grant-id", "Value": grant.grant_id},
                {"Key": "accessctl:requester", "Value": request.principal_arn[:256]},
                {"Key": "accessctl:role", "Value": request.role_name},
                {"Key": "accessctl:expires-at", "Value": grant.expires_at},
            ],
        )
    except ClientError as error:
        if error_code(error) != "EntityAlreadyExists":
            raise
        # A retry after a crash: reuse the policy only if it is exactly the grant we meant.
        existing = current_policy_document(grant.policy_arn, deps)
        check_grant_policy(existing, expected_resource_arn=grant.resource_arn, expected_expires_at=grant.expires_at)


def current_policy_document(policy_arn: str, deps: Dependencies) -> dict[str, Any]:
    policy = call(deps.iam.get_policy, PolicyArn=policy_arn)["Policy"]
    version = call(deps.iam.get_policy_version, PolicyArn=policy_arn, VersionId=policy["DefaultVersionId"])
    document = version["PolicyVersion"]["Document"]
    if isinstance(document, str):  # IAM returns it URL-encoded; boto3 usually decodes it
        document = json.loads(unquote(document))
    return dict(document)


@dataclass
class Revocation:
    request_id: str
    status: str  # REVOKED | ALREADY_REVOKED | EXTENDED (not yet due: wait until expires_at)
    detached_from: list[str] = field(default_factory=list)
    expires_at: str | None = None
    warn_at: str | None = None  # for EXTENDED: when to warn the holder (None: no warning due)


_FINAL_STATUS = {
    RevokeReason.EXPIRED: RequestStatus.REVOKED,
    RevokeReason.EARLY: RequestStatus.REVOKED,
    RevokeReason.SWEEP: RequestStatus.REVOKED,
    RevokeReason.TAMPERED: RequestStatus.REVOKED,
}


def expiry_warning_at(expires_at: str, lead_minutes: int) -> str | None:
    """When to warn the holder that ``expires_at`` is near; None when no warning is still due.

    None if warnings are off, or if that moment has passed (a short grant, or a workflow that
    woke again after an extension or early: it must not warn twice for the same expiry).
    """
    if lead_minutes <= 0:
        return None
    expiry = datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    warn_at = expiry - timedelta(minutes=lead_minutes)
    return to_iso(warn_at) if warn_at > utc_now() else None


def revoke_grant(
    request_id: str, reason: RevokeReason, actor: str, deps: Dependencies, failure: str | None = None
) -> Revocation:
    """Remove a grant's policy from IAM; idempotent. Recorded as revoked only once IAM confirms.

    ``failure``: for COMPENSATION, why the grant step failed (the workflow passes the step's
    error); it is written with the FAILED status in the same update.
    """
    request = deps.grants.get(request_id)
    settled = _nothing_to_revoke(request, reason, actor, deps)
    if settled is not None:
        return settled
    policy_arn = request.grant.policy_arn if request.grant else policy_arn_for(request_id, deps)
    with aws_requests(deps.iam) as iam_calls:
        detached = remove_policy(policy_arn, deps)
    sessions = _terminate_sessions(request, deps)
    revoked_at = to_iso(utc_now())
    grant = (
        request.grant.model_copy(update={"revoked_at": revoked_at, "revoke_reason": reason}) if request.grant else None
    )
    if not _record_revocation(request, grant, reason, failure, deps):
        # Another revoker (the sweeper, the workflow, an early revoke) recorded and audited it first.
        if reason == RevokeReason.EARLY:
            stop_execution(request.execution_arn, deps, cause=f"grant revoked early by {actor}")
        return Revocation(request_id=request_id, status="ALREADY_REVOKED", detached_from=detached)
    deps.audit.append(
        AuditEventType.GRANT_COMPENSATED if reason == RevokeReason.COMPENSATION else AuditEventType.GRANT_REVOKED,
        subject=request_id,
        actor=actor,
        request=request,
        outcome="REVOKED",
        reason=reason.value,
        details={
            "policy_arn": policy_arn,
            "detached_from": detached,
            "expires_at": request.grant.expires_at if request.grant else None,
            "revoked_at": revoked_at,
            **_session_details(sessions),
        },
        aws_requests=iam_calls,
    )
    metrics.add_metric(name=f"GrantsRevoked{reason.value.title()}", unit="Count", value=1)
    if reason in (RevokeReason.EXPIRED, RevokeReason.SWEEP) and request.grant is not None:
        # How long a grant outlived its expiry in IAM (its policy's own condition stopped new logins at expiry).
        metrics.add_metric(
            name="RevocationLag", unit="Seconds", value=max(0.0, _seconds_since(request.grant.expires_at))
        )
    if reason == RevokeReason.EARLY:
        stop_execution(request.execution_arn, deps, cause=f"grant revoked early by {actor}")
    logger.info("grant revoked", extra={"request_id": request_id, "reason": reason.value})
    return Revocation(request_id=request_id, status="REVOKED", detached_from=detached)


def _seconds_since(instant: str) -> float:
    """Seconds from an ISO instant (``...Z``) to now, on this module's clock."""
    then = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return (utc_now() - then).total_seconds()


def _nothing_to_revoke(
    request: AccessRequest, reason: RevokeReason, actor: str, deps: Dependencies
) -> Revocation | None:
    """The answer for a request already revoked, holding no policy, or not yet due; None: revoke it now."""
    compensated = request.status == RequestStatus.FAILED and (
        request.grant is None or request.grant.revoked_at is not None
    )
    if request.status in (RequestStatus.REVOKED, RequestStatus.DENIED) or compensated:
        _audit_revocation_once(request, reason, deps)
        if reason == RevokeReason.EARLY and request.status == RequestStatus.REVOKED:
            # Asked again: an earlier early revoke (or another revoker) may have left the workflow
            # waiting, which would wake at expiry to revoke and notify once more. Stopping is idempotent.
            stop_execution(request.execution_arn, deps, cause=f"grant revoked early by {actor}")
        if reason == RevokeReason.COMPENSATION and request.status == RequestStatus.REVOKED:
            _remove_policy_made_after_revocation(request, deps)
        return Revocation(request_id=request.request_id, status="ALREADY_REVOKED")
    if request.status == RequestStatus.EXTENDED:
        # Holds no policy of its own; the grant it extended is revoked through its own record.
        return Revocation(request_id=request.request_id, status="ALREADY_REVOKED")
    due_by_expiry = reason in (RevokeReason.EXPIRED, RevokeReason.SWEEP)
    if due_by_expiry and request.grant is not None and request.grant.expires_at > to_iso(utc_now()):
        # Not yet due: extended after the workflow's wait began, or after the sweeper's index read
        # (the expiry index is eventually consistent; this read of the record is not).
        expires_at = request.grant.expires_at
        warn_at = expiry_warning_at(expires_at, deps.settings.expiry_warning_minutes)
        return Revocation(request_id=request.request_id, status="EXTENDED", expires_at=expires_at, warn_at=warn_at)
    return None


def _remove_policy_made_after_revocation(request: AccessRequest, deps: Dependencies) -> None:
    """A grant step still running when another revoker (the sweeper, past expiry) recorded the grant
    revoked may have created and attached the policy after that removal; its compensation removes it."""
    policy_arn = request.grant.policy_arn if request.grant else policy_arn_for(request.request_id, deps)
    try:
        call(deps.iam.get_policy, PolicyArn=policy_arn)
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return
        raise
    with aws_requests(deps.iam) as iam_calls:
        detached = remove_policy(policy_arn, deps)
    deps.audit.append(
        AuditEventType.ORPHAN_REMOVED,
        subject=request.request_id,
        actor="workflow",
        request=request,
        outcome="REMOVED",
        reason="the grant step made the policy after the grant was recorded revoked",
        details={"policy_arn": policy_arn, "detached_from": detached},
        aws_requests=iam_calls,
    )
    logger.warning("removed a grant policy made after its revocation", extra={"request_id": request.request_id})


def _record_revocation(
    request: AccessRequest, grant: Grant | None, reason: RevokeReason, failure: str | None, deps: Dependencies
) -> bool:
    """Record what IAM confirmed; False when another revoker recorded the grant as revoked first."""
    try:
        if reason == RevokeReason.COMPENSATION:
            deps.grants.record_compensated(request.request_id, grant, failure)
        elif grant is not None:
            deps.grants.record_revoked(request, grant, final_status=_FINAL_STATUS[reason])
    except ConflictError:
        if deps.grants.get(request.request_id).status != RequestStatus.REVOKED:
            raise
        return False
    return True


def _terminate_sessions(request: AccessRequest, deps: Dependencies) -> SessionTermination | None:
    """The policy is gone; end the db user's open sessions too. Never raises: recorded instead."""
    if deps.session_terminator is None:
        return None
    try:
        outcome = deps.session_terminator(request)
    except Exception as error:  # the IAM revocation stands and is recorded whatever happens here
        engine = request.decision.target.engine if request.decision and request.decision.target else "unknown"
        outcome = SessionTermination.failed(engine, f"{type(error).__name__}: {error}"[:500])
    if outcome.status == "FAILED":
        metrics.add_metric(name="SessionTerminationFailures", unit="Count", value=1)
        logger.warning("open sessions were not ended", extra={"request_id": request.request_id, "why": outcome.reason})
    return outcome


def _session_details(sessions: SessionTermination | None) -> dict[str, Any]:
    if sessions is None:
        return {}
    return {"sessions_terminated": sessions.terminated, "session_termination": sessions.model_dump(mode="json")}


def remove_policy(policy_arn: str, deps: Dependencies) -> list[str]:
    """Detach from every role (the holder, and any it was tampered onto), then delete."""
    detached: list[str] = []
    try:
        paginator = deps.iam.get_paginator("list_entities_for_policy")
        for page in paginator.paginate(PolicyArn=policy_arn):
            for role in page.get("PolicyRoles", []):
                _ignore_missing(deps.iam.detach_role_policy, RoleName=role["RoleName"], PolicyArn=policy_arn)
                detached.append(role["RoleName"])
            for user in page.get("PolicyUsers", []):
                _ignore_missing(deps.iam.detach_user_policy, UserName=user["UserName"], PolicyArn=policy_arn)
                detached.append(f"user/{user['UserName']}")
            for group in page.get("PolicyGroups", []):
                _ignore_missing(deps.iam.detach_group_policy, GroupName=group["GroupName"], PolicyArn=policy_arn)
                detached.append(f"group/{group['GroupName']}")
        versions = call(deps.iam.list_policy_versions, PolicyArn=policy_arn)["Versions"]
        for version in versions:
            if not version["IsDefaultVersion"]:
                _ignore_missing(deps.iam.delete_policy_version, PolicyArn=policy_arn, VersionId=version["VersionId"])
        _ignore_missing(deps.iam.delete_policy, PolicyArn=policy_arn)
    except ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise
    _confirm_gone(policy_arn, deps)
    return detached


def _audit_revocation_once(request: AccessRequest, reason: RevokeReason, deps: Dependencies) -> None:
    """A revocation (or compensation) recorded in the table whose audit write failed gets its record now."""
    revoked = request.status == RequestStatus.REVOKED and request.grant is not None
    compensated = request.status == RequestStatus.FAILED and reason == RevokeReason.COMPENSATION
    if not (revoked or compensated):
        return
    if deps.audit.recorded(request.request_id, AuditEventType.GRANT_REVOKED, AuditEventType.GRANT_COMPENSATED):
        return
    grant = request.grant
    revoke_reason = grant.revoke_reason if grant and grant.revoke_reason else reason
    deps.audit.append(
        AuditEventType.GRANT_COMPENSATED if compensated else AuditEventType.GRANT_REVOKED,
        subject=request.request_id,
        actor="workflow",
        request=request,
        outcome="REVOKED",
        reason=revoke_reason.value,
        details={
            "policy_arn": grant.policy_arn if grant else policy_arn_for(request.request_id, deps),
            "expires_at": grant.expires_at if grant else None,
            "revoked_at": grant.revoked_at if grant else None,
            "recorded_on_retry": True,
        },
    )


def _confirm_gone(policy_arn: str, deps: Dependencies) -> None:
    """IAM must say the policy is gone before anything is recorded as revoked.

    IAM is eventually consistent: a policy still readable right after DeletePolicy answered is
    transient, and the step run again (it repeats the removal, which is idempotent) finds it gone.
    """
    try:
        call(deps.iam.get_policy, PolicyArn=policy_arn)
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return
        raise
    raise TransientError(f"policy {policy_arn} still exists after deletion")


def _ignore_missing(operation: Any, **kwargs: Any) -> None:
    try:
        call(operation, **kwargs)
    except ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise


def record_outcome(
    request_id: str, outcome: str, detail: str | None, deps: Dependencies, channel: ApprovalChannel | None = None
) -> ApprovalAnswer | None:
    """The end of a request that did not (or no longer does) hold a grant, or a failed revoke.

    ``APPROVAL_TIMED_OUT`` (the workflow's wait for approval timed out) answers how the approval
    ended, which the workflow routes on: a decision made in time but never delivered is acted on."""
    if outcome == "APPROVAL_TIMED_OUT":
        return act_on_timed_out_approval(request_id, deps, channel)
    _record_end(request_id, outcome, detail, deps, channel)
    return None


def _record_end(
    request_id: str, outcome: str, detail: str | None, deps: Dependencies, channel: ApprovalChannel | None
) -> None:
    request = deps.grants.get(request_id)
    if outcome in ("DENIED", "NEEDS_APPROVAL"):
        deps.grants.record_status(request_id, RequestStatus(outcome))
        return  # the decision itself was audited when it was made
    if outcome == "APPROVAL_DENIED":
        # The deny vote was audited when it was cast; the requester is told who denied.
        deniers = _deniers(request_id, deps)
        deps.grants.record_status(request_id, RequestStatus.DENIED, failure=f"denied by {' and '.join(deniers)}")
        if deps.approvals is not None and deps.approvals.find(request_id) is not None:
            acknowledge_delivery(request_id, "task_token", deps)  # the workflow is here: it has the decision
        return
    if outcome == "EXPIRED":
        expire_approval(request_id, deps, channel)  # an execution started before CheckApprovalAtTimeout existed
        return
    if outcome == "REVOKE_FAILED":
        # The grant stays indexed as active: the sweeper retries; the policy's own condition
        # has already stopped it from authenticating anyone.
        if deps.audit.recorded(request_id, AuditEventType.REVOKE_FAILED):
            return  # a retried step whose audit write had succeeded (one workflow reaches this once)
        deps.audit.append(
            AuditEventType.REVOKE_FAILED, subject=request_id, actor="workflow", request=request, reason=detail
        )
        metrics.add_metric(name="RevocationFailures", unit="Count", value=1)
        return
    # The compensation has already written FAILED and why, in one update; a grant the sweeper
    # revoked meanwhile stays REVOKED.
    compensated = request.status == RequestStatus.FAILED and request.failure is not None
    if not compensated and request.status != RequestStatus.REVOKED:
        deps.grants.record_status(request_id, RequestStatus.FAILED, failure=detail)
    if deps.audit.recorded(request_id, AuditEventType.REQUEST_FAILED):
        return  # a retried step whose audit write had succeeded
    deps.audit.append(
        AuditEventType.REQUEST_FAILED,
        subject=request_id,
        actor="workflow",
        request=request,
        reason=detail or request.failure,
    )
    metrics.add_metric(name="RequestsFailed", unit="Count", value=1)


def _deniers(request_id: str, deps: Dependencies) -> list[str]:
    approval = deps.approvals.find(request_id) if deps.approvals else None
    return (approval.decided_by if approval else []) or ["an approver"]


@dataclass
class SweepReport:
    examined: int = 0
    revoked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    out_of_time: bool = False  # stopped before the function's timeout; the next sweep goes on


# Time kept back from the function's timeout: one revocation (IAM calls, SDK retries, session
# termination's connect timeout, the audit write) and the metrics flush fit in it. At most a quarter
# of the time the run started with (a function given a shorter Timeout still sweeps).
SWEEP_RESERVE_SECONDS = 60.0


def sweep_expired_grants(
    deps: Dependencies,
    grace: timedelta = timedelta(seconds=0),
    seconds_left: Callable[[], float] | None = None,
    holders: Callable[[], Notifier] | None = None,
) -> SweepReport:
    """Revoke every grant past expiry that is still indexed as active, whatever its workflow did,
    and tell its holder as the workflow would have (``holders`` makes the deployment's notifier, on
    the first revocation only: a sweep with nothing to revoke reads no channel secrets).

    Cost follows the expired grants only (one indexed Query, paged). A failure on one grant
    never stops the others; it is retried on the next sweep, and counted (``SweeperFailures``,
    which sets off an alarm). ``seconds_left`` (the Lambda's remaining time): a backlog larger
    than one run stops SWEEP_RESERVE_SECONDS before the timeout, so the run still ends, reports and
    emits its metrics (a timed-out run emits none, and its alarms would stay silent); what is left
    is still indexed and the next sweep takes it.
    """
    report = SweepReport()
    notifier = cache(holders) if holders is not None else None
    cutoff = to_iso(utc_now() - grace)
    reserve = min(SWEEP_RESERVE_SECONDS, seconds_left() / 4) if seconds_left is not None else 0.0
    for request in deps.grants.expired_active(now=cutoff):
        if seconds_left is not None and seconds_left() < reserve:
            report.out_of_time = True
            logger.warning("sweep stopped before the function's timeout; the next sweep goes on")
            break
        report.examined += 1
        try:
            revocation = revoke_grant(request.request_id, RevokeReason.SWEEP, "sweeper", deps)
            if revocation.status == "REVOKED":  # not one another revoker finished, nor one extended meanwhile
                report.revoked.append(request.request_id)
                _tell_holder(request.request_id, notifier, deps)
        except Exception as error:  # isolate each grant; the next sweep retries
            logger.exception("sweeper could not revoke", extra={"request_id": request.request_id})
            report.failed[request.request_id] = f"{type(error).__name__}: {error}"
            _audit_sweep_failure(request, report.failed[request.request_id], deps)
    metrics.add_metric(name="SweeperRevoked", unit="Count", value=len(report.revoked))
    metrics.add_metric(name="SweeperFailures", unit="Count", value=len(report.failed))
    try:
        metrics.add_metric(name="GrantsActive", unit="Count", value=deps.grants.count_active())
    except Exception:  # a gauge, not the sweep's work: the revocations above stand
        logger.exception("grants active was not counted")
    # One per completed expiry sweep: the sweeper-not-running alarm's heartbeat (a sweep that fails
    # before here, or is never invoked, sends none).
    metrics.add_metric(name="ExpirySweeps", unit="Count", value=1)
    return report


def _tell_holder(request_id: str, notifier: Callable[[], Notifier] | None, deps: Dependencies) -> None:
    """The holder hears of a sweeper's revocation as of the workflow's ("REVOKED"). Never raises: the
    revocation stands; a channel that failed is logged and counted by the notifier."""
    if notifier is None:
        return
    try:
        notifier().send("REVOKED", deps.grants.get(request_id))
    except Exception:
        logger.exception("holder not told of the sweeper's revocation", extra={"request_id": request_id})


def _audit_sweep_failure(request: AccessRequest, why: str, deps: Dependencies) -> None:
    """A grant past expiry the sweeper could not revoke goes on the trail, once (it retries every minute).

    Never raises: the other grants are still swept; an audit write that fails is tried again on the next sweep.
    """
    try:
        written = any(
            event.event_type == AuditEventType.REVOKE_FAILED and event.actor == "sweeper"
            for event in deps.audit.for_subject(request.request_id)
        )
        if not written:
            deps.audit.append(
                AuditEventType.REVOKE_FAILED,
                subject=request.request_id,
                actor="sweeper",
                request=request,
                reason=why,
                details={"expires_at": request.grant.expires_at if request.grant else None},
            )
    except Exception:
        logger.exception("the sweeper's failed revocation was not audited", extra={"request_id": request.request_id})


__all__ = [
    "Revocation",
    "SweepReport",
    "UnsafeGrantError",
    "evaluate_request",
    "issue_grant",
    "record_outcome",
    "revoke_grant",
    "sweep_expired_grants",
]
