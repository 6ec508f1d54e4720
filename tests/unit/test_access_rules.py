"""The decision seam: allow, deny with a reason, clamp to the rule's maximum."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from accessctl.access_rules import AccessRules, decide, load_access_rules
from accessctl.models import Outcome
from tests.support.template import PROJECT_ROOT
from tests.unit.test_grant_policy import target

RULES = AccessRules.model_validate(
    {
        "rules": [
            {
                "id": "orders",
                "roles": ["orders-service"],
                "databases": ["orders-prod"],
                "db_users": ["app_rw"],
                "max_minutes": 15,
            }
        ]
    }
)


def _decide(
    role: str = "orders-service", database: str = "orders-prod", db_user: str = "app_rw", minutes: int = 10, **kw
):  # type: ignore[no-untyped-def]
    return decide(
        RULES,
        role_name=role,
        database=database,
        db_user=db_user,
        requested_minutes=minutes,
        target=kw.get("target", target(identifier=database)),
        ceiling_minutes=kw.get("ceiling", 720),
    )


def test_given_a_matching_rule_when_deciding_then_access_is_allowed_for_the_requested_time() -> None:
    decision = _decide()
    assert decision.outcome == Outcome.ALLOW
    assert decision.rule_id == "orders"
    assert decision.granted_minutes == 10


def test_given_a_request_longer_than_the_rule_when_deciding_then_it_is_clamped_and_says_so() -> None:
    decision = _decide(minutes=120)
    assert decision.granted_minutes == 15
    assert "clamped from 120 to 15" in decision.reason


def test_given_a_global_ceiling_below_the_rule_when_deciding_then_the_ceiling_wins() -> None:
    assert _decide(minutes=15, ceiling=5).granted_minutes == 5


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"role": "other-service"}, "no access rule allows role other-service"),
        ({"db_user": "admin"}, "as admin"),
        ({"database": "billing-prod"}, "to connect to billing-prod"),
        ({"target": None}, "does not exist"),
        ({"target": target(iam_auth_enabled=False)}, "IAM database authentication is disabled"),
    ],
)
def test_given_no_allowing_rule_when_deciding_then_it_is_denied_with_a_reason(kwargs: dict, reason: str) -> None:  # type: ignore[type-arg]
    decision = _decide(**kwargs)
    assert decision.outcome == Outcome.DENY
    assert reason in decision.reason
    assert decision.granted_minutes is None


def test_given_the_shipped_rules_file_when_loaded_then_it_is_valid() -> None:
    rules = load_access_rules(PROJECT_ROOT / "functions" / "evaluate_request" / "access_rules.yaml")
    assert rules.rules


def test_given_a_rule_with_a_wildcard_user_when_loaded_then_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [{id: x, roles: [a], databases: [d], db_users: ['*'], max_minutes: 5}]")
    with pytest.raises(ValidationError):
        load_access_rules(path)
