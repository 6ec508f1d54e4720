"""Fixtures for the policy engine and the signal providers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from accessctl.policy import HumanPrincipal, PolicyEngine, PolicyRequest, WorkloadPrincipal
from accessctl.signals.database import DatabaseFacts
from accessctl.signals.model import RequestSignals, Signal
from accessctl.signals.workload import RoleFacts
from tests.support.template import PROJECT_ROOT

POLICIES_DIR = PROJECT_ROOT / "policies"
ACCOUNT = "123456789012"
# A Wednesday, 10:00 in Berlin (CET): inside the DBA window.
BUSINESS_HOURS = datetime.fromisoformat("2027-03-24T10:00:00+01:00")
COMPLIANT_DEVICE = {"managed": True, "compliant": True, "os_version": "14.5", "last_check_in_age_seconds": 60}


@pytest.fixture(scope="session")
def engine() -> PolicyEngine:
    return PolicyEngine.from_directory(POLICIES_DIR)


def role(name: str, **tags: str) -> RoleFacts:
    return RoleFacts(name=name, arn=f"arn:aws:iam::{ACCOUNT}:role/{name}", account_id=ACCOUNT, tags=dict(tags))


def database(identifier: str = "orders-prod", environment: str = "production") -> DatabaseFacts:
    return DatabaseFacts(identifier=identifier, environment=environment, engine="postgres")


def human_request(
    *,
    groups: list[str] | None = None,
    db_user: str = "dba_rw",
    minutes: int = 60,
    at: datetime = BUSINESS_HOURS,
    target: DatabaseFacts | None = None,
    **signals: Signal,
) -> PolicyRequest:
    """A DBA with every signal good, unless a signal is overridden."""
    values: dict[str, Signal] = {
        "mfa": Signal.of(True, "test id_token amr", note="your ID token shows MFA"),
        "groups": Signal.of(groups if groups is not None else ["dba"], "test id_token groups"),
        "source_ip": Signal.of("203.0.113.10", "test requestContext", note="your address is 203.0.113.10"),
        "device": Signal.of(COMPLIANT_DEVICE, "test posture store", note="device laptop-1: managed, compliant"),
    }
    values.update(signals)
    return PolicyRequest(
        principal=HumanPrincipal(subject="alice", issuer="https://idp.example.com", verified=True, role=role("dba")),
        database=target or database(),
        db_user=db_user,
        requested_minutes=minutes,
        signals=RequestSignals(**values),
        at=at,
    )


def workload_request(
    name: str = "orders-service",
    *,
    source_ip: str | None = "10.40.1.2",
    target: DatabaseFacts | None = None,
    db_user: str = "app_rw",
    minutes: int = 15,
) -> PolicyRequest:
    signals = RequestSignals(source_ip=Signal.of(source_ip, "test requestContext")) if source_ip else RequestSignals()
    return PolicyRequest(
        principal=WorkloadPrincipal(role=role(name)),
        database=target or database(),
        db_user=db_user,
        requested_minutes=minutes,
        signals=signals,
        at=BUSINESS_HOURS,
    )


PolicyWriter = Callable[..., Path]


@pytest.fixture
def policy_dir(tmp_path: Path) -> PolicyWriter:
    """A policy folder with the shipped schema and the given policy files."""

    def write(**files: str) -> Path:
        (tmp_path / "schema.cedarschema").write_text((POLICIES_DIR / "schema.cedarschema").read_text())
        for name, text in files.items():
            (tmp_path / f"{name}.cedar").write_text(text)
        return tmp_path

    return write


def annotations(**values: Any) -> str:
    return "\n".join(f'@{key}("{value}")' for key, value in values.items())
