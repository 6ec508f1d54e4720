"""Everything one requester asked for, across sessions and channels, with one indexed query.

A record about a request names its ``requester`` (schema version 4): the company identity of the
person a Slack or chat-ops bot request was made for, else the signer's IAM role ARN, resolved
server-side. ``ByRequester`` answers "everything Y requested" where ``ByPrincipal`` (one signed
session) cannot; records written before version 4 have no ``requester`` and still verify.
"""

from __future__ import annotations

from typing import Any

import pytest

from accessctl.access_requests import submit_request
from accessctl.audit import AuditChain, event_item, requester_of, verify
from accessctl.audit_query import AuditFilter, query, query_all
from accessctl.grants import evaluate_request
from accessctl.models import (
    AccessRequestSubmission,
    AuditEvent,
    AuditEventType,
    Caller,
    Requester,
    RequestOrigin,
    SlackOrigin,
)
from tests.audit.test_audit_paths import orders, policy_engine  # noqa: F401
from tests.conftest import ACCOUNT_ID, Estate
from tests.support.requests import workload_caller

ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/workloads/orders-service"
DANA = "dana@example.com"


def _caller(deps: Any, role: str, session: str) -> Caller:
    return workload_caller(deps.iam, role, session)


def _ask(deps: Any, caller: Caller, db_user: str, reason: str, requester: Requester | None = None) -> str:
    body = {"database": "orders-prod", "db_user": db_user, "duration_minutes": 10, "reason": reason}
    origin = RequestOrigin.SLACK if requester else RequestOrigin.API
    answer = submit_request(
        AccessRequestSubmission.model_validate(body), caller, deps, requester=requester, origin=origin
    )
    evaluate_request(answer.request_id, policy_engine(), deps)
    return answer.request_id


@pytest.fixture
def asked(estate: Estate, orders: None) -> dict[str, str]:  # noqa: F811
    """Two sessions of orders-service ask (one allowed, one denied); Dana asks from Slack, and her
    directory role is orders-service too, so the grant would go to the same role."""
    deps = estate.deps
    dana = Requester(
        identity=DANA,
        groups=["payments"],
        source="directory",
        slack=SlackOrigin(team_id="T0001", user_id="U0042", channel_id="C0001"),
    )
    return {
        "task-1": _ask(deps, _caller(deps, "orders-service", "task-1"), "app_rw", "nightly reconcile"),
        "task-2": _ask(deps, _caller(deps, "orders-service", "task-2"), "admin", "schema change"),
        "dana": _ask(deps, _caller(deps, "orders-service", "dana"), "app_rw", "incident 42", dana),
    }


