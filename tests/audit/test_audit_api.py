"""GET /audit, /audit/access and /audit/verify: admins only, validated, paged."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ACCOUNT_ID, Estate
from tests.integration.test_api_handler import ORDERS_ROLE, api, call, extra_api_env  # noqa: F401

ADMIN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/security-admin/alice"


def _get(api: ModuleType, path: str, query: dict[str, str], principal: str) -> tuple[int, Any]:  # noqa: F811
    return call(
        api,
        "api_list_grants.json",
        principal=principal,
        path=path,
        resource=path,
        queryStringParameters=query,
        multiValueQueryStringParameters={name: [value] for name, value in query.items()},
    )


@pytest.fixture
def admin(estate: Estate) -> str:
    estate.role("security-admin")
    return ADMIN


@pytest.mark.parametrize("path", ["/audit", "/audit/verify", "/audit/access"])
def test_given_a_non_admin_when_reading_the_audit_log_then_forbidden(api: ModuleType, path: str) -> None:  # noqa: F811
    query = {"database": "orders-demo", "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}

    status, answer = _get(api, path, query if path.endswith("access") else {}, ORDERS_ROLE)

    assert status == 403 and "admins" in answer["message"]


def test_given_an_admin_when_querying_then_records_page_and_verify(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    admin: str,
) -> None:
    from accessctl.models import AuditEventType

    events = [
        estate.deps.audit.append(AuditEventType.REQUEST_SUBMITTED, subject=f"req-{n}", actor=admin) for n in range(5)
    ]
    since = events[0].at

    status, page = _get(api, "/audit", {"since": since, "limit": "2"}, admin)
    assert status == 200 and len(page["events"]) == 2 and page["next_token"]
    status, rest = _get(api, "/audit", {"since": since, "limit": "10", "next_token": page["next_token"]}, admin)
    assert status == 200 and len(rest["events"]) == 3 and rest["next_token"] is None

    status, report = _get(api, "/audit/verify", {"since": since}, admin)
    assert status == 200 and report["ok"] is True and report["records"] == 5


def test_given_an_admin_when_querying_by_requester_then_that_requesters_records_page(
    api: ModuleType,  # noqa: F811
    estate: Estate,
    admin: str,
) -> None:
    from accessctl.audit import AuditChain, event_item
    from accessctl.models import AuditEvent, AuditEventType

    role = f"arn:aws:iam::{ACCOUNT_ID}:role/orders-service"
    first = estate.deps.audit.append(AuditEventType.REQUEST_SUBMITTED, subject="other", actor=admin)
    records = [
        AuditEvent(
            event_id=f"e-{n}",
            event_type=AuditEventType.REQUEST_DECIDED,
            at=first.at,
            subject=f"req-{n}",
            actor="workflow",
            principal_arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/task-{n}",
            requester=role if n < 3 else "dana@example.com",
            outcome="DENY",
            reason=f"reason {n}",
        )
        for n in range(4)
    ]
    table = estate.deps.audit.table
    AuditChain(table.meta.client, table.name, typed=False).append([event_item(event) for event in records])

    status, page = _get(api, "/audit", {"requester": role, "since": first.at, "limit": "2"}, admin)
    assert status == 200 and [event["subject"] for event in page["events"]] == ["req-0", "req-1"]
    query = {"requester": role, "since": first.at, "next_token": page["next_token"]}
    status, rest = _get(api, "/audit", query, admin)
    assert status == 200 and [event["subject"] for event in rest["events"]] == ["req-2"]
    assert all(event["requester"] == role for event in page["events"] + rest["events"])


@pytest.mark.parametrize(
    "query",
    [
        {"next_token": "not-a-token"},
        {"since": "yesterday"},
        {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
    ],
)
def test_given_garbage_when_querying_then_bad_request(api: ModuleType, admin: str, query: dict[str, str]) -> None:  # noqa: F811
    status, _ = _get(api, "/audit", query, admin)

    assert status == 400


def test_given_no_audit_export_when_verifying_anchored_then_bad_request(api: ModuleType, admin: str) -> None:  # noqa: F811
    status, answer = _get(api, "/audit/verify", {"anchored": "true"}, admin)

    assert status == 400 and "AuditExport" in answer["message"]
