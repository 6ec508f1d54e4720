"""Context-aware access policy: Cedar policies with per-rule outcomes in annotations.

``PolicyEngine.from_directory(path).decide(request)`` answers ALLOW, NEEDS_APPROVAL or DENY,
with the granted minutes, the approval path, and reasons in plain words.
"""

from accessctl.policy.compiler import CompiledPolicies, PolicyLoadError, Problem, compile_policies, load_policies
from accessctl.policy.engine import PolicyEngine
from accessctl.policy.gather import build_policy_request, gather_signals, principal_for
from accessctl.policy.model import (
    HumanPrincipal,
    PolicyDecision,
    PolicyOutcome,
    PolicyRequest,
    WorkloadPrincipal,
)

__all__ = [
    "CompiledPolicies",
    "HumanPrincipal",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyLoadError",
    "PolicyOutcome",
    "PolicyRequest",
    "Problem",
    "WorkloadPrincipal",
    "build_policy_request",
    "compile_policies",
    "gather_signals",
    "load_policies",
    "principal_for",
]
