"""The decision: Cedar evaluates, accessctl chooses the path, clamps the time and explains.

Conflict resolution (documented in docs and in the report):
1. Any satisfied forbid denies, whatever permits match (break-glass included). A forbid that
   could not be evaluated, or a request Cedar could not build, also denies (fail closed).
2. Among satisfied permits, the one used is, in order: not break-glass (break-glass only when no
   normal rule applies, so it stays rare and loud); auto-approve before approval (both are
   permits the policy authors wrote; the one asking less ceremony applies, like Cedar's "any
   permit suffices"); the longest grant up to the request; fewer approvals; the rule id.
3. Granted minutes = min(requested, rule's @max_minutes, global ceiling, minutes left in the
   rule's @window). A rule whose window has less than one whole minute left cannot be used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cedarpy

from accessctl.models import MAX_REQUEST_MINUTES
from accessctl.policy.cedar_request import (
    ACTION,
    PartitionClock,
    context,
    entities,
    partition_clock,
    principal_uid,
    resource_uid,
)
from accessctl.policy.compiler import CompiledPolicies, CompiledRule, Partition, load_policies, policy_of_error
from accessctl.policy.explain import Explanation, explain_rule, forbid_reason, nothing_applies
from accessctl.policy.model import PolicyDecision, PolicyOutcome, PolicyRequest


@dataclass
class _PartitionResult:
    partition: Partition
    clock: PartitionClock
    context: dict[str, Any]
    satisfied: set[str]
    errors: list[str]
    graph: Any  # the request's parsed entities, reused to explain a denial


@dataclass
class _Candidate:
    rule: CompiledRule
    granted: int
    clamps: list[str]
    window_closes_at: datetime | None

    def order(self) -> tuple[bool, bool, int, int, str]:
        annotations = self.rule.annotations
        return (
            annotations.break_glass,
            annotations.outcome == "approval",
            -self.granted,
            annotations.approvals_required,
            self.rule.id,
        )


def _minutes(count: int) -> str:
    return f"{count} minute" if count == 1 else f"{count} minutes"


class PolicyEngine:
    """Decides :class:`PolicyRequest` s against compiled policies (parse once, decide many)."""

    def __init__(self, policies: CompiledPolicies, *, check_requests_against_schema: bool = True) -> None:
        self.policies = policies
        # The schema check of each request's context and entities catches a signal provider that
        # produced a wrong type; it costs a little per call (see bench/decision_bench.py).
        self._schema = policies.schema if check_requests_against_schema else None

    @classmethod
    def from_directory(cls, policies_dir: Path, **options: Any) -> PolicyEngine:
        return cls(load_policies(policies_dir), **options)

    # ------------------------------------------------------------------ evaluation

    def _cedar(self, request: dict[str, Any], policies: cedarpy.PolicySet, graph: Any) -> tuple[set[str], list[str]]:
        result = cedarpy.is_authorized(request, policies, graph, schema=self._schema)
        return set(result.diagnostics.reasons), list(result.diagnostics.errors)

    def _evaluate(self, request: PolicyRequest) -> tuple[list[_PartitionResult], list[str]]:
        try:
            graph = cedarpy.Entities.from_json_str(json.dumps(entities(request)), self._schema)
        except ValueError as error:
            return [], [f"the request's entities are invalid: {error}"]
        signals = request.signals.cedar_context()
        base = {"principal": principal_uid(request), "action": ACTION, "resource": resource_uid(request)}
        results: list[_PartitionResult] = []
        for partition in self.policies.partitions:
            clock = partition_clock(request, partition)
            partition_context = context(request, clock, signals)
            satisfied, errors = self._cedar({**base, "context": partition_context}, partition.policies, graph)
            results.append(_PartitionResult(partition, clock, partition_context, satisfied, errors, graph))
        return results, []

    def decide(self, request: PolicyRequest, *, ceiling_minutes: int = MAX_REQUEST_MINUTES) -> PolicyDecision:
        results, fatal = self._evaluate(request)
        rules = self.policies.rules
        permit_errors: list[str] = []
        for result in results:
            for error in result.errors:
                policy_id = policy_of_error(error)
                if policy_id in rules and not rules[policy_id].is_forbid:
                    permit_errors.append(error)  # that permit simply does not match
                else:
                    fatal.append(error)  # a guardrail or the request itself: never ignore
        if fatal:
            return self._deny(
                request,
                [f"the request could not be evaluated safely, so it is denied: {error}" for error in fatal],
                errors=fatal + permit_errors,
            )
        satisfied = [(rules[rule_id], result) for result in results for rule_id in sorted(result.satisfied)]
        forbids = [(rule, result) for rule, result in satisfied if rule.is_forbid]
        if forbids:
            missing: set[str] = set()
            reasons = [forbid_reason(rule, request, result.clock, missing) for rule, result in forbids]
            return self._deny(
                request, reasons, matched=[rule.id for rule, _ in forbids], missing=missing, errors=permit_errors
            )
        candidates = [self._candidate(rule, result, request, ceiling_minutes) for rule, result in satisfied]
        usable = sorted((c for c in candidates if c.granted >= 1), key=_Candidate.order)
        if usable:
            return self._grant(request, usable, matched=[c.rule.id for c in candidates], errors=permit_errors)
        return self._explain_denial(request, results, candidates, permit_errors)

    # ------------------------------------------------------------------ outcomes

    @staticmethod
    def _candidate(rule: CompiledRule, result: _PartitionResult, request: PolicyRequest, ceiling: int) -> _Candidate:
        requested = request.requested_minutes
        annotations = rule.annotations
        assert annotations.max_minutes is not None  # a permit's annotations guarantee it
        limits = [(annotations.max_minutes, f"rule {rule.id}'s maximum"), (ceiling, "the global ceiling")]
        window = result.clock.window
        if window is not None:
            closes = window.closes_at.astimezone(result.clock.local.wall.tzinfo) if window.closes_at else None
            when = f" at {closes.strftime('%H:%M')} {result.partition.timezone}" if closes else ""
            limits.append((window.minutes_left, f"the end of the rule's window{when}"))
        granted = requested
        clamps: list[str] = []
        for limit, why in limits:
            if limit < granted:
                granted = limit
                clamps = [f"clamped from {requested} to {_minutes(limit)} by {why}"]
        return _Candidate(rule, granted, clamps, window.closes_at if window is not None else None)

    def _grant(
        self, request: PolicyRequest, usable: list[_Candidate], *, matched: list[str], errors: list[str]
    ) -> PolicyDecision:
        chosen = usable[0]
        annotations = chosen.rule.annotations
        approval = annotations.outcome == "approval"
        if approval:
            summary = (
                f"rule {chosen.rule.id} allows {_minutes(chosen.granted)} after {annotations.approvals_required} "
                f"approval(s) from {annotations.approver_group}"
            )
        else:
            summary = f"allowed by rule {chosen.rule.id} for {_minutes(chosen.granted)}"
        if annotations.break_glass:
            summary = f"BREAK-GLASS: {summary} (high-severity notification and audit)"
        reasons = [summary, *chosen.clamps]
        for other in usable[1:]:
            if other.granted > chosen.granted and other.rule.annotations.outcome == "approval":
                reasons.append(
                    f"rule {other.rule.id} would allow up to {other.granted} minutes after approval from "
                    f"{other.rule.annotations.approver_group}"
                )
                break
        by_window = any("window" in clamp for clamp in chosen.clamps)
        return PolicyDecision(
            outcome=PolicyOutcome.NEEDS_APPROVAL if approval else PolicyOutcome.ALLOW,
            summary="; ".join([summary, *chosen.clamps]),
            reasons=reasons,
            rule_id=chosen.rule.id,
            matched_rule_ids=sorted(set(matched)),
            granted_minutes=chosen.granted,
            grant_ends_by=chosen.window_closes_at if by_window else None,
            approver_group=annotations.approver_group if approval else None,
            approvals_required=annotations.approvals_required,
            approval_timeout_minutes=annotations.approval_timeout_minutes if approval else None,
            break_glass=annotations.break_glass,
            severity="high" if annotations.break_glass else "info",
            signals=request.signals.provenance(),
            errors=errors,
            decided_at=request.at,
        )

    def _deny(
        self,
        request: PolicyRequest,
        reasons: list[str],
        *,
        matched: list[str] | None = None,
        missing: set[str] | None = None,
        errors: list[str] | None = None,
    ) -> PolicyDecision:
        return PolicyDecision(
            outcome=PolicyOutcome.DENY,
            summary="denied: " + "; ".join(reasons),
            reasons=reasons,
            matched_rule_ids=sorted(set(matched or [])),
            missing_signals=sorted(missing or set()),
            signals=request.signals.provenance(),
            errors=errors or [],
            decided_at=request.at,
        )

    def _explain_denial(
        self,
        request: PolicyRequest,
        results: list[_PartitionResult],
        candidates: list[_Candidate],
        errors: list[str],
    ) -> PolicyDecision:
        explanation = Explanation()
        for candidate in candidates:  # matched, but the window has less than a minute left
            explanation.reasons.append(
                f"rule {candidate.rule.id} applies, but less than one minute of its window "
                f"({'; '.join(w.spec for w in candidate.rule.annotations.window)} {candidate.rule.annotations.timezone}) remains"
            )
        matched = {candidate.rule.id for candidate in candidates}
        for result in results:
            partition = result.partition
            if partition.diagnostics is None:
                continue
            base = {"principal": principal_uid(request), "action": ACTION, "resource": resource_uid(request)}
            satisfied, _ = self._cedar({**base, "context": result.context}, partition.diagnostics, result.graph)
            for rule_id in partition.rule_ids:
                rule = self.policies.rules[rule_id]
                if not rule.is_forbid and rule_id not in matched:
                    explain_rule(rule, satisfied, request, result.clock, explanation)
        for error in errors:
            explanation.reasons.append(f"rule {policy_of_error(error)} could not be evaluated: {error}")
        if not explanation.reasons:
            nothing_applies(request, explanation)
        return self._deny(
            request, explanation.reasons, matched=sorted(matched), missing=explanation.missing_signals, errors=errors
        )
