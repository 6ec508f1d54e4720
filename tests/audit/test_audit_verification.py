"""Asynchronous verification: POST /audit/verifications, the verify function, GET the report."""

from __future__ import annotations

import json
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from accessctl.models import AuditEventType
from tests.audit.support import at, delete_link, delete_record, write
from tests.audit.test_audit_api import ADMIN, _get
from tests.conftest import Estate
from tests.integration.test_api_handler import ORDERS_ROLE, api, call  # noqa: F401
from tests.support.handlers import FakeLambdaContext, load_handler

DAYS = ["2026-06-01", "2026-06-02", "2026-06-03"]


@pytest.fixture
def extra_api_env() -> dict[str, str]:
    return {"VERIFY_FUNCTION_NAME": "verify-audit"}


@pytest.fixture
def lambda_service(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:  # noqa: F811
    """Lambda as the API sees it: an Event invocation of the verify function runs its real handler."""
    from accessctl.dependencies import default_dependencies

    worker = load_handler("verify_audit")
    invoked: list[dict[str, Any]] = []

    def invoke(FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        invoked.append({"function": FunctionName, "type": InvocationType})
        worker.lambda_handler(json.loads(Payload), FakeLambdaContext())
        return {"StatusCode": 202}

    monkeypatch.setattr(default_dependencies().lambda_client, "invoke", invoke)
    return invoked


@pytest.fixture
def records(estate: Estate) -> list[dict[str, Any]]:
    table = estate.deps.audit.table
    estate.role("security-admin")
    # Three records a day in one stream (one subject)
    return [write(table, f"{day}T10:00:0{n}.000000Z", "req-1", retention_days=0) for day in DAYS for n in range(3)]


def _post(api: ModuleType, body: dict[str, Any], principal: str = ADMIN) -> tuple[int, Any]:  # noqa: F811
    return call(
        api,
        "api_post_request.json",
        body=body,
        principal=principal,
        path="/audit/verifications",
        resource="/audit/verifications",
    )


def _read(api: ModuleType, verification_id: str) -> tuple[int, Any]:  # noqa: F811
    path = f"/audit/verifications/{verification_id}"
    return call(
        api,
        "api_get_request.json",
        principal=ADMIN,
        path=path,
        resource="/audit/verifications/{verification_id}",
        pathParameters={"verification_id": verification_id},
    )


def test_given_many_days_when_verified_asynchronously_then_the_report_is_recorded_and_readable(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    lambda_service: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> None:
    # When an admin starts a verification of three days
    status, started = _post(api, {"since": f"{DAYS[0]}T00:00:00Z", "until": f"{DAYS[-1]}T23:59:59Z"})

    # Then it is accepted at once, and the verify function was invoked asynchronously
    assert status == 202 and started["status"] == "RUNNING"
    assert lambda_service == [{"function": "verify-audit", "type": "Event"}]
    # And its report can be read, and both the request and the report are on the audit trail
    status, done = _read(api, started["verification_id"])
    assert status == 200 and done["status"] == "DONE" and done["requested_by"] == ADMIN
    assert done["report"]["ok"] and done["report"]["records"] == 9
    kinds = [e.event_type for e in estate.deps.audit.for_subject(f"audit-verify/{started['verification_id']}")]
    assert sorted(kinds) == [AuditEventType.AUDIT_VERIFIED, AuditEventType.AUDIT_VERIFY_REQUESTED]


def test_given_a_deleted_record_when_verified_asynchronously_then_the_report_names_it(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    lambda_service: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> None:
    table = estate.deps.audit.table
    delete_record(table, records[4])
    delete_link(table, records[4])

    _, started = _post(api, {"since": f"{DAYS[0]}T00:00:00Z", "until": f"{DAYS[-1]}T23:59:59Z"})
    _, done = _read(api, started["verification_id"])

    assert not done["report"]["ok"] and done["report"]["first_break"]["kind"] == "missing"
    assert done["report"]["first_break"]["stream"] == records[4]["stream"]


def test_given_a_verification_without_a_result_for_long_then_it_is_failed(
    estate: Estate, records: list[dict[str, Any]]
) -> None:
    from accessctl.audit_verification import get_verification

    requested = estate.deps.audit.append(
        AuditEventType.AUDIT_VERIFY_REQUESTED,
        subject="audit-verify/v-1",
        actor=ADMIN,
        details={"since": DAYS[0], "until": DAYS[-1], "anchored": False},
    )

    assert get_verification("v-1", estate.deps, now=at(requested.at) + timedelta(minutes=5)).status == "RUNNING"
    assert get_verification("v-1", estate.deps, now=at(requested.at) + timedelta(hours=2)).status == "FAILED"


def test_given_a_non_admin_when_starting_a_verification_then_forbidden(
    api: ModuleType,  # noqa: F811
    lambda_service: list[dict[str, Any]],
) -> None:
    status, _ = _post(api, {}, principal=ORDERS_ROLE)

    assert status == 403 and lambda_service == []


def test_given_an_unknown_verification_when_read_then_not_found(api: ModuleType, estate: Estate) -> None:  # noqa: F811
    estate.role("security-admin")

    status, _ = _get(api, "/audit/verifications/00000000-0000-4000-8000-000000000000", {}, ADMIN)

    assert status == 404
