"""The template's alarms and dashboard watch metrics the code really sends, and page on what matters."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from accessctl.models import Outcome, RevokeReason
from accessctl.remediation.models import Outcome as DriftOutcome
from tests.support.template import PROJECT_ROOT, resources

NAMESPACE = "accessctl"
SOURCES = [
    *(PROJECT_ROOT / "layers" / "accessctl" / "accessctl").rglob("*.py"),
    *(PROJECT_ROOT / "functions").rglob("*.py"),
]


def _emitted() -> set[str]:
    """Every metric name the code sends in the accessctl namespace (literal names and the f-string families)."""
    names: set[str] = set()
    for path in SOURCES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "name=" in line:  # name="A", and name="A" if ... else "B"
                names |= set(re.findall(r'"([A-Z][A-Za-z]+)"', line))
    names |= {f"Decisions{outcome.value.title().replace('_', '')}" for outcome in Outcome}
    names |= {f"GrantsRevoked{reason.value.title()}" for reason in RevokeReason}
    names |= {f"Drift{outcome.value.title()}" for outcome in DriftOutcome}
    return names


def _alarms() -> dict[str, dict[str, Any]]:
    return {name: body["Properties"] for name, body in resources("AWS::CloudWatch::Alarm").items()}


def _watched(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, metric) pairs an alarm reads, plain or through metric math."""
    if "MetricName" in alarm:
        return {(alarm["Namespace"], alarm["MetricName"])}
    return {
        (query["MetricStat"]["Metric"]["Namespace"], query["MetricStat"]["Metric"]["MetricName"])
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }


def _dashboard() -> dict[str, Any]:
    (body,) = [
        resource["Properties"]["DashboardBody"]["Fn::Sub"]
        for resource in resources("AWS::CloudWatch::Dashboard").values()
    ]
    return dict(json.loads(re.sub(r"\$\{([A-Za-z:.]+)\}", r"<\1>", body)))


def _graphed(rows: list[list[Any]]) -> set[str]:
    """The accessctl metrics of a widget's rows ("." repeats the row above's value)."""
    names: set[str] = set()
    previous: list[Any] = []
    for row in rows:
        if not row or not isinstance(row[0], str) or row[0] == "...":
            continue
        values = [
            previous[index] if value == "." and index < len(previous) else value for index, value in enumerate(row)
        ]
        if values[0] == NAMESPACE:
            names.add(values[1])
        previous = values
    return names


def test_every_alarm_watches_metrics_the_code_sends() -> None:
    emitted = _emitted()
    for name, alarm in _alarms().items():
        ours = {metric for namespace, metric in _watched(alarm) if namespace == NAMESPACE}
        assert ours <= emitted, f"{name} watches {sorted(ours - emitted)}, which nothing sends"
        assert alarm["AlarmActions"], name


@pytest.mark.parametrize(
    ("what", "metrics"),
    [
        ("a grant past expiry still attached", {"SweeperRevoked", "SweeperFailures"}),
        ("a revocation failing", {"RevocationFailures", "SweeperFailures", "IntegrityFailures"}),
        ("the sweeper not running", {"ExpirySweeps"}),
        ("a break-glass use", {"BreakGlassUsed"}),
        ("remediation failing", {"DriftFailed", "Errors"}),
    ],
)
def test_an_alarm_pages_on_each_thing_that_matters(what: str, metrics: set[str]) -> None:
    watching = [name for name, alarm in _alarms().items() if metrics <= {metric for _, metric in _watched(alarm)}]
    assert watching, f"no alarm watches {sorted(metrics)} ({what})"


def test_the_sweeper_alarm_breaches_when_no_completed_sweep_is_reported() -> None:
    alarm = _alarms()["SweeperNotRunningAlarm"]
    assert (alarm["MetricName"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "ExpirySweeps",
        "LessThanThreshold",
        1,
    )
    assert alarm["TreatMissingData"] == "breaching"


def test_the_remediation_alarm_counts_failed_runs_of_the_remediation_function() -> None:
    alarm = _alarms()["RemediationFailingAlarm"]
    (errors,) = [q for q in alarm["Metrics"] if q.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "Errors"]
    assert errors["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "RemediateDriftFunction"}}
    ]


def test_the_dashboard_is_json_that_shows_every_alarm_and_the_operators_metrics() -> None:
    dashboard = _dashboard()
    widgets = dashboard["widgets"]
    (alarm_widget,) = [widget for widget in widgets if widget["type"] == "alarm"]
    assert set(alarm_widget["properties"]["alarms"]) == {f"<{name}.Arn>" for name in _alarms()}
    graphed = {
        metric
        for widget in widgets
        if widget["type"] == "metric"
        for metric in _graphed(widget["properties"]["metrics"])
    }
    # requests by outcome, time to grant (new grants) and to extend, grants active, revocation lag,
    # revocation failures, sweeper findings by kind
    assert {
        "RequestsSubmitted",
        "DecisionsAllow",
        "DecisionsDeny",
        "DecisionsNeedsApproval",
        "TimeToGrant",
        "TimeToExtend",
        "ApprovalsAppliedAtTimeout",
        "GrantsActive",
        "RevocationLag",
        "RevocationFailures",
        "SweeperFailures",
        "SweeperFindingsTampered",
        "SweeperFindingsOrphan",
    } <= graphed
    assert graphed <= _emitted()
    # remediations by rule: every DriftFindings series (dimensions rule, outcome, service)
    expressions = [
        row[0]["expression"]
        for widget in widgets
        for row in widget["properties"].get("metrics", [])
        if row and isinstance(row[0], dict)
    ]
    assert any('MetricName="DriftFindings"' in expression and "rule" in expression for expression in expressions)
