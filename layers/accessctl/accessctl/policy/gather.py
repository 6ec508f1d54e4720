"""Assembling a :class:`PolicyRequest` from the trusted signal providers (the wiring seam)."""

from __future__ import annotations

from datetime import datetime, timedelta

from accessctl.policy.model import HumanPrincipal, PolicyRequest, Principal, WorkloadPrincipal
from accessctl.signals.database import DatabaseFacts
from accessctl.signals.model import RequestSignals, Signal
from accessctl.signals.network import source_ip_signal
from accessctl.signals.oidc import OidcSettings, VerifiedIdToken, identity_signals
from accessctl.signals.posture import DEFAULT_MAX_POSTURE_AGE, PostureStore, device_signal
from accessctl.signals.workload import RoleFacts

UNVERIFIED_SUBJECT = "unverified"


def principal_for(role: RoleFacts, token: VerifiedIdToken | None) -> Principal:
    """A human when a verified ID token came with the request, or when the role is human-facing
    (then unverified: no groups, and human guardrails still apply); otherwise the workload."""
    if token is not None:
        return HumanPrincipal(subject=token.subject, issuer=token.issuer, verified=True, role=role)
    if role.human_facing:
        return HumanPrincipal(subject=f"{UNVERIFIED_SUBJECT}:{role.name}", issuer="", verified=False, role=role)
    return WorkloadPrincipal(role=role)


def gather_signals(
    *,
    source_ip: str | None,
    token: VerifiedIdToken | None,
    oidc: OidcSettings | None,
    posture_store: PostureStore | None,
    now: datetime,
    max_posture_age: timedelta = DEFAULT_MAX_POSTURE_AGE,
) -> RequestSignals:
    values: dict[str, Signal] = {"source_ip": source_ip_signal(source_ip)}
    if oidc is not None:
        values.update(identity_signals(token, oidc, now))
    if token is not None and posture_store is not None:
        owners = {token.subject, *([token.email] if token.email else [])}
        values["device"] = device_signal(
            posture_store, token.device_id, owners=owners, now=now, max_age=max_posture_age
        )
    return RequestSignals(**values)


def build_policy_request(
    *,
    role: RoleFacts,
    database: DatabaseFacts,
    db_user: str,
    requested_minutes: int,
    now: datetime,
    source_ip: str | None = None,
    token: VerifiedIdToken | None = None,
    oidc: OidcSettings | None = None,
    posture_store: PostureStore | None = None,
    max_posture_age: timedelta = DEFAULT_MAX_POSTURE_AGE,
) -> PolicyRequest:
    signals = gather_signals(
        source_ip=source_ip,
        token=token,
        oidc=oidc,
        posture_store=posture_store,
        now=now,
        max_posture_age=max_posture_age,
    )
    return PolicyRequest(
        principal=principal_for(role, token),
        database=database,
        db_user=db_user,
        requested_minutes=requested_minutes,
        signals=signals,
        at=now,
    )
