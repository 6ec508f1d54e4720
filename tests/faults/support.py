"""Fault injection for the grant lifecycle: clients and tables that fail on cue, and the invariant
every fault must leave intact after one sweep past expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from accessctl.access_requests import submit_request
from accessctl.grant_policy import POLICY_NAME_PREFIX, grant_policy_problems, policy_name_for
from accessctl.grants import SweepReport, current_policy_document, evaluate_request, sweep_expired_grants
from accessctl.models import AccessRequestSubmission, AuditEventType, Outcome, RequestStatus, to_iso, utc_now
from accessctl.policy import PolicyEngine
from accessctl.store import SLOT_PREFIX, GrantsStore
from tests.conftest import Estate
from tests.support.requests import policy_engine_for, workload_caller

ROLES = ("orders-service", "reporting-job")
GRANT_MINUTES = 10
RULES = (
    "\n".join(
        f"""
@id("faults-{role}")
@outcome("auto")
@max_minutes("15")
permit (principal == Role::"{role}", action == Action::"connect", resource in Database::"orders-prod")
when {{ resource.name == "app_rw" }};
"""
        for role in ROLES
    )
    + """
@id("faults-approval")
@outcome("approval")
@approver_group("db-owners")
@approvals("1")
@max_minutes("15")
permit (principal == Role::"orders-service", action == Action::"connect", resource in Database::"orders-prod")
when { resource.name == "app_ro" };
"""
)
LIVE = (RequestStatus.GRANTING, RequestStatus.ACTIVE)
OVER = (RequestStatus.REVOKED, RequestStatus.FAILED, RequestStatus.DENIED)


def policy_engine() -> PolicyEngine:
    return policy_engine_for(RULES)


def allowed_request(
    estate: Estate, role_name: str = "orders-service", deps: Any = None, reason: str = "fault test"
) -> str:
    """A submitted and allowed (not yet issued) request of ``role_name`` for 10 minutes.

    The same caller and reason is the same submission (idempotent): a second request needs another reason.
    """
    return decided_request(estate, Outcome.ALLOW, role_name=role_name, deps=deps, reason=reason)


def approval_request(estate: Estate) -> str:
    """A submitted request of orders-service (as app_ro) that policy allows after one approval from db-owners."""
    return decided_request(estate, Outcome.NEEDS_APPROVAL, db_user="app_ro")


def decided_request(
    estate: Estate,
    outcome: Outcome,
    *,
    role_name: str = "orders-service",
    db_user: str = "app_rw",
    deps: Any = None,
    reason: str = "fault test",
) -> str:
    deps = deps or estate.deps
    caller = workload_caller(deps.iam, role_name)
    body = {"database": "orders-prod", "db_user": db_user, "duration_minutes": GRANT_MINUTES, "reason": reason}
    answer = submit_request(AccessRequestSubmission.model_validate(body), caller, deps)
    assert evaluate_request(answer.request_id, policy_engine(), deps).outcome == outcome
    return answer.request_id


# ------------------------------------------------------------------ faults


def throttled(operation: str) -> ClientError:
    """What boto3 raises once its own (adaptive) retries gave up on IAM throttling."""
    return ClientError(
        {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        operation,
    )


def server_error(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "InternalServerError", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        },
        operation,
    )


class FaultyClient:
    """A boto3 client whose named operations raise the queued exceptions first, then work.

    ``FaultyClient(iam, delete_policy=[throttled("DeletePolicy")])``; paginators are the real ones.
    """

    def __init__(self, client: Any, **faults: list[BaseException]) -> None:
        self._client = client
        self.faults = {name: list(errors) for name, errors in faults.items()}
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self._client, name)
        if not callable(operation) or name.startswith(("get_paginator", "meta", "_")):
            return operation

        def maybe_fail(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            queue = self.faults.get(name)
            if queue:
                raise queue.pop(0)
            return operation(*args, **kwargs)

        return maybe_fail


class FaultyTable:
    """The grants table, whose UpdateItem to ``status`` fails ``times`` times (the write that follows an IAM change)."""

    def __init__(self, table: Any, status: RequestStatus, error: BaseException, times: int = 1) -> None:
        self._table = table
        self._status = status.value
        self._error = error
        self.remaining = times

    def update_item(self, **kwargs: Any) -> Any:
        values = kwargs.get("ExpressionAttributeValues", {})
        if (
            self.remaining > 0
            and values.get(":u0") == self._status
            and kwargs.get("ExpressionAttributeNames", {}).get("#u0p0") == "status"
        ):
            self.remaining -= 1
            raise self._error
        return self._table.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def store_failing(estate: Estate, status: RequestStatus, error: BaseException, times: int = 1) -> GrantsStore:
    table = estate.session.resource("dynamodb").Table(estate.deps.settings.grants_table)
    return GrantsStore(FaultyTable(table, status, error, times))


# ------------------------------------------------------------------ the clock


def move_clock(monkeypatch: pytest.MonkeyPatch, minutes: float) -> datetime:
    """Move the grants module's clock ``minutes`` from now (past a 10-minute grant with 11)."""
    moment = utc_now() + timedelta(minutes=minutes)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: moment)
    return moment


