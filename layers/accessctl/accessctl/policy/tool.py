"""Policy tooling: ``validate`` a policy folder and ``test`` it against a table of examples.

    python -m accessctl.policy.tool validate policies/
    python -m accessctl.policy.tool test policies/ [policies/tests.yaml]

Exit status 0 when everything passes, 1 when something does not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accessctl.models import MAX_REQUEST_MINUTES
from accessctl.policy.compiler import Problem, compile_policies
from accessctl.policy.engine import PolicyEngine
from accessctl.policy.model import HumanPrincipal, PolicyDecision, PolicyOutcome, PolicyRequest, WorkloadPrincipal
from accessctl.signals.database import DEFAULT_ENVIRONMENT, DatabaseFacts
from accessctl.signals.model import RequestSignals, Signal
from accessctl.signals.workload import PRINCIPAL_TYPE_TAG, RoleFacts

TEST_SOURCE = "policy test case"
TEST_ACCOUNT = "123456789012"


def validate(policies_dir: Path) -> list[Problem]:
    """Every problem with a policy folder: Cedar syntax, schema validation, annotations."""
    _, problems = compile_policies(policies_dir)
    return problems


# ------------------------------------------------------------------ the test table


class CasePrincipal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    role_tags: dict[str, str] = Field(default_factory=dict)
    user: str | None = Field(default=None, description="A human with a verified ID token (its subject).")
    issuer: str = "https://idp.example.com"
    human_without_token: bool = Field(default=False, description="A human-facing role that sent no ID token.")
    groups: list[str] = Field(default_factory=list)


class CaseDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    managed: bool
    compliant: bool
    os_version: str = "test"
    last_check_in_age_seconds: int = 0


class CaseSignals(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_ip: str | None = None
    mfa: bool | None = None
    mfa_age_seconds: int | None = None
    device: CaseDevice | None = None


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: PolicyOutcome
    granted_minutes: int | None = None
    rule: str | None = None
    matched: list[str] | None = None
    approver_group: str | None = None
    approvals: int | None = None
    break_glass: bool | None = None
    reason_contains: list[str] | str | None = None
    missing_signals: list[str] | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    principal: CasePrincipal
    database: str
    environment: str = DEFAULT_ENVIRONMENT
    database_tags: dict[str, str] = Field(default_factory=dict)
    db_user: str
    minutes: int
    at: datetime
    signals: CaseSignals = Field(default_factory=CaseSignals)
    ceiling: int = MAX_REQUEST_MINUTES
    expect: Expectation

    def request(self) -> PolicyRequest:
        p = self.principal
        tags = dict(p.role_tags)
        if p.human_without_token:
            tags[PRINCIPAL_TYPE_TAG] = "human"
        role = RoleFacts(
            name=p.role, arn=f"arn:aws:iam::{TEST_ACCOUNT}:role/{p.role}", account_id=TEST_ACCOUNT, tags=tags
        )
        principal: HumanPrincipal | WorkloadPrincipal
        values: dict[str, Signal] = {}
        if p.user is not None:
            principal = HumanPrincipal(subject=p.user, issuer=p.issuer, verified=True, role=role)
            values["groups"] = Signal.of(sorted(p.groups), TEST_SOURCE)
        elif p.human_without_token:
            principal = HumanPrincipal(subject=f"unverified:{p.role}", issuer="", verified=False, role=role)
        else:
            principal = WorkloadPrincipal(role=role)
        given = self.signals
        if given.source_ip is not None:
            values["source_ip"] = Signal.of(given.source_ip, TEST_SOURCE, note=f"your address is {given.source_ip}")
        if given.mfa is not None:
            note = "the test's ID token shows MFA" if given.mfa else "your ID token has no MFA claim"
            values["mfa"] = Signal.of(given.mfa, TEST_SOURCE, note=note)
        if given.mfa_age_seconds is not None:
            values["mfa_age_seconds"] = Signal.of(given.mfa_age_seconds, TEST_SOURCE)
        if given.device is not None:
            device = given.device
            state = f"{'managed' if device.managed else 'not managed'}, {'compliant' if device.compliant else 'not compliant'}"
            values["device"] = Signal.of(device.model_dump(), TEST_SOURCE, note=f"your device: {state}")
        return PolicyRequest(
            principal=principal,
            database=DatabaseFacts(
                identifier=self.database, environment=self.environment, engine="postgres", tags=self.database_tags
            ),
            db_user=self.db_user,
            requested_minutes=self.minutes,
            signals=RequestSignals(**values),
            at=self.at,
        )


class TestTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[Case] = Field(min_length=1)


class CaseResult(BaseModel):
    name: str
    passed: bool
    failures: list[str] = Field(default_factory=list)
    decision: PolicyDecision | None = None


def _compare(expect: Expectation, decision: PolicyDecision) -> list[str]:
    failures: list[str] = []

    def check(what: str, wanted: Any, actual: Any) -> None:
        if wanted is not None and wanted != actual:
            failures.append(f"{what}: expected {wanted!r}, got {actual!r}")

    check("outcome", expect.outcome, decision.outcome)
    check("granted_minutes", expect.granted_minutes, decision.granted_minutes)
    check("rule", expect.rule, decision.rule_id)
    check("matched", sorted(expect.matched) if expect.matched is not None else None, decision.matched_rule_ids)
    check("approver_group", expect.approver_group, decision.approver_group)
    check("approvals", expect.approvals, decision.approvals_required)
    check("break_glass", expect.break_glass, decision.break_glass)
    check("missing_signals", expect.missing_signals, decision.missing_signals)
    wanted_texts = [expect.reason_contains] if isinstance(expect.reason_contains, str) else expect.reason_contains
    for text in wanted_texts or []:
        if text not in decision.summary:
            failures.append(f"reason: expected it to contain {text!r}, got {decision.summary!r}")
    return failures


def load_test_table(tests_yaml: Path) -> TestTable:
    return TestTable.model_validate(yaml.safe_load(tests_yaml.read_text(encoding="utf-8")))


def run_tests(policies_dir: Path, tests_yaml: Path) -> list[CaseResult]:
    """Decide every example request and compare with what the table expects (like ``opa test``).

    Raises :class:`~accessctl.policy.compiler.PolicyLoadError` if the policies do not load and
    pydantic's ValidationError if the table is malformed.
    """
    engine = PolicyEngine.from_directory(policies_dir)
    results: list[CaseResult] = []
    for case in load_test_table(tests_yaml).cases:
        decision = engine.decide(case.request(), ceiling_minutes=case.ceiling)
        failures = _compare(case.expect, decision)
        results.append(CaseResult(name=case.name, passed=not failures, failures=failures, decision=decision))
    return results


# ------------------------------------------------------------------ command line


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        print(f"  {problem}")


def _cmd_validate(policies_dir: Path) -> int:
    problems = validate(policies_dir)
    if problems:
        print(f"{policies_dir}: {len(problems)} problem(s)")
        _print_problems(problems)
        return 1
    print(f"{policies_dir}: valid")
    return 0


def _cmd_test(policies_dir: Path, tests_yaml: Path, verbose: bool) -> int:
    problems = validate(policies_dir)
    if problems:
        print(f"{policies_dir}: {len(problems)} problem(s); no tests run")
        _print_problems(problems)
        return 1
    try:
        results = run_tests(policies_dir, tests_yaml)
    except (ValidationError, yaml.YAMLError, OSError) as error:
        print(f"{tests_yaml}: cannot read the test table: {error}")
        return 1
    for result in results:
        mark: Literal["PASS", "FAIL"] = "PASS" if result.passed else "FAIL"
        print(f"{mark} {result.name}")
        for failure in result.failures:
            print(f"     {failure}")
        if verbose and result.decision is not None:
            print(f"     -> {result.decision.outcome}: {result.decision.summary}")
    failed = sum(1 for result in results if not result.passed)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accessctl policy", description="Validate and test accessctl policies.")
    commands = parser.add_subparsers(dest="command", required=True)
    validate_parser = commands.add_parser("validate", help="Cedar syntax, schema and annotation checks")
    validate_parser.add_argument("policies_dir", type=Path)
    test_parser = commands.add_parser("test", help="decide a table of example requests and compare")
    test_parser.add_argument("policies_dir", type=Path)
    test_parser.add_argument("tests_yaml", type=Path, nargs="?", help="default: POLICIES_DIR/tests.yaml")
    test_parser.add_argument("-v", "--verbose", action="store_true", help="print every decision")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _cmd_validate(args.policies_dir)
    return _cmd_test(args.policies_dir, args.tests_yaml or args.policies_dir / "tests.yaml", args.verbose)


if __name__ == "__main__":
    sys.exit(main())
