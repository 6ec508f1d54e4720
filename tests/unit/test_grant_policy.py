"""The grant policy builder and checker: the last gate before IAM."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from accessctl.errors import UnsafeGrantError
from accessctl.grant_policy import build_grant_policy, check_grant_policy, dbuser_arn, grant_policy_problems
from accessctl.models import DatabaseTarget

RESOURCE = "arn:aws:rds-db:eu-central-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXY1/app_rw"
EXPIRES = "2026-12-03T17:00:00Z"


def target(**overrides: Any) -> DatabaseTarget:
    values: dict[str, Any] = {
        "identifier": "orders-prod",
        "kind": "instance",
        "resource_id": "db-ABCDEFGHIJKLMNOPQRSTUVWXY1",
        "engine": "postgres",
        "region": "eu-central-1",
        "account_id": "123456789012",
        "partition": "aws",
        "iam_auth_enabled": True,
    }
    values.update(overrides)
    return DatabaseTarget(**values)


def test_given_a_database_and_user_when_building_the_arn_then_it_names_exactly_that_dbuser() -> None:
    assert dbuser_arn(target(), "app_rw") == RESOURCE


def test_given_an_aurora_cluster_when_building_the_arn_then_the_cluster_resource_id_is_used() -> None:
    arn = dbuser_arn(target(kind="cluster", resource_id="cluster-ABCDEF123"), "app_ro")
    assert arn.endswith(":dbuser:cluster-ABCDEF123/app_ro")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resource_id", "*"),
        ("resource_id", "db-abc/../x"),
        ("region", "*"),
        ("account_id", "*"),
        ("partition", "aws*"),
    ],
)
def test_given_a_target_with_a_wildcard_part_when_building_the_arn_then_it_is_refused(field: str, value: str) -> None:
    with pytest.raises(UnsafeGrantError):
        dbuser_arn(target(**{field: value}), "app_rw")


@pytest.mark.parametrize("db_user", ["*", "app*", "..", "app/../admin", "a b", ""])
def test_given_a_wild_db_user_when_building_the_arn_then_it_is_refused(db_user: str) -> None:
    with pytest.raises(UnsafeGrantError):
        dbuser_arn(target(), db_user)


def test_given_valid_parts_when_building_the_policy_then_it_allows_one_connect_until_expiry() -> None:
    document = build_grant_policy(RESOURCE, EXPIRES)

    (statement,) = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"] == RESOURCE
    assert statement["Condition"] == {"DateLessThan": {"aws:CurrentTime": EXPIRES}}


def _tampered(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(build_grant_policy(RESOURCE, EXPIRES))
    change(document["Statement"][0], document)
    return document


TAMPERINGS = {
    "condition removed": lambda s, d: s.pop("Condition"),
    "resource widened": lambda s, d: s.update(Resource=RESOURCE.rsplit("/", 1)[0] + "/*"),
    "second resource": lambda s, d: s.update(Resource=[RESOURCE, RESOURCE.replace("app_rw", "admin")]),
    "action widened": lambda s, d: s.update(Action="rds-db:*"),
    "extra action": lambda s, d: s.update(Action=["rds-db:connect", "iam:PassRole"]),
    "not action": lambda s, d: s.update(NotAction="iam:*"),
    "deny effect": lambda s, d: s.update(Effect="Deny"),
    "expiry moved": lambda s, d: s.update(Condition={"DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"}}),
    "extra condition operator": lambda s, d: s["Condition"].update(Bool={"aws:SecureTransport": "true"}),
    "second statement": lambda s, d: d["Statement"].append(dict(s)),
}


@pytest.mark.parametrize("tampering", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_given_a_tampered_document_when_checked_then_it_is_refused(tampering: Any) -> None:
    document = _tampered(tampering)

    with pytest.raises(UnsafeGrantError):
        check_grant_policy(document, expected_resource_arn=RESOURCE, expected_expires_at=EXPIRES)


def test_given_the_issued_document_as_iam_returns_it_when_checked_then_it_passes() -> None:
    import json

    assert grant_policy_problems(json.dumps(build_grant_policy(RESOURCE, EXPIRES)), RESOURCE, EXPIRES) == []


def test_given_a_document_that_is_not_json_when_checked_then_the_problem_is_named() -> None:
    assert grant_policy_problems("{not json") == ["the document is not JSON"]
