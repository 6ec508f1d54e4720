"""A human's MFA and groups reach the decision only through a verified ID token of the company IdP."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest

from accessctl.grants import evaluate_request
from accessctl.models import Outcome
from accessctl.policy import PolicyEngine
from tests.conftest import ACCOUNT_ID, Estate
from tests.integration.test_api_handler import api, call  # noqa: F401 - the fixture is used by name
from tests.policy.test_oidc import AUDIENCE, OTHER_IDP_KEY, RSA_KEY, idp  # noqa: F401
from tests.support.template import PROJECT_ROOT

SUPPORT = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/support-engineer/alice"


@pytest.fixture
def extra_api_env(idp: str) -> dict[str, str]:  # noqa: F811 - idp is a fixture
    return {"OIDC_ISSUER": idp, "OIDC_AUDIENCE": AUDIENCE}


def id_token(issuer: str, *, key: Any = RSA_KEY, **claims: Any) -> str:
    from accessctl.models import utc_now

    now = utc_now()
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "alice",
        "email": "alice@example.com",
        "iat": int((now - timedelta(minutes=1)).timestamp()),
        "auth_time": int((now - timedelta(minutes=2)).timestamp()),
        "exp": int((now + timedelta(minutes=30)).timestamp()),
        "amr": ["pwd", "mfa"],
        "groups": ["support"],
    }
    payload.update(claims)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "rsa-1"})


def submit_as_alice(api: ModuleType, token: str) -> tuple[int, Any]:  # noqa: F811
    body = {"database": "orders-demo", "db_user": "app_ro", "duration_minutes": 30, "reason": "INC-1234"}
    return call(
        api,
        "api_post_request.json",
        body=body,
        principal=SUPPORT,
        headers={"Content-Type": "application/json", "X-Accessctl-Id-Token": token},
    )


def with_idp(estate: Estate, issuer: str) -> Any:
    """The evaluating function's dependencies, configured with the same IdP as the API's."""
    settings = estate.deps.settings.model_copy(update={"oidc_issuer": issuer, "oidc_audience": AUDIENCE})
    return replace(estate.deps, settings=settings)


@pytest.fixture
def shipped_policies() -> PolicyEngine:
    return PolicyEngine.from_directory(Path(PROJECT_ROOT / "policies"))


def test_given_a_verified_token_with_mfa_when_a_human_asks_then_the_decision_rests_on_it(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    idp: str,  # noqa: F811
    shipped_policies: PolicyEngine,
) -> None:
    estate.role("support-engineer")

    status, answer = submit_as_alice(api, id_token(idp))

    assert status == 202, answer
    record = estate.deps.grants.get(answer["request_id"])
    assert record.id_token is not None and record.id_token["subject"] == "alice"
    assert "token" not in json.dumps(record.id_token).lower().replace("id_token", "")
    decision = evaluate_request(answer["request_id"], shipped_policies, with_idp(estate, idp))
    assert decision.outcome == Outcome.ALLOW, decision.reason
    assert decision.signals["mfa"]["value"] is True
    assert "oidc" in decision.signals["mfa"]["source"]


def test_given_a_verified_token_without_mfa_when_a_human_asks_production_then_denied_naming_mfa(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    idp: str,  # noqa: F811
    shipped_policies: PolicyEngine,
) -> None:
    estate.role("support-engineer")

    _, answer = submit_as_alice(api, id_token(idp, amr=["pwd"]))
    decision = evaluate_request(answer["request_id"], shipped_policies, with_idp(estate, idp))

    assert decision.outcome == Outcome.DENY
    assert "MFA" in decision.reason


@pytest.mark.parametrize(
    "forge",
    [
        lambda issuer: id_token(issuer, key=OTHER_IDP_KEY),
        lambda issuer: id_token(issuer, aud="someone-else"),
        lambda issuer: id_token("https://other-idp.example", key=RSA_KEY),
        lambda issuer: id_token(issuer, exp=1),
        lambda issuer: jwt.encode({"iss": issuer, "aud": AUDIENCE, "sub": "alice"}, None, algorithm="none"),
    ],
    ids=["bad signature", "wrong audience", "wrong issuer", "expired", "alg none"],
)
def test_given_a_bad_id_token_when_submitted_then_401_and_nothing_is_recorded(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    idp: str,  # noqa: F811
    forge: Any,
) -> None:
    estate.role("support-engineer")

    status, answer = submit_as_alice(api, forge(idp))

    assert status == 401, answer
    assert estate.session.client("dynamodb").scan(TableName="grants")["Count"] == 0
