"""The security engineer's questions, asked of the local stack through the signed API as the CLI asks
them: who had access to a database and who approved it, everything a principal requested in the
last 30 days with decisions and reasons, every remediation on a security group, every break-glass
use; every answer paged, and the JSON lines export."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accessctl.audit import AuditChain, event_item
from accessctl.audit_query import iso
from accessctl.models import AuditEvent
from accessctl_client.cli import main
from accessctl_local import LocalStack
from accessctl_local.estate import Workload, workload
from accessctl_local.provision import DEFAULT_ACCOUNT_ID
from tests.support.stacks import demo_stack

pytestmark = [pytest.mark.e2e]

AUDITOR = "security-auditor"
ALICE = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/orders-service/alice"
BOB = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/reporting-job/bob"
ORDERS_ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/workloads/orders-service"
DANA = "dana@example.com"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


def _at(minutes: int) -> str:
    return iso(START + timedelta(minutes=minutes))


@dataclass
class Trail:
    auditor: Workload
    credentials: dict[str, str]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    admin = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/workloads/{AUDITOR}"
    with demo_stack({"AdminRoleArns": admin, "LogLevel": "WARNING"}) as running:
        yield running


@pytest.fixture(scope="module")
def trail(stack: LocalStack) -> Trail:
    """Records in the deployed AuditTable, chained as the functions write them."""
    grant = {"database": "orders-demo", "db_user": "app_rw"}
    events: list[AuditEvent] = []

    def record(minutes: int, kind: str, subject: str, **fields: Any) -> None:
        events.append(
            AuditEvent(
                event_id=f"{subject}-{kind}-{minutes}",
                event_type=kind,
                at=_at(minutes),
                subject=subject,
                actor=fields.pop("actor", "workflow"),
                **fields,
            )
        )

    # g1: alice, approved by carol, 0..30; g2: bob by break-glass, 100..160
    record(
        0, "GRANT_ISSUED", "g1", principal_arn=ALICE, **grant, details={"expires_at": _at(60), "approved_by": ["carol"]}
    )
    record(30, "GRANT_REVOKED", "g1", principal_arn=ALICE, **grant, outcome="REVOKED", reason="EARLY")
    record(99, "BREAK_GLASS_USED", "g2", principal_arn=BOB, **grant, outcome="HIGH", details={"rule_id": "oncall"})
    record(100, "GRANT_ISSUED", "g2", principal_arn=BOB, **grant, details={"expires_at": _at(160), "approved_by": []})
    # alice's five decided requests, alternately allowed and denied, each with its reason
    for n in range(5):
        outcome = "DENY" if n % 2 else "ALLOW"
        record(200 + n, "REQUEST_DECIDED", f"r{n}", principal_arn=ALICE, **grant, outcome=outcome, reason=f"reason {n}")
    # three remediations on sg-1, one on sg-2
    for n in range(3):
        record(300 + n, "REMEDIATION_APPLIED", "security-group/sg-1", actor="remediator", outcome="FIXED")
    record(310, "REMEDIATION_APPLIED", "security-group/sg-2", actor="remediator", outcome="FIXED")
    # orders-service asks from two sessions (task-7 and task-9); Dana asks from Slack, her
    # directory role being orders-service too: each record names who asked as its requester
    billing = {"database": "billing-demo", "db_user": "app_ro"}
    for n, session in enumerate(("task-7", "task-9", "task-7")):
        principal = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/orders-service/{session}"
        subject, outcome = f"o{n}", "DENY" if n == 1 else "ALLOW"
        record(400 + 2 * n, "REQUEST_SUBMITTED", subject, principal_arn=principal, requester=ORDERS_ROLE, **billing)
        record(
            401 + 2 * n,
            "REQUEST_DECIDED",
            subject,
            principal_arn=principal,
            requester=ORDERS_ROLE,
            **billing,
            outcome=outcome,
            reason=f"orders {n}",
        )
    slack = {"requested_for": DANA, "origin": "slack", "relayed_by": "slack:T0001"}
    dana = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/orders-service/dana"
    record(410, "REQUEST_SUBMITTED", "d0", principal_arn=dana, requester=DANA, **billing, details=slack)
    record(411, "REQUEST_DECIDED", "d0", principal_arn=dana, requester=DANA, **billing, outcome="ALLOW", details=slack)
    AuditChain(stack.client("dynamodb"), stack.resources["AuditTable"], retention_days=0).append(
        [event_item(event) for event in events]
    )
    auditor = workload(stack, AUDITOR, opted_in=False, session_name="auditor")
    return Trail(auditor, auditor.credentials)


def _paged(trail: Trail, **filters: Any) -> tuple[list[dict[str, Any]], int]:
    """Every record matching ``filters``, two a page, and how many pages that took."""
    events: list[dict[str, Any]] = []
    token, pages = None, 0
    while True:
        page = trail.auditor.client.audit_page(token, limit=2, since=_at(-60), **filters)
        events += page["events"]
        pages += 1
        token = page.get("next_token")
        if not token:
            return events, pages


def test_who_had_access_to_a_database_between_two_instants_and_who_approved_it(trail: Trail) -> None:
    answer = trail.auditor.client.audit_access("orders-demo", _at(10), _at(120))

    grants = {grant["grant_id"]: grant for grant in answer["grants"]}
    assert set(grants) == {"g1", "g2"}
    assert grants["g1"]["approved_by"] == ["carol"] and grants["g1"]["ends_at"] == _at(30)
    assert grants["g2"]["break_glass"] is True and grants["g2"]["principal_arn"] == BOB


def test_everything_a_principal_requested_with_decisions_and_reasons_paged(trail: Trail) -> None:
    events, pages = _paged(trail, principal=ALICE, type="REQUEST_DECIDED")

    assert [(event["subject"], event["outcome"], event["reason"]) for event in events] == [
        (f"r{n}", "DENY" if n % 2 else "ALLOW", f"reason {n}") for n in range(5)
    ]
    assert pages == 3

    denied, _ = _paged(trail, principal=ALICE, outcome="DENY")
    assert [event["subject"] for event in denied] == ["r1", "r3"]


def test_everything_a_role_requested_across_its_sessions_with_decisions_and_reasons_paged(trail: Trail) -> None:
    events, pages = _paged(trail, requester=ORDERS_ROLE)

    assert [(event["subject"], event["event_type"]) for event in events] == [
        (f"o{n}", kind) for n in range(3) for kind in ("REQUEST_SUBMITTED", "REQUEST_DECIDED")
    ]
    assert pages == 3
    assert {event["principal_arn"].rsplit("/", 1)[1] for event in events} == {"task-7", "task-9"}
    decided = [event for event in events if event["event_type"] == "REQUEST_DECIDED"]
    assert [(event["outcome"], event["reason"]) for event in decided] == [
        ("ALLOW", "orders 0"),
        ("DENY", "orders 1"),
        ("ALLOW", "orders 2"),
    ]


def test_everything_a_person_requested_through_slack_paged(trail: Trail) -> None:
    events, _ = _paged(trail, requester=DANA)

    assert [(event["subject"], event["event_type"], event["outcome"]) for event in events] == [
        ("d0", "REQUEST_SUBMITTED", None),
        ("d0", "REQUEST_DECIDED", "ALLOW"),
    ]
    assert all(event["details"]["requested_for"] == DANA for event in events)


def test_everything_a_person_requested_from_the_cli(
    stack: LocalStack, trail: Trail, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed_cli(stack, trail, monkeypatch)

    code = main(
        ["audit", "query", "--requester", ORDERS_ROLE, "--type", "REQUEST_DECIDED", "--since", _at(0), "--json"]
    )

    assert code == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(event["subject"], event["outcome"]) for event in events] == [
        ("o0", "ALLOW"),
        ("o1", "DENY"),
        ("o2", "ALLOW"),
    ]


def test_every_remediation_on_a_security_group_paged(trail: Trail) -> None:
    events, pages = _paged(trail, subject="security-group/sg-1")

    assert [event["event_type"] for event in events] == ["REMEDIATION_APPLIED"] * 3
    assert pages == 2


def test_every_break_glass_use(trail: Trail) -> None:
    events, _ = _paged(trail, type="BREAK_GLASS_USED")

    assert [(event["subject"], event["principal_arn"], event["outcome"]) for event in events] == [("g2", BOB, "HIGH")]


def _signed_cli(stack: LocalStack, trail: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's environment: the local stack's API, signed with the auditor's credentials."""
    for name, value in {
        "ACCESSCTL_API_URL": stack.api_url,
        "AWS_REGION": stack.region,
        "AWS_ACCESS_KEY_ID": trail.credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": trail.credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": trail.credentials["SessionToken"],
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert os.environ["ACCESSCTL_API_URL"] == stack.api_url


def test_a_time_range_and_database_exported_as_json_lines_from_the_cli(
    stack: LocalStack, trail: Trail, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed_cli(stack, trail, monkeypatch)

    code = main(["audit", "query", "--database", "orders-demo", "--since", _at(0), "--until", _at(150), "--jsonl"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert [record["event_type"] for record in records] == [
        "GRANT_ISSUED",
        "GRANT_REVOKED",
        "BREAK_GLASS_USED",
        "GRANT_ISSUED",
    ]
    assert all(record["record_hash"] and record["stream"] for record in records)
