"""Drift remediation: keeps every protected database's network and configuration Zero Trust.

See docs/remediation.md. The rule table is :data:`accessctl.remediation.rules.RULES`; the entry
point is :func:`accessctl.remediation.engine.default_remediator` (``.handle(event)``).
"""

from accessctl.remediation.engine import Remediator, default_remediator
from accessctl.remediation.models import Finding, FindingResult, Fix, Outcome, RemediationReport, Severity
from accessctl.remediation.rules import RULES, RULES_BY_ID, Rule
from accessctl.remediation.settings import Mode, RemediationSettings, get_remediation_settings

__all__ = [
    "RULES",
    "RULES_BY_ID",
    "Finding",
    "FindingResult",
    "Fix",
    "Mode",
    "Outcome",
    "RemediationReport",
    "RemediationSettings",
    "Remediator",
    "Rule",
    "Severity",
    "default_remediator",
    "get_remediation_settings",
]
