"""A workflow stopped mid-wait and a restarted process (in-process emulated account): the sweeper
alone, on the state in the tables, revokes every grant past expiry.

"Emulator restarted" is modelled as what survives a restart in AWS: the tables and IAM keep their
state, every in-process cache is lost. The grant is made with one ``Dependencies``; then the
process caches are cleared (``default_dependencies``, the shared boto3 clients, the settings) and
the sweep runs on a cold ``default_dependencies()`` built from the environment, as a fresh Lambda
would. (Restarting the moto server itself loses all state, which no AWS failure does.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from accessctl import aws, config, dependencies
from accessctl.grants import issue_grant, revoke_grant
from accessctl.models import RequestStatus, RevokeReason
from tests.conftest import Estate
from tests.faults.support import FaultyClient, allowed_request, move_clock, sweep_then_check


@pytest.fixture
def cold_process(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment a freshly started function would read its settings from."""
    settings = estate.deps.settings
    monkeypatch.setenv("GRANTS_TABLE", settings.grants_table)
    monkeypatch.setenv("AUDIT_TABLE", settings.audit_table)
    monkeypatch.setenv("STATE_MACHINE_ARN", settings.state_machine_arn or "")

    def forget() -> None:
        for cached in (dependencies.default_dependencies, aws.client, aws.resource, config.get_settings):
            cached.cache_clear()

    forget()
    yield
    forget()


def test_given_two_grants_when_one_workflow_is_stopped_mid_wait_then_one_sweep_revokes_it(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    by_workflow = allowed_request(estate, "orders-service")
    stopped = allowed_request(estate, "reporting-job")
    issue_grant(by_workflow, estate.deps)
    issue_grant(stopped, estate.deps)
    now = move_clock(monkeypatch, 11)

    # the live workflow wakes at expiry and revokes; the stopped one never wakes
    assert revoke_grant(by_workflow, RevokeReason.EXPIRED, "workflow", estate.deps).status == "REVOKED"

    report = sweep_then_check(estate, now)

    assert report.revoked == [stopped]
    record = estate.deps.grants.get(stopped)
    assert record.status == RequestStatus.REVOKED
    assert record.grant is not None and record.grant.revoke_reason == RevokeReason.SWEEP


def test_given_the_process_died_after_attach_when_a_cold_process_sweeps_after_expiry_then_revoked(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch, cold_process: None
) -> None:
    request_id = allowed_request(estate)

    class ProcessDied(BaseException):  # not an Exception: nothing in the step may catch it
        pass

    iam = FaultyClient(estate.deps.iam)
    original_attach = estate.deps.iam.attach_role_policy

    def attach_then_die(**kwargs: Any) -> Any:
        original_attach(**kwargs)
        raise ProcessDied("the Lambda was killed right after AttachRolePolicy")

    iam.attach_role_policy = attach_then_die  # type: ignore[attr-defined]
    with pytest.raises(ProcessDied):
        issue_grant(request_id, replace(estate.deps, iam=iam))
    assert estate.deps.grants.get(request_id).status == RequestStatus.GRANTING
    now = move_clock(monkeypatch, 11)

    cold = dependencies.default_dependencies()  # new clients, new stores: only the tables and IAM remember
    assert cold is not estate.deps and cold.grants is not estate.deps.grants
    report = sweep_then_check(estate, now, deps=cold)

    assert report.revoked == [request_id]
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    assert estate.attached("orders-service") == []


def test_given_active_grants_when_the_process_restarts_mid_wait_then_a_cold_sweep_revokes_only_the_expired(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch, cold_process: None
) -> None:
    expired = allowed_request(estate, "orders-service")
    issue_grant(expired, estate.deps)
    later = move_clock(monkeypatch, 6)
    unexpired = allowed_request(estate, "reporting-job")
    issue_grant(unexpired, estate.deps)  # issued 6 minutes after the first: expires 6 minutes after it
    now = move_clock(monkeypatch, 11)
    assert later < now

    report = sweep_then_check(estate, now, deps=dependencies.default_dependencies())

    assert report.revoked == [expired]
    assert estate.deps.grants.get(unexpired).status == RequestStatus.ACTIVE
