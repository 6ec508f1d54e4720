"""Loading policies: parse, validate against the schema, check annotations, and compile.

Compiling splits the policy set into *partitions*, one per (time zone, window) pair: Cedar has no
time zones, so each partition is evaluated with the local time (and window state) of its own
zone. Together the partitions are exactly the original set (Cedar's rules: any satisfied forbid
denies; otherwise any satisfied permit allows). Each partition also gets a *diagnostic* set:
per permit, its scope with only the clauses that do not look at the context (``<id>#target``),
and its scope with each context clause alone (``<id>#<n>``), so a denial can say which
condition of which rule failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy
from pydantic import ValidationError

from accessctl.policy.annotations import RuleAnnotations, parse_annotations
from accessctl.policy.windows import TimeWindow
from accessctl.signals.model import SIGNAL_NAMES

SCHEMA_FILE = "schema.cedarschema"
POLICY_GLOB = "*.cedar"
TARGET_SUFFIX = "#target"
# Context attributes accessctl computes for every request (never missing).
COMPUTED_CONTEXT = frozenset({"requested_minutes", "now", "local", "window"})


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file} [{self.rule_id}]" if self.rule_id else self.file
        return f"{where}: {self.message}"


class PolicyLoadError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("policies do not load:\n" + "\n".join(f"  {problem}" for problem in problems))


@dataclass(frozen=True)
class Clause:
    position: int  # index in the policy's conditions
    kind: str  # "when" | "unless"
    body: dict[str, Any]
    context_attributes: frozenset[str]
    label: str | None  # from @requires, for clauses that look at the context

    @property
    def looks_at_context(self) -> bool:
        return self.label is not None

    @property
    def signals(self) -> frozenset[str]:
        return self.context_attributes & frozenset(SIGNAL_NAMES)


@dataclass(frozen=True)
class CompiledRule:
    annotations: RuleAnnotations
    est: dict[str, Any]
    clauses: tuple[Clause, ...]
    file: str

    @property
    def id(self) -> str:
        return self.annotations.id

    @property
    def is_forbid(self) -> bool:
        return self.annotations.effect == "forbid"

    @property
    def signals(self) -> frozenset[str]:
        return frozenset().union(*(clause.signals for clause in self.clauses))

    @property
    def partition_key(self) -> str:
        return partition_key(self.annotations.timezone, self.annotations.window)


def partition_key(timezone: str, windows: tuple[TimeWindow, ...]) -> str:
    return timezone + "|" + ";".join(window.spec for window in windows)


@dataclass(frozen=True)
class Partition:
    key: str
    timezone: str
    windows: tuple[TimeWindow, ...]
    rule_ids: tuple[str, ...]
    policies: cedarpy.PolicySet
    diagnostics: cedarpy.PolicySet | None


@dataclass(frozen=True)
class CompiledPolicies:
    rules: dict[str, CompiledRule]
    partitions: tuple[Partition, ...]
    schema: cedarpy.Schema
    source: str
    files: tuple[str, ...] = field(default=())


# ------------------------------------------------------------------ reading the EST


def _context_attributes(node: Any, found: set[str]) -> bool:
    """Collect the top-level context attributes an expression reads; True if it uses the context at all."""
    uses = False
    if isinstance(node, dict):
        if node.get("Var") == "context":
            return True
        for operator in (".", "has"):
            operand = node.get(operator)
            if isinstance(operand, dict) and operand.get("left") == {"Var": "context"}:
                found.add(str(operand.get("attr")))
        for value in node.values():
            uses = _context_attributes(value, found) or uses
    elif isinstance(node, list):
        for value in node:
            uses = _context_attributes(value, found) or uses
    return uses


def _clauses(est: dict[str, Any], labels: tuple[str, ...]) -> tuple[list[Clause], str | None]:
    """The policy's conditions; an error text when the @requires labels do not fit them."""
    raw: list[tuple[str, dict[str, Any], frozenset[str], bool]] = []
    for condition in est.get("conditions", []):
        found: set[str] = set()
        uses = _context_attributes(condition["body"], found)
        raw.append((condition["kind"], condition["body"], frozenset(found), uses))
    context_count = sum(1 for *_, uses in raw if uses)
    if est["effect"] == "permit" and context_count != len(labels):
        return [], (
            f"@requires has {len(labels)} label(s) but the policy has {context_count} condition(s) that look at "
            "the context: give one label per such when/unless clause, in order"
        )
    clauses: list[Clause] = []
    label_iter = iter(labels)
    for position, (kind, body, attributes, uses) in enumerate(raw):
        label = next(label_iter) if uses and est["effect"] == "permit" else ("(guardrail)" if uses else None)
        clauses.append(Clause(position, kind, body, attributes, label))
    return clauses, None


def _rule_problems(rule: CompiledRule) -> list[str]:
    """Consistency between what a rule's annotations say and what its conditions read."""
    problems: list[str] = []
    read = frozenset().union(*(clause.context_attributes for clause in rule.clauses))
    # Cedar types `context has x` as false for an attribute the schema lacks and accepts the
    # policy; such a condition could never hold, so a typo would silently disable a rule.
    unknown = read - COMPUTED_CONTEXT - frozenset(SIGNAL_NAMES)
    if unknown:
        problems.append(
            f"reads context attribute(s) {sorted(unknown)} that accessctl never provides "
            f"(known: {sorted(COMPUTED_CONTEXT | frozenset(SIGNAL_NAMES))})"
        )
    declared = rule.annotations.signals
    if declared is not None and declared != rule.signals:
        problems.append(
            f"@signals declares {sorted(declared)} but the conditions read {sorted(rule.signals)}: keep them equal"
        )
    if rule.annotations.window and "window" not in read:
        problems.append("@window is declared but no condition checks context.window.open")
    if "window" in read and not rule.annotations.window:
        problems.append("a condition reads context.window but the rule declares no @window")
    if rule.est.get("principal", {}).get("slot") or rule.est.get("resource", {}).get("slot"):
        problems.append("templates (?principal/?resource slots) are not supported")
    return problems


