"""Deciding a request: RDS facts first, then the Cedar policies over trusted signals only.

The database must exist and have IAM authentication on before any policy is asked; after that
the policy engine's answer is recorded as it is (outcome, reasons, matched rules, signals with
their provenance), so the API answer and the audit trail explain the decision the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from accessctl.models import AccessRequest, DatabaseTarget, Decision, Outcome, to_iso
from accessctl.policy import PolicyEngine, build_policy_request
from accessctl.signals.database import database_facts
from accessctl.signals.oidc import OidcSettings, VerifiedIdToken
from accessctl.signals.posture import DEFAULT_MAX_POSTURE_AGE, PostureStore
from accessctl.signals.workload import role_facts


def decide_request(
    engine: PolicyEngine,
    request: AccessRequest,
    target: DatabaseTarget | None,
    *,
    iam: Any,
    rds: Any,
    now: datetime,
    ceiling_minutes: int,
    oidc: OidcSettings | None = None,
    posture_store: PostureStore | None = None,
    max_posture_age: timedelta = DEFAULT_MAX_POSTURE_AGE,
    slack_workspace_enforces_mfa: bool = False,
    default_approval_timeout_minutes: int = 60,
) -> Decision:
    decided_at = to_iso(now)
    if target is None:
        return Decision(
            outcome=Outcome.DENY,
            reason=f"denied: database {request.database} does not exist in this account and region",
            decided_at=decided_at,
        )
    if not target.iam_auth_enabled:
        return Decision(
            outcome=Outcome.DENY,
            reason=f"denied: IAM database authentication is disabled on {request.database}",
            target=target,
            decided_at=decided_at,
        )
    policy_request = build_policy_request(
        role=role_facts(iam, request.role_name),
        database=database_facts(rds, target),
        db_user=request.db_user,
        requested_minutes=request.requested_minutes,
        now=now,
        source_ip=request.source_ip,
        token=VerifiedIdToken.model_validate(request.id_token) if request.id_token else None,
        oidc=oidc,
        posture_store=posture_store,
        max_posture_age=max_posture_age,
        requester=request.requester,
        origin=request.origin,
        slack_workspace_enforces_mfa=slack_workspace_enforces_mfa,
    )
    answer = engine.decide(policy_request, ceiling_minutes=ceiling_minutes)
    outcome = Outcome(answer.outcome.value)
    return Decision(
        outcome=outcome,
        reason=answer.summary,
        rule_id=answer.rule_id,
        granted_minutes=answer.granted_minutes if outcome != Outcome.DENY else None,
        target=target,
        decided_at=decided_at,
        reasons=answer.reasons,
        matched_rule_ids=answer.matched_rule_ids,
        approver_group=answer.approver_group,
        approvals_required=answer.approvals_required,
        approval_timeout_seconds=60 * (answer.approval_timeout_minutes or default_approval_timeout_minutes)
        if outcome == Outcome.NEEDS_APPROVAL
        else None,
        break_glass=answer.break_glass,
        severity=answer.severity,
        missing_signals=answer.missing_signals,
        signals=answer.signals,
    )
