"""Assembling a :class:`PolicyRequest` from the trusted signal providers (the wiring seam)."""

from __future__ import annotations

from datetime import datetime, timedelta

from accessctl.models import Requester, RequestOrigin
from accessctl.policy.model import HumanPrincipal, PolicyRequest, Principal, WorkloadPrincipal
from accessctl.signals.database import DatabaseFacts
from accessctl.signals.model import RequestSignals, Signal
from accessctl.signals.network import source_ip_signal
from accessctl.signals.oidc import OidcSettings, VerifiedIdToken, identity_signals
from accessctl.signals.posture import DEFAULT_MAX_POSTURE_AGE, PostureStore, device_signal
from accessctl.signals.workload import RoleFacts

UNVERIFIED_SUBJECT = "unverified"


def principal_for(role: RoleFacts, token: VerifiedIdToken | None, requester: Requester | None = None) -> Principal:
    """A human when a verified ID token came with the request, or when the role is human-facing
    (then unverified: no groups, and human guardrails still apply); otherwise the workload.
    A request relayed for a directory person (Slack, chat-ops bot) is that person."""
    if requester is not None:
        return HumanPrincipal(subject=requester.identity, issuer="people-directory", verified=True, role=role)
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
    requester: Requester | None = None,
    origin: RequestOrigin = RequestOrigin.API,
    slack_workspace_enforces_mfa: bool = False,
) -> RequestSignals:
    if requester is not None:
        return relayed_signals(requester, origin, slack_workspace_enforces_mfa)
    values: dict[str, Signal] = {"source_ip": source_ip_signal(source_ip)}
    if oidc is not None:
        values.update(identity_signals(token, oidc, now))
    if token is not None and posture_store is not None:
        owners = {token.subject, *([token.email] if token.email else [])}
        values["device"] = device_signal(
            posture_store, token.device_id, owners=owners, now=now, max_age=max_posture_age
        )
    return RequestSignals(**values)


def relayed_signals(requester: Requester, origin: RequestOrigin, slack_workspace_enforces_mfa: bool) -> RequestSignals:
    """The signals of a request relayed by Slack or a chat-ops bot: only what the relay can vouch for.

    The relay's network address is not the person's, and neither relay proves a device, so those
    stay unknown (rules needing them fail closed). MFA is known only for Slack workspaces whose
    two-factor requirement the deployment declares.
    """
    relay = "Slack" if origin == RequestOrigin.SLACK else "a chat-ops bot"
    groups = Signal.of(
        sorted(requester.groups), requester.source, note=f"your groups: {', '.join(requester.groups) or 'none'}"
    )
    if origin == RequestOrigin.SLACK and slack_workspace_enforces_mfa:
        mfa = Signal.of(
            True,
            "deployment setting SlackWorkspaceEnforcesMfa (the workspace requires two-factor sign-in)",
            note="your Slack workspace requires two-factor sign-in",
        )
    else:
        mfa = Signal.absent(f"requests relayed by {relay} carry no MFA proof")
    return RequestSignals(
        source_ip=Signal.absent(f"requests relayed by {relay} carry no client address"),
        mfa=mfa,
        mfa_age_seconds=Signal.absent(f"requests relayed by {relay} carry no sign-in time"),
        groups=groups,
        device=Signal.absent(f"requests relayed by {relay} name no device"),
    )


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
    requester: Requester | None = None,
    origin: RequestOrigin = RequestOrigin.API,
    slack_workspace_enforces_mfa: bool = False,
) -> PolicyRequest:
    signals = gather_signals(
        source_ip=source_ip,
        token=token,
        oidc=oidc,
        posture_store=posture_store,
        now=now,
        max_posture_age=max_posture_age,
        requester=requester,
        origin=origin,
        slack_workspace_enforces_mfa=slack_workspace_enforces_mfa,
    )
    return PolicyRequest(
        principal=principal_for(role, token, requester),
        database=database,
        db_user=db_user,
        requested_minutes=requested_minutes,
        signals=signals,
        at=now,
    )