# ------------------------------------------------------------------ loading


def _load_file(path: Path, schema: cedarpy.Schema, problems: list[Problem]) -> list[CompiledRule]:
    text = path.read_text(encoding="utf-8")
    name = path.name
    try:
        est = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as error:
        problems.append(Problem(name, f"does not parse: {error}"))
        return []
    if est.get("templates"):
        problems.append(Problem(name, "templates (?principal/?resource slots) are not supported"))
    validation = cedarpy.validate_policies(text, schema)
    ids = validation.id_annotations_by_policy_id
    for invalid in validation.errors:
        problems.append(Problem(name, invalid.error, ids.get(invalid.policy_id) or invalid.policy_id or None))
    rules: list[CompiledRule] = []
    for position, policy in est.get("staticPolicies", {}).items():
        annotations = policy.get("annotations", {})
        rule_id = annotations.get("id")
        try:
            parsed = parse_annotations(policy["effect"], annotations)
        except ValidationError as error:
            for detail in error.errors():
                where = ".".join(str(part) for part in detail["loc"]) or "annotations"
                message = f"@{where}: {detail['msg']}" if where != "annotations" else detail["msg"]
                problems.append(Problem(name, message, rule_id or position))
            continue
        clauses, label_problem = _clauses(policy, parsed.requires)
        if label_problem:
            problems.append(Problem(name, label_problem, parsed.id))
            continue
        rule = CompiledRule(annotations=parsed, est=policy, clauses=tuple(clauses), file=name)
        problems.extend(Problem(name, message, rule.id) for message in _rule_problems(rule))
        rules.append(rule)
    return rules


def _without_annotations(est: dict[str, Any], conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    policy = {key: value for key, value in est.items() if key != "annotations"}
    if conditions is not None:
        policy["conditions"] = conditions
    return policy


def _policy_set(policies: dict[str, dict[str, Any]]) -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_json_str(
        json.dumps({"staticPolicies": policies, "templates": {}, "templateLinks": []})
    )


def _diagnostic_policies(rule: CompiledRule) -> dict[str, dict[str, Any]]:
    """``<id>#target``: scope + context-free clauses; ``<id>#<n>``: scope + context clause n."""
    conditions = rule.est.get("conditions", [])
    target = [conditions[c.position] for c in rule.clauses if not c.looks_at_context]
    derived = {rule.id + TARGET_SUFFIX: _without_annotations(rule.est, target)}
    for clause in rule.clauses:
        if clause.looks_at_context:
            derived[f"{rule.id}#{clause.position}"] = _without_annotations(rule.est, [conditions[clause.position]])
    return derived


def _partitions(rules: list[CompiledRule]) -> tuple[Partition, ...]:
    grouped: dict[str, list[CompiledRule]] = {}
    for rule in rules:
        grouped.setdefault(rule.partition_key, []).append(rule)
    partitions: list[Partition] = []
    for key, members in sorted(grouped.items()):
        first = members[0].annotations
        diagnostics: dict[str, dict[str, Any]] = {}
        for rule in members:
            if not rule.is_forbid:
                diagnostics.update(_diagnostic_policies(rule))
        partitions.append(
            Partition(
                key=key,
                timezone=first.timezone,
                windows=first.window,
                rule_ids=tuple(rule.id for rule in members),
                policies=_policy_set({rule.id: _without_annotations(rule.est) for rule in members}),
                diagnostics=_policy_set(diagnostics) if diagnostics else None,
            )
        )
    return tuple(partitions)


def compile_policies(policies_dir: Path) -> tuple[CompiledPolicies | None, list[Problem]]:
    """Everything wrong with a policy folder, and the compiled policies if nothing is."""
    problems: list[Problem] = []
    schema_path = policies_dir / SCHEMA_FILE
    if not schema_path.is_file():
        return None, [Problem(SCHEMA_FILE, f"missing in {policies_dir}")]
    try:
        schema = cedarpy.Schema.from_str(schema_path.read_text(encoding="utf-8"))
    except ValueError as error:
        return None, [Problem(SCHEMA_FILE, f"does not parse: {error}")]
    files = sorted(policies_dir.glob(POLICY_GLOB))
    if not files:
        return None, [Problem(str(policies_dir), "contains no *.cedar policy files")]
    rules: dict[str, CompiledRule] = {}
    for path in files:
        for rule in _load_file(path, schema, problems):
            if rule.id in rules:
                problems.append(Problem(path.name, f"@id {rule.id} is also used in {rules[rule.id].file}", rule.id))
            rules[rule.id] = rule
    if problems:
        return None, problems
    compiled = CompiledPolicies(
        rules=rules,
        partitions=_partitions(list(rules.values())),
        schema=schema,
        source=str(policies_dir),
        files=tuple(path.name for path in files),
    )
    return compiled, []


def load_policies(policies_dir: Path) -> CompiledPolicies:
    """Compile a policy folder or raise :class:`PolicyLoadError` listing every problem (fail at cold start)."""
    compiled, problems = compile_policies(policies_dir)
    if compiled is None:
        raise PolicyLoadError(problems or [Problem(str(policies_dir), "could not be loaded")])
    return compiled


_POLICY_IN_ERROR = re.compile(r"policy `([^`]+)`")


def policy_of_error(message: str) -> str | None:
    """The policy id a Cedar evaluation error names, if any."""
    match = _POLICY_IN_ERROR.search(message)
    return match.group(1) if match else None
