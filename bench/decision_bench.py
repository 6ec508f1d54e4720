"""Decision latency: Cedar (cedarpy) through accessctl's engine vs the same rules in plain Python.

Generates 200 rules (plus the production MFA guardrail) and 1,000 entities, then times 10,000
decisions in process. Prints a table; asserts nothing.

    .venv/bin/python bench/decision_bench.py [--decisions N] [--seed S]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "accessctl"))

import cedarpy  # noqa: E402

from accessctl.policy import HumanPrincipal, PolicyEngine, PolicyOutcome, PolicyRequest, WorkloadPrincipal  # noqa: E402
from accessctl.policy.cedar_request import ACTION, context, partition_clock  # noqa: E402
from accessctl.policy.windows import TimeWindow, window_state  # noqa: E402
from accessctl.signals.clock import zone  # noqa: E402
from accessctl.signals.database import DatabaseFacts  # noqa: E402
from accessctl.signals.model import RequestSignals, Signal  # noqa: E402
from accessctl.signals.workload import RoleFacts  # noqa: E402

RULES = 200
GROUPS, USERS, ROLES, DATABASES, DB_USERS = 50, 400, 150, 100, ("app_ro", "app_rw", "dba_rw")
CIDRS = ("203.0.113.0/24", "10.20.0.0/16", "10.40.0.0/16")
WINDOW = "Mon-Fri 08:00-18:00"
TZ = "Europe/Berlin"
GUARDRAIL = """@id("prod-requires-mfa")
@reason("Production requires MFA")
forbid (principal is User, action == Action::"connect", resource is DbUser)
when { resource.database.environment == "production" }
unless { context has mfa && context.mfa };
"""


@dataclass(frozen=True)
class Rule:
    """One generated rule, for both Cedar (text) and plain Python (fields)."""

    id: str
    group: str | None
    role: str | None
    database: str
    db_user: str
    mfa: bool
    cidr: str | None
    device: bool
    windowed: bool
    max_minutes: int
    approval: bool

    def cedar(self) -> str:
        principal = f'principal is User in Group::"{self.group}"' if self.group else f'principal == Role::"{self.role}"'
        clauses, labels = [], []
        if self.mfa:
            clauses.append("context has mfa && context.mfa")
            labels.append("MFA")
        if self.cidr:
            clauses.append(f'context has source_ip && context.source_ip.isInRange(ip("{self.cidr}"))')
            labels.append(f"an address in {self.cidr}")
        if self.device:
            clauses.append("context has device && context.device.managed && context.device.compliant")
            labels.append("a compliant device")
        if self.windowed:
            clauses.append("context has window && context.window.open")
            labels.append("business hours")
        notes = [f'@id("{self.id}")', f'@max_minutes("{self.max_minutes}")']
        notes.append('@outcome("approval")\n@approver_group("owners")' if self.approval else '@outcome("auto")')
        if labels:
            notes.append(f'@requires("{"; ".join(labels)}")')
        if self.windowed:
            notes.append(f'@timezone("{TZ}")\n@window("{WINDOW}")')
        body = "".join(f"\nwhen {{ {clause} }}" for clause in clauses)
        return (
            "\n".join(notes)
            + f'\npermit ({principal}, action == Action::"connect", resource in Database::"db{self.database}")'
            + f'\nwhen {{ resource.name == "{self.db_user}" }}{body};\n'
        )


def generate_rules(rng: random.Random) -> list[Rule]:
    rules = []
    for index in range(RULES):
        human = index % 3 != 0
        rules.append(
            Rule(
                id=f"rule-{index}",
                group=f"g{rng.randrange(GROUPS)}" if human else None,
                role=None if human else f"svc{rng.randrange(ROLES)}",
                database=str(rng.randrange(DATABASES)),
                db_user=rng.choice(DB_USERS),
                mfa=human and rng.random() < 0.7,
                cidr=rng.choice((None, *CIDRS)),
                device=human and rng.random() < 0.5,
                windowed=human and rng.random() < 0.5,
                max_minutes=rng.choice((15, 30, 60, 120)),
                approval=human and rng.random() < 0.5,
            )
        )
    return rules


@dataclass(frozen=True)
class Ask:
    """One generated request."""

    user: int | None
    role: int
    groups: tuple[str, ...]
    database: int
    db_user: str
    mfa: bool | None
    ip: str
    device_ok: bool | None
    at: datetime
    minutes: int


def generate_asks(rng: random.Random, count: int, rules: list[Rule]) -> list[Ask]:
    start = datetime(2027, 3, 22, 5, 0, tzinfo=UTC)
    user_groups = {user: tuple(f"g{g}" for g in rng.sample(range(GROUPS), 3)) for user in range(USERS)}
    asks = []
    for _ in range(count):
        rule = rng.choice(rules)  # aim near a rule so both allows and denies happen
        human = rule.group is not None
        user = rng.randrange(USERS) if human else None
        groups = (*user_groups[user], rule.group) if human and user is not None and rng.random() < 0.7 else ()
        asks.append(
            Ask(
                user=user,
                role=int(rule.role[3:]) if rule.role else rng.randrange(ROLES),
                groups=tuple(g for g in groups if g),
                database=int(rule.database) if rng.random() < 0.8 else rng.randrange(DATABASES),
                db_user=rule.db_user if rng.random() < 0.8 else rng.choice(DB_USERS),
                mfa=rng.choice((True, True, False, None)) if human else None,
                ip=rng.choice(("203.0.113.7", "10.20.3.4", "10.40.5.6", "198.51.100.1")),
                device_ok=rng.choice((True, True, False, None)) if human else None,
                at=start + timedelta(minutes=rng.randrange(7 * 24 * 60)),
                minutes=rng.choice((15, 30, 60, 90)),
            )
        )
    return asks


def environment_of(database: int) -> str:
    return "production" if database % 2 == 0 else "staging"


def to_request(ask: Ask) -> PolicyRequest:
    role = RoleFacts(
        name=f"svc{ask.role}", arn=f"arn:aws:iam::123456789012:role/svc{ask.role}", account_id="123456789012", tags={}
    )
    values: dict[str, Signal] = {"source_ip": Signal.of(ask.ip, "bench")}
    principal: HumanPrincipal | WorkloadPrincipal
    if ask.user is not None:
        principal = HumanPrincipal(subject=f"user{ask.user}", issuer="https://idp", verified=True, role=role)
        values["groups"] = Signal.of(list(ask.groups), "bench")
        if ask.mfa is not None:
            values["mfa"] = Signal.of(ask.mfa, "bench")
        if ask.device_ok is not None:
            device = {"managed": True, "compliant": ask.device_ok, "os_version": "1", "last_check_in_age_seconds": 5}
            values["device"] = Signal.of(device, "bench")
    else:
        principal = WorkloadPrincipal(role=role)
    return PolicyRequest(
        principal=principal,
        database=DatabaseFacts(
            identifier=f"db{ask.database}", environment=environment_of(ask.database), engine="postgres"
        ),
        db_user=ask.db_user,
        requested_minutes=ask.minutes,
        signals=RequestSignals(**values),
        at=ask.at,
    )


# ------------------------------------------------------------------ plain Python, same rules

_NETWORKS = {cidr: ipaddress.ip_network(cidr) for cidr in CIDRS}
_WINDOW = (TimeWindow.parse(WINDOW),)


def python_decide(rules: list[Rule], ask: Ask) -> PolicyOutcome:  # noqa: C901 (one flat loop, kept readable)
    environment = environment_of(ask.database)
    if ask.user is not None and environment == "production" and ask.mfa is not True:
        return PolicyOutcome.DENY
    window = window_state(_WINDOW, ask.at, zone(TZ))
    address = ipaddress.ip_address(ask.ip)
    database = str(ask.database)
    best: tuple[bool, int] | None = None
    for rule in rules:
        if rule.group is not None:
            if ask.user is None or rule.group not in ask.groups:
                continue
        elif ask.user is not None or rule.role != f"svc{ask.role}":
            continue
        if rule.database != database or rule.db_user != ask.db_user:
            continue
        if rule.mfa and ask.mfa is not True:
            continue
        if rule.cidr and address not in _NETWORKS[rule.cidr]:
            continue
        if rule.device and ask.device_ok is not True:
            continue
        if rule.windowed and not window.open:
            continue
        granted = min(ask.minutes, rule.max_minutes, window.minutes_left if rule.windowed else ask.minutes)
        if granted < 1:
            continue
        key = (rule.approval, -granted)
        best = key if best is None or key < best else best
    if best is None:
        return PolicyOutcome.DENY
    return PolicyOutcome.NEEDS_APPROVAL if best[0] else PolicyOutcome.ALLOW


# ------------------------------------------------------------------ the base graph of 1,000 entities


def base_entities(rng: random.Random) -> list[dict[str, Any]]:
    graph: list[dict[str, Any]] = [
        {"uid": {"type": "Group", "id": f"g{g}"}, "attrs": {}, "parents": []} for g in range(GROUPS)
    ]
    for role in range(ROLES):
        attrs = {"name": f"svc{role}", "account_id": "123456789012"}
        graph.append({"uid": {"type": "Role", "id": f"svc{role}"}, "attrs": attrs, "parents": [], "tags": {}})
    for user in range(USERS):
        parents = [{"type": "Group", "id": f"g{g}"} for g in rng.sample(range(GROUPS), 3)]
        parents.append({"type": "Role", "id": f"svc{rng.randrange(ROLES)}"})
        graph.append(
            {
                "uid": {"type": "User", "id": f"user{user}"},
                "attrs": {"issuer": "https://idp", "verified": True},
                "parents": parents,
            }
        )
    for db in range(DATABASES):
        attrs = {"identifier": f"db{db}", "environment": environment_of(db), "engine": "postgres"}
        graph.append({"uid": {"type": "Database", "id": f"db{db}"}, "attrs": attrs, "parents": [], "tags": {}})
    for index in range(1000 - len(graph)):
        db, name = index % DATABASES, DB_USERS[index // DATABASES % len(DB_USERS)]
        database = {"type": "Database", "id": f"db{db}"}
        graph.append(
            {
                "uid": {"type": "DbUser", "id": f"db{db}/{name}"},
                "attrs": {"name": name, "database": {"__entity": database}},
                "parents": [database],
            }
        )
    return graph


# ------------------------------------------------------------------ timing


def timed(label: str, calls: list[Callable[[], object]]) -> tuple[str, float, float, int]:
    samples = []
    for call in calls:
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return label, statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))], len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rules = generate_rules(rng)
    asks = generate_asks(rng, args.decisions, rules)

    folder = Path(tempfile.mkdtemp(prefix="accessctl-bench-"))
    try:
        shutil.copy(ROOT / "policies" / "schema.cedarschema", folder)
        (folder / "generated.cedar").write_text("\n".join(rule.cedar() for rule in rules))
        (folder / "guardrails.cedar").write_text(GUARDRAIL)
        load_started = time.perf_counter()
        engine = PolicyEngine.from_directory(folder)
        load_ms = (time.perf_counter() - load_started) * 1000
        fast_engine = PolicyEngine(engine.policies, check_requests_against_schema=False)
    finally:
        shutil.rmtree(folder)

    requests = [to_request(ask) for ask in asks]
    graph = cedarpy.Entities.from_json_str(json.dumps(base_entities(rng)))
    schema = engine.policies.schema
    partitions = engine.policies.partitions
    policy_text = "\n".join(rule.cedar() for rule in rules) + GUARDRAIL

    def raw_cedar(request: PolicyRequest, *, parsed: bool = True) -> bool:
        """cedarpy alone: the 1,000-entity graph and the policies parsed once; one call per partition."""
        principal = (
            {"type": "User", "id": request.principal.subject}
            if isinstance(request.principal, HumanPrincipal)
            else {"type": "Role", "id": request.principal.role.name}
        )
        resource = {"type": "DbUser", "id": f"{request.database.identifier}/{request.db_user}"}
        signals = request.signals.cedar_context()
        allowed = False
        for partition in partitions:
            ctx = context(request, partition_clock(request, partition), signals)
            policies: Any = partition.policies if parsed else policy_text
            result = cedarpy.is_authorized(
                {"principal": principal, "action": ACTION, "resource": resource, "context": ctx},
                policies,
                graph,
                schema=schema,
            )
            allowed = allowed or result.allowed
        return allowed

    outcomes = [engine.decide(request).outcome for request in requests]
    agreement = sum(outcome == python_decide(rules, ask) for outcome, ask in zip(outcomes, asks, strict=True)) / len(
        asks
    )
    allowed = sum(outcome != PolicyOutcome.DENY for outcome in outcomes)

    reparse_count = min(len(requests), 300)
    rows = [
        timed("plain Python (same rules)", [lambda a=ask: python_decide(rules, a) for ask in asks]),
        timed(
            "cedarpy only, parsed once, 1,000-entity graph", [lambda r=request: raw_cedar(r) for request in requests]
        ),
        timed(
            f"cedarpy only, policies re-parsed per call (n={reparse_count})",
            [lambda r=request: raw_cedar(r, parsed=False) for request in requests[:reparse_count]],
        ),
        timed("engine.decide (schema check on)", [lambda r=request: engine.decide(r) for request in requests]),
        timed("engine.decide (schema check off)", [lambda r=request: fast_engine.decide(r) for request in requests]),
        timed(
            "engine.decide, allow/approval answers only",
            [lambda r=r: engine.decide(r) for r, o in zip(requests, outcomes, strict=True) if o != PolicyOutcome.DENY],
        ),
        timed(
            "engine.decide, denials only (explained)",
            [lambda r=r: engine.decide(r) for r, o in zip(requests, outcomes, strict=True) if o == PolicyOutcome.DENY],
        ),
    ]
    baseline = rows[0][1]
    print(
        f"{len(rules)} rules + 1 forbid in {len(partitions)} partition(s); 1,000 entities; {len(asks)} decisions "
        f"({allowed} allow/approval, {len(asks) - allowed} deny); engine and plain Python agree on {agreement:.1%}; "
        f"policies loaded and validated in {load_ms:.0f} ms"
    )
    print(f"{'path':<58} {'median µs':>10} {'p99 µs':>10} {'n':>7} {'median / Python':>16}")
    for label, median, p99, count in rows:
        print(f"{label:<58} {median:>10.1f} {p99:>10.1f} {count:>7} {median / baseline:>15.1f}x")


if __name__ == "__main__":
    main()