class CountingTable:
    """The audit table, recording which index each Query used."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.indexes: list[str | None] = []

    def query(self, **request: Any) -> Any:
        self.indexes.append(request.get("IndexName"))
        return self._table.query(**request)


def test_given_two_sessions_of_a_role_and_a_slack_request_when_querying_by_the_role_then_both_sessions_and_only_them(
    estate: Estate, asked: dict[str, str]
) -> None:
    table = CountingTable(estate.deps.audit.table)

    events = query_all(table, AuditFilter(requester=ROLE_ARN))

    assert [(event.subject, event.event_type) for event in events] == [
        (asked["task-1"], AuditEventType.REQUEST_SUBMITTED),
        (asked["task-1"], AuditEventType.REQUEST_DECIDED),
        (asked["task-2"], AuditEventType.REQUEST_SUBMITTED),
        (asked["task-2"], AuditEventType.REQUEST_DECIDED),
    ]
    decided = [event for event in events if event.event_type == AuditEventType.REQUEST_DECIDED]
    assert [event.outcome for event in decided] == ["ALLOW", "DENY"] and all(event.reason for event in decided)
    assert {event.principal_arn for event in events} == {
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/task-1",
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/task-2",
    }
    assert set(table.indexes) == {"ByRequester"}


def test_given_a_slack_request_for_a_person_when_querying_by_their_identity_then_their_records_only(
    estate: Estate, asked: dict[str, str]
) -> None:
    events = query_all(estate.deps.audit.table, AuditFilter(requester=DANA))

    assert [(event.subject, event.event_type) for event in events] == [
        (asked["dana"], AuditEventType.REQUEST_SUBMITTED),
        (asked["dana"], AuditEventType.REQUEST_DECIDED),
    ]
    assert all(event.requester == DANA and event.details["requested_for"] == DANA for event in events)
    assert all(event.schema_version == 4 for event in events)


def test_given_a_requester_with_more_records_than_a_page_when_paging_then_every_record_comes_once_in_order(
    estate: Estate, asked: dict[str, str]
) -> None:
    table = estate.deps.audit.table
    expected = query_all(table, AuditFilter(requester=ROLE_ARN))

    seen: list[AuditEvent] = []
    token: str | None = None
    pages = 0
    while True:
        page = query(table, AuditFilter(requester=ROLE_ARN, limit=1), token)
        seen += page.events
        pages += 1
        token = page.next_token
        if token is None:
            break

    assert [event.event_id for event in seen] == [event.event_id for event in expected]
    assert len(seen) == 4 and pages == 4


def test_given_a_requester_and_another_filter_when_querying_then_both_apply(
    estate: Estate, asked: dict[str, str]
) -> None:
    events = query_all(estate.deps.audit.table, AuditFilter(requester=ROLE_ARN, outcome="DENY"))

    assert [(event.subject, event.event_type) for event in events] == [
        (asked["task-2"], AuditEventType.REQUEST_DECIDED)
    ]


def test_given_a_request_whose_role_arn_is_missing_then_the_requester_is_derived_from_the_signed_session(
    estate: Estate, asked: dict[str, str]
) -> None:
    request = estate.deps.grants.get(asked["task-1"])

    assert requester_of(request) == ROLE_ARN
    assert requester_of(request.model_copy(update={"role_arn": ""})) == (
        f"arn:aws:iam::{ACCOUNT_ID}:role/orders-service"
    )
    assert requester_of(None) is None


def test_given_records_of_earlier_schema_versions_without_a_requester_then_the_chain_still_verifies(
    estate: Estate, asked: dict[str, str]
) -> None:
    table = estate.deps.audit.table
    current = query_all(table, AuditFilter(requester=ROLE_ARN))
    older = [
        AuditEvent(
            schema_version=version,
            event_id=f"old-{version}",
            event_type=AuditEventType.REQUEST_SUBMITTED,
            at=current[-1].at,
            subject=asked["task-1"],
            actor="workflow",
            principal_arn=current[0].principal_arn,
        )
        for version in (1, 2, 3)
    ]
    items = [event_item(event) for event in older]
    assert all("requester" not in item for item in items)
    AuditChain(table.meta.client, table.name, typed=False).append(items)

    report = verify(table, current[0].at, current[-1].at)

    assert report.ok, report.first_break
    assert report.records == 6 + 3
    by_id = {event.event_id: event for event in query_all(table, AuditFilter(subject=asked["task-1"]))}
    assert [(by_id[f"old-{v}"].schema_version, by_id[f"old-{v}"].requester) for v in (1, 2, 3)] == [
        (1, None),
        (2, None),
        (3, None),
    ]


def test_given_a_record_whose_requester_is_edited_then_verification_finds_it(
    estate: Estate, asked: dict[str, str]
) -> None:
    table = estate.deps.audit.table
    (submitted, *_) = query_all(table, AuditFilter(requester=DANA))
    item = table.get_item(Key={"subject": submitted.subject, "event_key": f"{submitted.at}#{submitted.event_id}"})
    table.put_item(Item={**item["Item"], "requester": ROLE_ARN})

    report = verify(table, submitted.at, submitted.at)

    assert not report.ok and report.first_break is not None and report.first_break.kind == "edited"
