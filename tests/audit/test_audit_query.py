"""Audit queries: index choice, filters, paging, and who had access to a database when."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Estate

ALICE = "arn:aws:sts::123456789012:assumed-role/alice/s"
BOB = "arn:aws:sts::123456789012:assumed-role/bob/s"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(audit: Any, minutes: float, kind: str, subject: str, **fields: Any) -> None:
    """Write a record at a chosen time through the chained writer (as AuditLog does)."""
    from accessctl.audit import AuditChain, event_item
    from accessctl.models import AuditEvent

    event = AuditEvent(
        event_id=f"{subject}-{kind}-{minutes}",
        event_type=kind,
        at=_at(minutes),
        subject=subject,
        actor=fields.pop("actor", "workflow"),
        **fields,
    )
    AuditChain(audit.table.meta.client, audit.table.name, typed=False).append([event_item(event)])


@pytest.fixture
def audit(estate: Estate) -> Any:
    audit = estate.deps.audit
    grant = {"database": "orders", "db_user": "app_ro"}
    # g1: alice 0..60, revoked early at 30; g2: bob 100..160, extended to 200; g3: alice on billing.
    _record(audit, 0, "GRANT_ISSUED", "g1", principal_arn=ALICE, **grant, details={"expires_at": _at(60)})
    _record(audit, 30, "GRANT_REVOKED", "g1", principal_arn=ALICE, **grant, outcome="REVOKED")
    _record(audit, 99, "BREAK_GLASS_USED", "g2", principal_arn=BOB, **grant, outcome="HIGH")
    _record(audit, 100, "GRANT_ISSUED", "g2", principal_arn=BOB, **grant, details={"expires_at": _at(160)})
    _record(
        audit,
        150,
        "GRANT_EXTENDED",
        "g2",
        principal_arn=BOB,
        **grant,
        details={"grant_id": "g2", "expires_at": _at(200)},
    )
    _record(audit, 10, "GRANT_ISSUED", "g3", principal_arn=ALICE, database="billing", details={"expires_at": _at(20)})
    for n in range(25):
        _record(
            audit,
            300 + n,
            "REQUEST_DECIDED",
            f"r{n}",
            principal_arn=ALICE,
            database="orders",
            outcome="DENY" if n % 2 else "ALLOW",
            reason=f"reason {n}",
        )
    for n in range(3):
        _record(audit, 400 + n, "REMEDIATION_APPLIED", "security-group/sg-1", actor="remediator")
    return audit


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (20, 40, ["g1"]),  # g1 live (revoked at 30)
        (31, 99, []),  # g1 revoked, g2 not yet issued
        (170, 190, ["g2"]),  # g2 only by its extension
        (201, 250, []),
        (-10, 500, ["g1", "g2"]),
    ],
)
def test_given_grants_when_asking_who_had_access_then_overlapping_grants_answer(
    audit: Any, start: int, end: int, expected: list[str]
) -> None:
    from accessctl.audit_query import access_between

    answer = access_between(audit.table, "orders", _at(start), _at(end))

    assert [grant.grant_id for grant in answer.grants] == expected
    if "g2" in expected:
        g2 = next(grant for grant in answer.grants if grant.grant_id == "g2")
        assert g2.break_glass and g2.ends_at == _at(200) and g2.principal_arn == BOB


def test_given_many_records_when_paging_then_every_one_comes_once_in_order(audit: Any) -> None:
    from accessctl.audit_query import AuditFilter, query

    flt = AuditFilter(principal_arn=ALICE, event_type="REQUEST_DECIDED", since=_at(-1), until=_at(1000), limit=7)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = query(audit.table, flt, token)
        pages += 1
        seen += [event.subject for event in page.events]
        token = page.next_token
        if token is None:
            break

    assert seen == [f"r{n}" for n in range(25)] and pages == 4


def test_given_filters_when_querying_then_only_matching_records(audit: Any) -> None:
    from accessctl.audit_query import AuditFilter, query_all

    denied = query_all(audit.table, AuditFilter(principal_arn=ALICE, outcome="DENY", since=_at(-1), until=_at(1000)))
    window = query_all(audit.table, AuditFilter(database="orders", since=_at(0), until=_at(100)))
    glass = query_all(audit.table, AuditFilter(event_type="BREAK_GLASS_USED", since=_at(-1), until=_at(1000)))
    sg = query_all(audit.table, AuditFilter(subject="security-group/sg-1", since=_at(-1), until=_at(1000)))
    everything = query_all(audit.table, AuditFilter(since=_at(-1), until=_at(1000), limit=5))

    assert len(denied) == 12 and {event.outcome for event in denied} == {"DENY"}
    assert [event.event_type for event in window] == [
        "GRANT_ISSUED",
        "GRANT_REVOKED",
        "BREAK_GLASS_USED",
        "GRANT_ISSUED",
    ]
    assert [event.subject for event in glass] == ["g2"]
    assert len(sg) == 3 and {event.event_type for event in sg} == {"REMEDIATION_APPLIED"}
    assert len(everything) == 34


@pytest.mark.parametrize("token", ["garbage!", "e30=", json.dumps({"partition": 1})])
def test_given_a_garbage_token_when_querying_then_bad_request(audit: Any, token: str) -> None:
    from accessctl.audit_query import AuditFilter, query
    from accessctl.errors import BadRequestError

    with pytest.raises(BadRequestError):
        query(audit.table, AuditFilter(principal_arn=ALICE), token)


def test_given_approved_grants_when_asking_who_had_access_then_each_names_who_approved_it_and_its_extensions(
    estate: Estate,
) -> None:
    from accessctl.audit_query import access_between

    # Given g4 approved by carol and extended by a request dave approved; g5 made without approval
    audit = estate.deps.audit
    grant = {"database": "payments", "db_user": "app_ro", "principal_arn": ALICE}
    _record(audit, 0, "GRANT_ISSUED", "g4", **grant, details={"expires_at": _at(60), "approved_by": ["carol"]})
    extension = {"grant_id": "g4", "extended_by": "r9", "expires_at": _at(90), "approved_by": ["dave", "carol"]}
    _record(audit, 50, "GRANT_EXTENDED", "g4", **grant, details=extension)
    _record(audit, 5, "GRANT_ISSUED", "g5", **grant, details={"expires_at": _at(20), "approved_by": []})

    # When asked who had access in the first 70 minutes (the extension's included)
    answer = access_between(audit.table, "payments", _at(0), _at(70))

    # Then each grant names its approvers, the extension's included, each once
    assert {grant.grant_id: grant.approved_by for grant in answer.grants} == {"g4": ["carol", "dave"], "g5": []}
