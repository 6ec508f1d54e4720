"""Decisions on the shipped example policies: outcomes, conflicts, fail-closed, explanations."""

from __future__ import annotations

from datetime import datetime

import pytest

from accessctl.policy import PolicyEngine, PolicyOutcome
from accessctl.signals.model import Signal
from tests.policy.conftest import (
    PolicyWriter,
    annotations,
    database,
    human_request,
    workload_request,
)


def test_given_a_dba_with_every_signal_when_deciding_then_one_db_owners_approval_is_needed(
    engine: PolicyEngine,
) -> None:
    decision = engine.decide(human_request())
    assert decision.outcome == PolicyOutcome.NEEDS_APPROVAL
    assert (decision.rule_id, decision.approver_group, decision.approvals_required) == ("dba-prod", "db-owners", 1)
    assert decision.granted_minutes == 60
    assert decision.break_glass is False


def test_given_the_orders_service_inside_its_vpc_when_deciding_then_it_is_allowed_for_15_minutes(
    engine: PolicyEngine,
) -> None:
    decision = engine.decide(workload_request(minutes=60))
    assert decision.outcome == PolicyOutcome.ALLOW
    assert (decision.rule_id, decision.granted_minutes) == ("orders-service-prod", 15)
    assert "clamped from 60 to 15 minutes" in decision.summary


def test_given_a_workload_on_production_when_deciding_then_the_human_mfa_guardrail_does_not_apply(
    engine: PolicyEngine,
) -> None:
    decision = engine.decide(workload_request())
    assert "prod-requires-mfa" not in decision.matched_rule_ids
    assert decision.outcome == PolicyOutcome.ALLOW


def test_given_a_global_ceiling_when_deciding_then_it_clamps_below_the_rule(engine: PolicyEngine) -> None:
    decision = engine.decide(workload_request(), ceiling_minutes=5)
    assert decision.granted_minutes == 5
    assert "global ceiling" in decision.summary


def test_given_oncall_at_night_with_mfa_when_deciding_then_break_glass_is_allowed_and_flagged_high(
    engine: PolicyEngine,
) -> None:
    decision = engine.decide(
        human_request(groups=["oncall"], at=datetime.fromisoformat("2027-03-28T03:00:00+02:00"), minutes=45)
    )
    assert decision.outcome == PolicyOutcome.ALLOW
    assert decision.rule_id == "oncall-break-glass"
    assert (decision.break_glass, decision.severity, decision.granted_minutes) == (True, "high", 30)


def test_given_an_oncall_dba_in_business_hours_when_deciding_then_the_normal_path_wins_over_break_glass(
    engine: PolicyEngine,
) -> None:
    decision = engine.decide(human_request(groups=["dba", "oncall"]))
    assert decision.rule_id == "dba-prod"
    assert decision.matched_rule_ids == ["dba-prod", "oncall-break-glass"]
    assert decision.break_glass is False


def test_given_permits_that_match_when_mfa_is_false_then_the_forbid_beats_them_all(engine: PolicyEngine) -> None:
    decision = engine.decide(
        human_request(
            groups=["dba", "oncall"], mfa=Signal.of(False, "id_token amr", note="your ID token has no MFA claim")
        )
    )
    assert decision.outcome == PolicyOutcome.DENY
    assert decision.matched_rule_ids == ["prod-requires-mfa"]
    assert decision.summary == (
        "denied: Production requires MFA (rule prod-requires-mfa: your ID token has no MFA claim)"
    )


@pytest.mark.parametrize(
    ("signal", "missing_reason", "expected_text"),
    [
        (
            "mfa",
            "no verified ID token: MFA unknown",
            "Production requires MFA (rule prod-requires-mfa: no verified ID token: MFA unknown)",
        ),
        (
            "source_ip",
            "API Gateway reported no source IP",
            "rule dba-prod requires a corporate network address (office 203.0.113.0/24 or VPN 10.20.0.0/16) (API Gateway reported no source IP)",
        ),
        (
            "device",
            "your ID token names no device: device posture unknown",
            "rule dba-prod requires a compliant managed device (your ID token names no device: device posture unknown)",
        ),
    ],
)
def test_given_a_missing_signal_when_deciding_then_it_fails_closed_and_names_the_signal(
    engine: PolicyEngine, signal: str, missing_reason: str, expected_text: str
) -> None:
    decision = engine.decide(human_request(**{signal: Signal.absent(missing_reason)}))
    assert decision.outcome == PolicyOutcome.DENY
    assert decision.missing_signals == [signal]
    assert expected_text in decision.reasons


