"""Faults while revoking (in-process emulated account): IAM throttling or failing at each step of
the removal, and the DynamoDB write after IAM confirmed the deletion failing. Nothing is recorded
as revoked until IAM confirms; the next sweep finishes the job."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from accessctl.errors import AccessctlError, TransientError
from accessctl.grants import issue_grant, revoke_grant, sweep_expired_grants
from accessctl.models import RequestStatus, RevokeReason
from tests.conftest import Estate
from tests.faults.support import (
    FaultyClient,
    allowed_request,
    grant_policies,
    move_clock,
    server_error,
    store_failing,
    sweep_then_check,
    throttled,
)

REVOKE_STEPS = [
    ("detach_role_policy", throttled("DetachRolePolicy")),
    ("list_policy_versions", throttled("ListPolicyVersions")),
    ("delete_policy", throttled("DeletePolicy")),
    ("delete_policy", server_error("DeletePolicy")),
    ("get_policy", throttled("GetPolicy")),  # the confirmation that it is gone
]
STEP_IDS = ["detach throttled", "list versions throttled", "delete throttled", "delete 500", "confirm throttled"]


def issued(estate: Estate, role_name: str = "orders-service") -> str:
    request_id = allowed_request(estate, role_name)
    issue_grant(request_id, estate.deps)
    return request_id


@pytest.mark.parametrize(("operation", "error"), REVOKE_STEPS, ids=STEP_IDS)
def test_given_iam_fails_a_revoke_step_when_the_workflow_revokes_then_still_active_and_the_next_sweep_revokes(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch, operation: str, error: Exception
) -> None:
    request_id = issued(estate)
    now = move_clock(monkeypatch, 11)
    iam = FaultyClient(estate.deps.iam, **{operation: [error]})

    with pytest.raises(TransientError):
        revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", replace(estate.deps, iam=iam))

    record = estate.deps.grants.get(request_id)
    assert record.status == RequestStatus.ACTIVE  # not marked revoked until IAM confirms
    assert record.grant is not None and record.grant.revoked_at is None

    report = sweep_then_check(estate, now)

    assert report.revoked == [request_id]
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED


def test_given_iam_still_shows_the_policy_after_delete_when_revoking_then_not_recorded_revoked(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = issued(estate)
    now = move_clock(monkeypatch, 11)

    class DeleteIgnored(FaultyClient):
        def delete_policy(self, **kwargs: Any) -> Any:  # IAM answered 200 but (eventually consistent) kept it
            return {}

    with pytest.raises(AccessctlError, match="still exists after deletion"):
        revoke_grant(
            request_id, RevokeReason.EXPIRED, "workflow", replace(estate.deps, iam=DeleteIgnored(estate.deps.iam))
        )

    assert estate.deps.grants.get(request_id).status == RequestStatus.ACTIVE
    assert sweep_then_check(estate, now).revoked == [request_id]


def test_given_iam_throttles_during_a_sweep_when_swept_then_other_grants_are_revoked_and_the_next_sweep_finishes(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = issued(estate, "orders-service"), issued(estate, "reporting-job")
    now = move_clock(monkeypatch, 11)
    iam = FaultyClient(estate.deps.iam, delete_policy=[throttled("DeletePolicy")])

    report = sweep_expired_grants(replace(estate.deps, iam=iam))

    assert len(report.revoked) == 1 and len(report.failed) == 1  # one failure never stops the others
    (still_active,) = report.failed
    assert still_active in (first, second)
    assert estate.deps.grants.get(still_active).status == RequestStatus.ACTIVE
    assert sweep_then_check(estate, now).revoked == [still_active]


def test_given_the_revoked_write_fails_after_iam_deleted_the_policy_when_swept_again_then_recorded_revoked_once(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = issued(estate)
    now = move_clock(monkeypatch, 11)
    failing = replace(estate.deps, grants=store_failing(estate, RequestStatus.REVOKED, server_error("UpdateItem")))

    with pytest.raises(TransientError):
        revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", failing)

    assert grant_policies(estate) == {}  # IAM side done
    assert estate.deps.grants.get(request_id).status == RequestStatus.ACTIVE  # still indexed: the sweeper finds it

    report = sweep_then_check(estate, now)  # the policy is already gone: that counts as revoked

    assert report.revoked == [request_id]
    record = estate.deps.grants.get(request_id)
    assert record.status == RequestStatus.REVOKED
    assert record.grant is not None and record.grant.revoke_reason == RevokeReason.SWEEP
