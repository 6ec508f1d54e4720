"""Faults while issuing a grant (in-process emulated account): IAM throttling, the DynamoDB write
after the IAM change failing, and the issuing process dying. After one sweep past expiry no grant
outlives its expiry and every request has one consistent record."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from accessctl.errors import ConflictError, TransientError
from accessctl.grants import SweepReport, issue_grant, revoke_grant, sweep_expired_grants
from accessctl.models import RequestStatus, RevokeReason
from tests.conftest import Estate
from tests.faults.support import (
    FaultyClient,
    allowed_request,
    audit_write_fails_once,
    grant_policies,
    move_clock,
    server_error,
    store_failing,
    sweep_then_check,
    throttled,
)


@pytest.mark.parametrize(
    ("operation", "api_name"),
    [("create_policy", "CreatePolicy"), ("attach_role_policy", "AttachRolePolicy")],
)
def test_given_iam_throttles_a_grant_step_when_issued_then_transient_and_a_retry_makes_exactly_one_policy(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch, operation: str, api_name: str
) -> None:
    request_id = allowed_request(estate)
    iam = FaultyClient(estate.deps.iam, **{operation: [throttled(api_name)]})

    with pytest.raises(TransientError, match="Throttling"):
        issue_grant(request_id, replace(estate.deps, iam=iam))

    half_made = estate.deps.grants.get(request_id)
    assert half_made.status == RequestStatus.GRANTING  # indexed by expiry before any IAM change
    assert len(grant_policies(estate)) == (1 if operation == "attach_role_policy" else 0)

    # the state machine's Retry (TransientError) runs the step again
    grant = issue_grant(request_id, replace(estate.deps, iam=iam))

    assert estate.deps.grants.get(request_id).status == RequestStatus.ACTIVE
    assert list(grant_policies(estate)) == [grant.policy_name]
    assert estate.attached("orders-service") == [grant.policy_arn]
    sweep_then_check(estate, move_clock(monkeypatch, 11))
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED


@pytest.mark.parametrize(
    "error",
    [server_error("UpdateItem"), RuntimeError("injected: the process died after AttachRolePolicy")],
    ids=["dynamodb 500 (transient)", "non-retryable"],
)
def test_given_the_active_write_fails_after_attach_when_nobody_retries_then_one_sweep_after_expiry_removes_it(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    request_id = allowed_request(estate)
    failing = replace(estate.deps, grants=store_failing(estate, RequestStatus.ACTIVE, error))

    with pytest.raises((TransientError, RuntimeError)):
        issue_grant(request_id, failing)

    # the policy is live and attached, the record says GRANTING and is indexed by its expiry
    record = estate.deps.grants.get(request_id)
    assert record.status == RequestStatus.GRANTING and record.grant is not None
    assert estate.attached("orders-service") == [record.grant.policy_arn]
    # not yet due: a sweep before expiry leaves it (its own condition still bounds it)
    assert sweep_expired_grants(estate.deps).examined == 0

    report = sweep_then_check(estate, move_clock(monkeypatch, 11))

    assert report.revoked == [request_id]
    final = estate.deps.grants.get(request_id)
    assert final.status == RequestStatus.REVOKED
    assert final.grant is not None and final.grant.revoke_reason == RevokeReason.SWEEP
    assert estate.attached("orders-service") == []


def test_given_the_active_write_failed_after_attach_when_the_step_is_retried_then_one_policy_and_active(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = allowed_request(estate)
    with pytest.raises(TransientError):
        issue_grant(
            request_id,
            replace(estate.deps, grants=store_failing(estate, RequestStatus.ACTIVE, server_error("UpdateItem"))),
        )

    grant = issue_grant(request_id, estate.deps)  # CreatePolicy answers EntityAlreadyExists: re-checked, reused

    assert estate.deps.grants.get(request_id).status == RequestStatus.ACTIVE
    assert list(grant_policies(estate)) == [grant.policy_name]
    assert estate.attached("orders-service") == [grant.policy_arn]
    sweep_then_check(estate, move_clock(monkeypatch, 11))


def test_given_the_active_write_failed_when_compensation_also_fails_then_the_sweeper_is_the_backstop(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = allowed_request(estate)
    with pytest.raises(TransientError):
        issue_grant(
            request_id,
            replace(estate.deps, grants=store_failing(estate, RequestStatus.ACTIVE, server_error("UpdateItem"))),
        )
    # CompensateGrant runs, but IAM throttles DeletePolicy through all its retries
    iam = FaultyClient(estate.deps.iam, delete_policy=[throttled("DeletePolicy")])
    with pytest.raises(TransientError):
        revoke_grant(request_id, RevokeReason.COMPENSATION, "workflow", replace(estate.deps, iam=iam))
    assert estate.deps.grants.get(request_id).status == RequestStatus.GRANTING  # nothing recorded as over

    report = sweep_then_check(estate, move_clock(monkeypatch, 11))

    assert report.revoked == [request_id]
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED


def test_given_create_policy_fails_for_good_when_compensated_then_failed_with_no_policy(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = allowed_request(estate)
    iam = FaultyClient(estate.deps.iam, create_policy=[throttled("CreatePolicy")] * 5)
    for _ in range(5):  # the ASL's five attempts, all throttled
        with pytest.raises(TransientError):
            issue_grant(request_id, replace(estate.deps, iam=iam))

    revoke_grant(request_id, RevokeReason.COMPENSATION, "workflow", estate.deps)

    assert estate.deps.grants.get(request_id).status == RequestStatus.FAILED
    assert grant_policies(estate) == {}
    sweep_then_check(estate, move_clock(monkeypatch, 11))


def test_given_the_issued_audit_write_failed_when_the_step_is_retried_then_the_record_is_written_once(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accessctl.grants import issue_grant
    from accessctl.models import AuditEventType

    request_id = allowed_request(estate)
    audit_write_fails_once(estate, monkeypatch, AuditEventType.GRANT_ISSUED)
    with pytest.raises(RuntimeError):
        issue_grant(request_id, estate.deps)

    issue_grant(request_id, estate.deps)  # the state machine's retry
    issue_grant(request_id, estate.deps)  # and another

    issued = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_ISSUED]
    assert len(issued) == 1


def test_given_the_revoked_audit_write_failed_when_revocation_is_retried_then_the_record_is_written_once(
    estate: Estate, orders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accessctl.models import AuditEventType

    request_id = allowed_request(estate)
    issue_grant(request_id, estate.deps)
    move_clock(monkeypatch, 11)
    audit_write_fails_once(estate, monkeypatch, AuditEventType.GRANT_REVOKED)
    with pytest.raises(RuntimeError):
        revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps)

    assert revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps).status == "ALREADY_REVOKED"
    revoke_grant(request_id, RevokeReason.SWEEP, "sweeper", estate.deps)

    revoked = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_REVOKED]
    assert len(revoked) == 1
    assert grant_policies(estate) == {}


def test_given_the_sweeper_revokes_a_stalled_grant_while_its_step_runs_again_when_compensated_then_no_policy_is_left(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant step that stalled (GRANTING, retried by the workflow) until past the grant's expiry,
    # and the sweeper revoking it (nothing there yet) while the retried step is about to create the policy
    request_id = allowed_request(estate)
    sweeps: list[SweepReport] = []

    class SweepRunsMeanwhile(FaultyClient):
        def create_policy(self, **kwargs: Any) -> Any:
            if not sweeps:
                move_clock(monkeypatch, 11)
                sweeps.append(sweep_expired_grants(estate.deps))
            return self._client.create_policy(**kwargs)

    # When the step goes on (creates and attaches the policy, then finds the record revoked) and the
    # workflow's Catch compensates it
    with pytest.raises(ConflictError):
        issue_grant(request_id, replace(estate.deps, iam=SweepRunsMeanwhile(estate.deps.iam)))
    assert sweeps[0].revoked == [request_id]
    revoke_grant(request_id, RevokeReason.COMPENSATION, "workflow", estate.deps)

    # Then the policy the step made after the sweep is gone too, and the record still says revoked
    assert grant_policies(estate) == {}
    assert estate.attached("orders-service") == []
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    sweep_then_check(estate, move_clock(monkeypatch, 12))


def test_given_the_grant_to_extend_is_revoked_after_it_was_read_when_retried_then_the_request_gets_its_own_grant(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an active grant that the role's index (eventually consistent) still lists after an
    # early revoke removed it, and the same role asking again for the same database user
    first = allowed_request(estate)
    issue_grant(first, estate.deps)
    as_listed = estate.deps.grants.get(first)
    revoke_grant(first, RevokeReason.EARLY, "test", estate.deps)
    again = allowed_request(estate, reason="asked again")
    monkeypatch.setattr(estate.deps.grants, "active_grants_for", lambda *args: [as_listed])

    # When the grant step tries to extend the listed grant, then runs again (the ASL retries TransientError)
    with pytest.raises(TransientError, match="can no longer be extended"):
        issue_grant(again, estate.deps)
    monkeypatch.undo()
    grant = issue_grant(again, estate.deps)

    # Then nothing was written to the revoked grant, and the request holds a grant of its own
    assert estate.deps.grants.get(first).status == RequestStatus.REVOKED
    assert grant.grant_id == again
    assert estate.deps.grants.get(again).status == RequestStatus.ACTIVE
    assert estate.attached("orders-service") == [grant.policy_arn]
    sweep_then_check(estate, move_clock(monkeypatch, 11))
