"""The operator's metrics: time to grant, revocation lag, grants active, and the expiry sweep's heartbeat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accessctl.grants import evaluate_request, issue_grant, revoke_grant, sweep_expired_grants
from accessctl.models import RevokeReason
from accessctl.observability import metrics
from tests.audit.test_audit_paths import _submit, orders, policy_engine  # noqa: F401
from tests.conftest import Estate
from tests.faults.support import move_clock

pytestmark = pytest.mark.usefixtures("orders")  # the roles and database of tests.audit.test_audit_paths


@pytest.fixture
def emitted() -> Iterator[dict[str, Any]]:
    """The metrics added since the test began (what the handler's flush would write as EMF)."""
    metrics.clear_metrics()
    yield metrics.metric_set
    metrics.clear_metrics()


def _values(emitted: dict[str, Any], name: str) -> list[float]:
    return list(emitted.get(name, {}).get("Value", []))


def _granted(estate: Estate, reason: str, role: str = "orders-service") -> str:
    answer = _submit(estate, estate.deps, role, "app_rw", reason)
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    issue_grant(answer.request_id, estate.deps)
    return answer.request_id


def test_given_a_request_when_granted_then_the_time_to_grant_is_measured(
    estate: Estate, emitted: dict[str, Any]
) -> None:
    _granted(estate, "time to grant")

    (seconds,) = _values(emitted, "TimeToGrant")
    assert 0 <= seconds < 60
    assert emitted["TimeToGrant"]["Unit"] == "Seconds"


def test_given_a_live_grant_when_the_same_access_is_granted_again_then_the_extension_has_its_own_time_metric(
    estate: Estate, emitted: dict[str, Any]
) -> None:
    # Given a live grant (its TimeToGrant sent)
    first = _granted(estate, "first")

    # When the same role asks for the same database user again: the grant is extended
    second = _granted(estate, "second")

    # Then the extension's wait is measured as TimeToExtend, and TimeToGrant keeps meaning new grants
    assert estate.deps.grants.get(second).extends == first
    assert len(_values(emitted, "TimeToGrant")) == 1
    (seconds,) = _values(emitted, "TimeToExtend")
    assert 0 <= seconds < 60
    assert emitted["TimeToExtend"]["Unit"] == "Seconds"


def test_given_an_extension_step_run_again_when_it_completes_then_its_time_is_measured_once(
    estate: Estate, emitted: dict[str, Any]
) -> None:
    # Given an extended grant, and the extension step run again (its function timed out after recording)
    _granted(estate, "first")
    second = _granted(estate, "second")

    # When the step runs again
    issue_grant(second, estate.deps)

    # Then the extension was measured once
    assert len(_values(emitted, "TimeToExtend")) == 1


def test_given_grants_past_expiry_when_revoked_then_the_revocation_lag_is_measured_from_the_expiry(
    estate: Estate, emitted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    early = _granted(estate, "revoked early")
    revoke_grant(early, RevokeReason.EARLY, "holder", estate.deps)  # not late: no lag
    by_workflow = _granted(estate, "revoked by its workflow")
    _granted(estate, "revoked by the sweeper", role="reporting-job")
    move_clock(monkeypatch, 12)  # two minutes past the 10-minute grants

    revoke_grant(by_workflow, RevokeReason.EXPIRED, "workflow", estate.deps)
    sweep_expired_grants(estate.deps)

    lags = _values(emitted, "RevocationLag")
    assert len(lags) == 2 and all(110 <= lag <= 130 for lag in lags), lags


def test_given_live_grants_when_swept_then_grants_active_and_the_sweep_heartbeat_are_emitted(
    estate: Estate, emitted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _granted(estate, "first")
    _granted(estate, "second")  # extends the first: still one grant
    other = _submit(estate, estate.deps, "orders-service", "admin", "denied")
    evaluate_request(other.request_id, policy_engine(), estate.deps)

    sweep_expired_grants(estate.deps)

    assert _values(emitted, "GrantsActive") == [1.0]
    assert _values(emitted, "ExpirySweeps") == [1.0]


def test_given_the_active_count_failing_when_swept_then_the_sweep_still_completes(
    estate: Estate, emitted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails() -> int:
        raise RuntimeError("injected: the count query failed")

    monkeypatch.setattr(estate.deps.grants, "count_active", fails)

    report = sweep_expired_grants(estate.deps)

    assert report.failed == {}
    assert "GrantsActive" not in emitted and _values(emitted, "ExpirySweeps") == [1.0]


def test_given_an_orphan_policy_the_sweeper_cannot_remove_when_swept_then_the_finding_and_the_failure_are_counted(
    estate: Estate, emitted: dict[str, Any]
) -> None:
    from dataclasses import replace

    from botocore.exceptions import ClientError

    from accessctl.integrity import sweep_integrity
    from tests.faults.support import FaultyClient

    # Given a grant policy nobody issued, attached to a role, and IAM refusing to detach it
    arn = estate.hand_made_grant_policy("orders-service")
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DetachRolePolicy")
    failing = replace(estate.deps, iam=FaultyClient(estate.deps.iam, detach_role_policy=[refused]))

    # When the integrity sweep runs
    report = sweep_integrity(failing)

    # Then the policy is still there, and what pages an operator says so: found, and not removed
    assert arn in report.failed
    assert _values(emitted, "SweeperFindingsOrphan") == [1.0]
    assert _values(emitted, "IntegrityFailures") == [1.0]