# ------------------------------------------------------------------ the invariant


def grant_policies(estate: Any) -> dict[str, dict[str, Any]]:
    iam = estate.session.client("iam")
    pages = iam.get_paginator("list_policies").paginate(Scope="Local", PathPrefix=estate.deps.settings.grants_path)
    return {policy["PolicyName"]: policy for page in pages for policy in page["Policies"]}


def grant_records(estate: Any) -> list[dict[str, Any]]:
    table = estate.session.resource("dynamodb").Table(estate.deps.settings.grants_table)
    scan: dict[str, Any] = {"ConsistentRead": True}
    items: list[dict[str, Any]] = []
    while True:
        page = table.scan(**scan)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def attached_to(estate: Any, policy_arn: str) -> list[str]:
    iam = estate.session.client("iam")
    pages = iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=policy_arn)
    found: list[str] = []
    for page in pages:
        found += [f"role/{role['RoleName']}" for role in page.get("PolicyRoles", [])]
        found += [f"user/{user['UserName']}" for user in page.get("PolicyUsers", [])]
        found += [f"group/{group['GroupName']}" for group in page.get("PolicyGroups", [])]
    return found


def sweep_then_check(
    estate: Estate, now: datetime, deps: Any = None, expected: Callable[[str], bool] | None = None
) -> SweepReport:
    """One sweep at ``now`` (the clock already moved there), then the invariant over the whole estate:

    - no grant outlives its expiry: every record still live (GRANTING/ACTIVE, indexed) expires after ``now``;
    - every request has exactly one record, and its status agrees with IAM: REVOKED/FAILED/DENIED and
      EXTENDED hold no policy and are out of the expiry index; ACTIVE has its policy, unchanged, attached
      to the holder role only; GRANTING (a half-made grant) is indexed by its expiry;
    - every policy under the grants path belongs to a live, unexpired record (no orphan).
    """
    deps = deps or estate.deps
    report = sweep_expired_grants(deps)
    assert report.failed == {}, report.failed
    check_estate(estate, now, deps, expected)
    return report


def check_estate(estate: Any, now: datetime, deps: Any = None, expected: Callable[[str], bool] | None = None) -> None:
    """The invariant of :func:`sweep_then_check` at ``now``, without sweeping (the local stack's sweeper did).

    ``estate`` needs ``session`` (its clients reach the account) and ``deps`` (``settings``,
    ``grants``, ``iam``), as :class:`tests.conftest.Estate` has them.
    """
    deps = deps or estate.deps
    now_iso = to_iso(now)
    items = grant_records(estate)
    slots = [item for item in items if item["request_id"].startswith(SLOT_PREFIX)]
    records = [item for item in items if not item["request_id"].startswith(SLOT_PREFIX)]
    ids = [item["request_id"] for item in records]
    assert {slot["holder"] for slot in slots} <= set(ids), "a grant slot held by a request with no record"
    assert len(ids) == len(set(ids)), "a request with more than one record"
    policies = grant_policies(estate)
    by_id = {}
    for item in records:
        request = deps.grants.get(item["request_id"])
        by_id[request.request_id] = request
        name = policy_name_for(request.request_id)
        indexed = item.get("active_shard") is not None
        if request.status in LIVE:
            assert request.grant is not None
            assert request.grant.expires_at > now_iso, f"{request.request_id} {request.status} outlives its expiry"
            assert indexed and item["expires_at"] == request.grant.expires_at, f"{request.request_id} not indexed"
        else:
            assert not indexed, f"{request.request_id} is {request.status} but still in the expiry index"
            assert name not in policies, f"{request.request_id} is {request.status} but its policy exists"
        if request.status == RequestStatus.ACTIVE:
            assert request.grant is not None
            assert name in policies, f"{request.request_id} is ACTIVE without its policy"
            document = current_policy_document(request.grant.policy_arn, deps)
            assert grant_policy_problems(document, request.grant.resource_arn, request.grant.expires_at) == []
            assert attached_to(estate, request.grant.policy_arn) == [f"role/{request.role_name}"]
        if request.status in OVER and request.grant is not None and request.status != RequestStatus.DENIED:
            assert request.grant.revoked_at is not None or request.status == RequestStatus.FAILED
    for name in policies:
        grant_id = name.removeprefix(POLICY_NAME_PREFIX)
        assert grant_id in by_id, f"orphan policy {name}: no record"
        assert by_id[grant_id].status in LIVE, f"policy {name} outlives its {by_id[grant_id].status} record"
    if expected is not None:
        assert all(expected(request_id) for request_id in by_id)


def audit_write_fails_once(estate: Estate, monkeypatch: pytest.MonkeyPatch, event_type: AuditEventType) -> None:
    """The next audit write of ``event_type`` fails (the audit table is unavailable); later ones succeed."""
    original_append = estate.deps.audit.append
    failures = iter([RuntimeError("audit table unavailable")])

    def failing_once(kind: AuditEventType, **kwargs: Any) -> Any:
        if kind == event_type:
            error = next(failures, None)
            if error is not None:
                raise error
        return original_append(kind, **kwargs)

    monkeypatch.setattr(estate.deps.audit, "append", failing_once)
