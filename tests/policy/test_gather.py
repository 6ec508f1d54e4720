"""From the providers to a decision: IAM role tags, RDS tags, a verified token, the source IP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from accessctl.databases import describe_database
from accessctl.policy import PolicyEngine, PolicyOutcome, build_policy_request
from accessctl.signals.database import database_facts
from accessctl.signals.oidc import OidcSettings, VerifiedIdToken
from accessctl.signals.workload import PRINCIPAL_TYPE_TAG, role_facts
from tests.conftest import ACCOUNT_ID, REGION, TRUST_POLICY, Estate

NOW = datetime(2027, 3, 24, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
OIDC = OidcSettings(issuer="https://idp.example.com", audience="accessctl")


def _setup(estate: Estate) -> None:
    iam = estate.session.client("iam")
    iam.create_role(
        RoleName="dba-access",
        AssumeRolePolicyDocument=TRUST_POLICY,
        Tags=[{"Key": PRINCIPAL_TYPE_TAG, "Value": "human"}],
    )
    iam.create_role(
        RoleName="orders-service", AssumeRolePolicyDocument=TRUST_POLICY, Tags=[{"Key": "team", "Value": "orders"}]
    )
    estate.postgres("orders-prod")
    estate.session.client("rds").add_tags_to_resource(
        ResourceName=f"arn:aws:rds:{REGION}:{ACCOUNT_ID}:db:orders-prod",
        Tags=[{"Key": "environment", "Value": "production"}],
    )


def _facts(estate: Estate, role_name: str):  # type: ignore[no-untyped-def]
    deps = estate.deps
    target = describe_database(deps.rds, "orders-prod", region=REGION, account_id=ACCOUNT_ID, partition="aws")
    assert target is not None
    return role_facts(deps.iam, role_name), database_facts(deps.rds, target)


def test_given_a_human_facing_role_without_a_token_when_deciding_then_it_is_denied_naming_mfa(
    estate: Estate, engine: PolicyEngine
) -> None:
    _setup(estate)
    role, database = _facts(estate, "dba-access")
    request = build_policy_request(
        role=role,
        database=database,
        db_user="dba_rw",
        requested_minutes=30,
        now=NOW,
        source_ip="203.0.113.9",
        oidc=OIDC,
    )
    decision = engine.decide(request)
    assert decision.outcome == PolicyOutcome.DENY
    assert decision.missing_signals == ["mfa"]
    assert "no verified ID token: MFA unknown" in decision.summary


def test_given_a_verified_dba_token_when_deciding_then_approval_is_needed(estate: Estate, engine: PolicyEngine) -> None:
    _setup(estate)
    role, database = _facts(estate, "dba-access")
    token = VerifiedIdToken(
        issuer=OIDC.issuer,
        subject="alice",
        audience="accessctl",
        issued_at=NOW,
        expires_at=NOW,
        amr=["mfa"],
        groups=["dba"],
        key_id="k",
        algorithm="RS256",
    )
    request = build_policy_request(
        role=role,
        database=database,
        db_user="dba_rw",
        requested_minutes=30,
        now=NOW,
        source_ip="203.0.113.9",
        token=token,
        oidc=OIDC,
    )
    decision = engine.decide(request)
    # No posture store configured: the device signal is unknown, so dba-prod cannot match.
    assert decision.outcome == PolicyOutcome.DENY
    assert decision.missing_signals == ["device"]
    assert json.dumps(decision.signals["mfa"]).startswith('{"value": true, "source": "oidc id_token')


def test_given_the_orders_service_in_its_vpc_when_deciding_then_it_is_allowed(
    estate: Estate, engine: PolicyEngine
) -> None:
    _setup(estate)
    role, database = _facts(estate, "orders-service")
    assert database.environment == "production"
    assert role.tags == {"team": "orders"}
    request = build_policy_request(
        role=role, database=database, db_user="app_rw", requested_minutes=15, now=NOW, source_ip="10.40.0.12"
    )
    assert engine.decide(request).outcome == PolicyOutcome.ALLOW