@pytest.mark.parametrize(
    ("overrides", "expected_reason"),
    [
        (
            {"source_ip": Signal.of("198.51.100.7", "test", note="your address is 198.51.100.7")},
            "rule dba-prod requires a corporate network address (office 203.0.113.0/24 or VPN 10.20.0.0/16) (your address is 198.51.100.7)",
        ),
        (
            {
                "device": Signal.of(
                    {"managed": True, "compliant": False, "os_version": "9", "last_check_in_age_seconds": 1},
                    "test",
                    note="device laptop-1: managed, not compliant",
                )
            },
            "rule dba-prod requires a compliant managed device (device laptop-1: managed, not compliant)",
        ),
    ],
)
def test_given_a_failing_condition_when_deciding_then_the_reason_names_the_rule_and_the_condition(
    engine: PolicyEngine, overrides: dict[str, Signal], expected_reason: str
) -> None:
    decision = engine.decide(human_request(**overrides))
    assert decision.outcome == PolicyOutcome.DENY
    assert decision.reasons == [expected_reason]


def test_given_two_failing_conditions_when_deciding_then_both_are_named_in_one_reason(engine: PolicyEngine) -> None:
    decision = engine.decide(
        human_request(
            at=datetime.fromisoformat("2027-03-27T10:00:00+01:00"),
            source_ip=Signal.of("198.51.100.7", "test", note="your address is 198.51.100.7"),
        )
    )
    (reason,) = decision.reasons
    assert reason.startswith("rule dba-prod requires a corporate network address")
    assert (
        ", and business hours (Mon-Fri 08:00-18:00 Europe/Berlin) (it is Sat 2027-03-27 10:00 Europe/Berlin" in reason
    )


def test_given_nothing_in_scope_when_deciding_then_the_answer_says_no_rule_allows_it(engine: PolicyEngine) -> None:
    decision = engine.decide(workload_request("billing-service"))
    assert decision.summary == "denied: no rule allows role billing-service to connect to orders-prod as app_rw"


def test_given_a_decision_when_reading_its_signals_then_each_carries_its_provenance(engine: PolicyEngine) -> None:
    decision = engine.decide(workload_request(source_ip=None))
    assert decision.signals["source_ip"] == {"missing": "source IP not provided"}
    assert decision.missing_signals == ["source_ip"]
    assert engine.decide(workload_request()).signals["source_ip"] == {
        "value": "10.40.1.2",
        "source": "test requestContext",
    }


def test_given_a_staging_database_when_oncall_asks_without_mfa_then_break_glass_applies(engine: PolicyEngine) -> None:
    decision = engine.decide(
        human_request(
            groups=["oncall"], target=database("orders-staging", "staging"), mfa=Signal.absent("no verified ID token")
        )
    )
    assert decision.outcome == PolicyOutcome.ALLOW
    assert decision.break_glass is True


# ------------------------------------------------------------------ errors never allow

_ALLOW_ALL = (
    annotations(id="allow-all", outcome="auto", max_minutes="60")
    + """
permit (principal, action == Action::"connect", resource);
"""
)
# Valid Cedar, but the multiplication overflows at evaluation time: an evaluation error.
_BROKEN_FORBID = (
    annotations(id="broken-guardrail", reason="Guardrail that errors")
    + """
forbid (principal, action == Action::"connect", resource)
when { context.requested_minutes * 9223372036854775807 > 0 };
"""
)
_BROKEN_PERMIT = (
    annotations(id="broken-permit", outcome="auto", max_minutes="60", requires="overflow")
    + """
permit (principal, action == Action::"connect", resource)
when { context.requested_minutes * 9223372036854775807 > 0 };
"""
)


def test_given_a_forbid_that_errors_when_a_permit_matches_then_the_request_is_denied(policy_dir: PolicyWriter) -> None:
    engine = PolicyEngine.from_directory(policy_dir(allow=_ALLOW_ALL, broken=_BROKEN_FORBID))
    decision = engine.decide(workload_request(minutes=2))
    assert decision.outcome == PolicyOutcome.DENY
    assert "could not be evaluated safely" in decision.summary
    assert any("broken-guardrail" in error for error in decision.errors)


def test_given_a_permit_that_errors_when_deciding_then_it_does_not_match_and_the_error_is_reported(
    policy_dir: PolicyWriter,
) -> None:
    engine = PolicyEngine.from_directory(policy_dir(broken=_BROKEN_PERMIT))
    decision = engine.decide(workload_request(minutes=2))
    assert decision.outcome == PolicyOutcome.DENY
    assert any(reason.startswith("rule broken-permit could not be evaluated") for reason in decision.reasons)


def test_given_a_context_of_the_wrong_type_when_deciding_then_the_schema_check_denies(engine: PolicyEngine) -> None:
    # A provider bug that slips a wrong type past the signal model: Cedar's request check must catch it.
    request = workload_request()
    bad = request.model_copy(update={"db_user": "app_rw"})
    object.__setattr__(bad.database, "tags", {"environment": 42})  # tags must be strings
    decision = engine.decide(bad)
    assert decision.outcome == PolicyOutcome.DENY
    assert decision.errors
