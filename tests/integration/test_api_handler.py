"""The API function, called with API Gateway events (from events/) against the emulated account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ACCOUNT_ID, Estate
from tests.support.events import load_event
from tests.support.handlers import FakeLambdaContext, load_handler

ORDERS_ROLE = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/task-1"


@pytest.fixture
def extra_api_env() -> dict[str, str]:
    """More environment for the API function (a test module overrides this fixture)."""
    return {}


@pytest.fixture
def api(estate: Estate, monkeypatch: pytest.MonkeyPatch, extra_api_env: dict[str, str]) -> Iterator[ModuleType]:
    from accessctl import aws, config, dependencies

    settings = estate.deps.settings
    for name, value in {
        **extra_api_env,
        "GRANTS_TABLE": settings.grants_table,
        "AUDIT_TABLE": settings.audit_table,
        "IDEMPOTENCY_TABLE": settings.idempotency_table,
        "STATE_MACHINE_ARN": settings.state_machine_arn,
        "REVOKE_FUNCTION_NAME": "revoke",
        "ADMIN_ROLE_ARNS": f"arn:aws:iam::{ACCOUNT_ID}:role/security-admin",
    }.items():
        monkeypatch.setenv(name, str(value))
    for cached in (config.get_settings, dependencies.default_dependencies, aws.client, aws.resource):
        cached.cache_clear()
    estate.role("orders-service")
    estate.postgres("orders-demo")
    yield load_handler("api")
    for cached in (config.get_settings, dependencies.default_dependencies, aws.client, aws.resource):
        cached.cache_clear()


def call(
    api: ModuleType, event_name: str, body: Any = None, principal: str = ORDERS_ROLE, **overrides: Any
) -> tuple[int, Any]:
    event = load_event(event_name, **overrides)
    event["requestContext"]["identity"]["userArn"] = principal
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    response = api.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def test_given_a_valid_signed_request_when_posted_then_it_is_accepted_and_readable(api: ModuleType) -> None:
    status, answer = call(api, "api_post_request.json")

    assert status == 202
    assert answer["status"] == "PENDING"
    status, view = call(
        api,
        "api_get_request.json",
        pathParameters={"request_id": answer["request_id"]},
        path=f"/requests/{answer['request_id']}",
    )
    assert status == 200
    assert view["principal_arn"] == ORDERS_ROLE
    assert view["database"] == "orders-demo"
    assert view.get("source_ip", True)


def test_given_the_same_idempotency_key_when_posted_twice_then_one_request_exists(api: ModuleType) -> None:
    _, first = call(api, "api_post_request.json")
    _, second = call(api, "api_post_request.json")

    assert first["request_id"] == second["request_id"]


def test_given_a_reused_key_with_another_body_when_posted_then_it_is_a_conflict(api: ModuleType) -> None:
    call(api, "api_post_request.json")
    body = json.loads(load_event("api_post_request.json")["body"])

    status, answer = call(api, "api_post_request.json", body={**body, "duration_minutes": 5})

    assert status == 409
    assert "idempotency key" in answer["message"]


BAD_BODIES = {
    "wildcard db user": {"db_user": "*"},
    "dotdot db user": {"db_user": ".."},
    "another account's ARN as database": {"database": "arn:aws:rds:us-east-1:210987654321:db:orders"},
    "forged principal": {"principal_arn": "arn:aws:iam::123456789012:role/security-admin"},
    "forged role": {"role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/security-admin"},
    "zero minutes": {"duration_minutes": 0},
}


@pytest.mark.parametrize("change", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_given_a_bad_body_when_posted_then_422_and_nothing_is_recorded(
    api: ModuleType, estate: Estate, change: dict[str, Any]
) -> None:
    body = {**json.loads(load_event("api_post_request.json")["body"]), **change}

    status, answer = call(api, "api_post_request.json", body=body)

    assert status == 422
    assert answer["detail"]
    assert estate.session.client("dynamodb").scan(TableName="grants")["Count"] == 0
    assert estate.grant_policies() == []


def test_given_a_body_that_is_not_json_when_posted_then_it_is_refused(api: ModuleType, estate: Estate) -> None:
    status, _ = call(api, "api_post_request.json", body="{not json")

    assert 400 <= status < 500
    assert estate.session.client("dynamodb").scan(TableName="grants")["Count"] == 0


@pytest.mark.parametrize(
    ("principal", "status", "message"),
    [
        (f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/unknown-role/s1", 403, "does not exist"),
        ("arn:aws:sts::210987654321:assumed-role/orders-service/s1", 403, "account 210987654321"),
        (f"arn:aws:iam::{ACCOUNT_ID}:user/alice", 403, "IAM roles"),
        ("", 401, "not signed"),
    ],
    ids=["unknown role", "another account", "IAM user", "unsigned"],
)
def test_given_a_caller_out_of_scope_when_posting_then_refused(
    api: ModuleType, estate: Estate, principal: str, status: int, message: str
) -> None:
    got, answer = call(api, "api_post_request.json", principal=principal)

    assert got == status
    assert message in answer["message"]
    assert estate.session.client("dynamodb").scan(TableName="grants")["Count"] == 0


def test_given_someone_elses_request_when_read_then_it_is_not_found(api: ModuleType, estate: Estate) -> None:
    _, answer = call(api, "api_post_request.json")
    estate.role("support-engineer")

    status, _ = call(
        api,
        "api_get_request.json",
        principal=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/support-engineer/bob",
        pathParameters={"request_id": answer["request_id"]},
        path=f"/requests/{answer['request_id']}",
    )

    assert status == 404


def test_given_a_malformed_request_id_when_read_then_it_is_refused(api: ModuleType) -> None:
    status, _ = call(api, "api_get_request.json", pathParameters={"request_id": "../etc"}, path="/requests/..%2Fetc")

    assert status == 422


def test_given_a_non_admin_when_listing_another_roles_grants_then_forbidden(api: ModuleType) -> None:
    status, answer = call(
        api,
        "api_list_grants.json",
        queryStringParameters={"principal": f"arn:aws:iam::{ACCOUNT_ID}:role/someone-else"},
        multiValueQueryStringParameters={"principal": [f"arn:aws:iam::{ACCOUNT_ID}:role/someone-else"]},
    )

    assert status == 403
    assert "admins" in answer["message"]


def test_given_no_grants_when_listing_then_an_empty_page(api: ModuleType) -> None:
    status, answer = call(api, "api_list_grants.json")

    assert status == 200
    assert answer == {"grants": [], "next_token": None}
