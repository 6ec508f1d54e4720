"""Plain-words explanations: which condition of which rule failed, and what the signal said."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from accessctl.models import to_iso
from accessctl.policy.compiler import TARGET_SUFFIX, Clause, CompiledRule
from accessctl.policy.model import HumanPrincipal, PolicyRequest
from accessctl.signals.model import SIGNAL_NAMES

if TYPE_CHECKING:
    from accessctl.policy.cedar_request import PartitionClock


@dataclass
class Explanation:
    reasons: list[str] = field(default_factory=list)
    missing_signals: set[str] = field(default_factory=set)


def _attribute_detail(name: str, request: PolicyRequest, clock: PartitionClock, missing: set[str]) -> str:
    if name in SIGNAL_NAMES:
        signal = request.signals.signal(name)
        if not signal.present:
            missing.add(name)
        return signal.describe()
    if name == "window":
        return f"it is {clock.local.describe()}"
    if name == "local":
        return f"it is {clock.local.describe()}"
    if name == "requested_minutes":
        return f"you asked for {request.requested_minutes} minutes"
    if name == "now":
        return f"it is {to_iso(request.at)}"
    return f"context {name}"


def clause_failure(clause: Clause, request: PolicyRequest, clock: PartitionClock, missing: set[str]) -> str:
    """``MFA (your ID token has no MFA claim)``: the clause's label and what its inputs said."""
    details: list[str] = []
    for name in sorted(clause.context_attributes):
        detail = _attribute_detail(name, request, clock, missing)
        if detail not in details:
            details.append(detail)
    return f"{clause.label} ({'; '.join(details)})" if details else str(clause.label)


def explain_rule(
    rule: CompiledRule, satisfied: set[str], request: PolicyRequest, clock: PartitionClock, explanation: Explanation
) -> bool:
    """Add why an in-scope permit did not match; False if the rule is not about this request at all."""
    if rule.id + TARGET_SUFFIX not in satisfied:
        return False
    failures = [
        clause_failure(clause, request, clock, explanation.missing_signals)
        for clause in rule.clauses
        if clause.looks_at_context and f"{rule.id}#{clause.position}" not in satisfied
    ]
    if not failures:
        # Every clause holds alone but not together: only possible with clauses that interact.
        failures = ["all of its conditions at once"]
    explanation.reasons.append(f"rule {rule.id} requires " + ", and ".join(failures))
    return True


def nothing_applies(request: PolicyRequest, explanation: Explanation) -> None:
    principal = request.principal
    text = f"no rule allows {principal.describe()} to connect to {request.database.identifier} as {request.db_user}"
    if isinstance(principal, HumanPrincipal) and not request.signals.groups.present:
        text += f" ({request.signals.groups.describe()})"
        explanation.missing_signals.add("groups")
    explanation.reasons.append(text)


def forbid_reason(rule: CompiledRule, request: PolicyRequest, clock: PartitionClock, missing: set[str]) -> str:
    """``Production requires MFA (rule prod-requires-mfa: no verified ID token: MFA unknown)``."""
    details: list[str] = []
    for name in sorted(rule.signals):
        detail = _attribute_detail(name, request, clock, missing)
        if detail not in details:
            details.append(detail)
    suffix = f": {'; '.join(details)}" if details else ""
    return f"{rule.annotations.reason} (rule {rule.id}{suffix})"
