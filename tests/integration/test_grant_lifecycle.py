"""The grant lifecycle's use cases against the emulated account (no workflow): issue, revoke,
compensate, sweep, and refuse what is out of scope without touching IAM."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest

import accessctl.grants
from accessctl.access_requests import submit_request
from accessctl.errors import ForbiddenError, TransientError
from accessctl.grant_policy import grant_policy_problems
from accessctl.grants import evaluate_request, issue_grant, revoke_grant, sweep_expired_grants
from accessctl.models import (
    AccessRequest,
    AccessRequestSubmission,
    AuditEventType,
    Caller,
    Grant,
    Outcome,
    RequestStatus,
    RevokeReason,
    to_iso,
    utc_now,
)
from accessctl.policy import PolicyEngine
from accessctl.store import GrantSlot, grant_slot_key
from tests.conftest import ACCOUNT_ID, Estate
from tests.support.requests import policy_engine_for, workload_caller

# One workload rule, as a security engineer would write it; the schema is the project's own.
ORDERS_POLICY = """
@id("orders")
@outcome("auto")
@max_minutes("15")
permit (principal == Role::"orders-service", action == Action::"connect", resource in Database::"orders-prod")
when { resource.name == "app_rw" };
"""


def policy_engine() -> PolicyEngine:
    return policy_engine_for(ORDERS_POLICY)


def caller_for(estate: Estate, role_name: str, account_id: str = ACCOUNT_ID) -> Caller:
    return workload_caller(estate.deps.iam, role_name, account_id=account_id)


def submission(**overrides: Any) -> AccessRequestSubmission:
    body = {"database": "orders-prod", "db_user": "app_rw", "duration_minutes": 10, "reason": "service startup"}
    return AccessRequestSubmission.model_validate({**body, **overrides})


@pytest.fixture
def orders(estate: Estate) -> dict[str, Any]:
    estate.role("orders-service", path="/workloads/")
    return estate.postgres("orders-prod")


def after_expiry(monkeypatch: pytest.MonkeyPatch, minutes: int = 11) -> None:
    """Move the grants module's clock past the 10-minute grants these tests make."""
    later = utc_now() + timedelta(minutes=minutes)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: later)


def granted_request(estate: Estate, reason: str = "service startup") -> str:
    answer = submit_request(submission(reason=reason), caller_for(estate, "orders-service"), estate.deps)
    assert evaluate_request(answer.request_id, policy_engine(), estate.deps).outcome == Outcome.ALLOW
    issue_grant(answer.request_id, estate.deps)
    return answer.request_id


def test_given_an_allowed_request_when_issued_then_one_expiring_policy_is_attached_to_the_role(
    estate: Estate, orders: dict[str, Any]
) -> None:
    request_id = granted_request(estate)

    (policy,) = estate.grant_policies()
    assert estate.attached("orders-service") == [policy["Arn"]]
    iam = estate.session.client("iam")
    document = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])["PolicyVersion"][
        "Document"
    ]
    record = estate.deps.grants.get(request_id)
    expected_resource = f"arn:aws:rds-db:us-east-1:{ACCOUNT_ID}:dbuser:{orders['DbiResourceId']}/app_rw"
    assert record.status == RequestStatus.ACTIVE
    assert grant_policy_problems(document, expected_resource, record.grant.expires_at if record.grant else None) == []
    tags = {tag["Key"]: tag["Value"] for tag in iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"]}
    assert tags["accessctl:grant-id"] == request_id
    assert tags["accessctl:expires-at"] == record.grant.expires_at if record.grant else False


def test_given_an_issued_grant_when_issue_runs_again_then_there_is_still_one_policy(
    estate: Estate, orders: dict[str, Any]
) -> None:
    request_id = granted_request(estate)

    issue_grant(request_id, estate.deps)

    assert len(estate.grant_policies()) == 1


def test_given_a_same_key_resubmission_when_submitted_then_the_same_request_is_returned(
    estate: Estate, orders: dict[str, Any]
) -> None:
    caller = caller_for(estate, "orders-service")
    first = submit_request(submission(idempotency_key="boot-42"), caller, estate.deps)
    second = submit_request(submission(idempotency_key="boot-42"), caller, estate.deps)

    assert first.request_id == second.request_id


def test_given_a_grant_when_revoked_then_the_policy_is_gone_and_it_is_audited(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    after_expiry(monkeypatch)

    revocation = revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps)

    assert revocation.detached_from == ["orders-service"]
    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []
    record = estate.deps.grants.get(request_id)
    assert record.status == RequestStatus.REVOKED
    assert record.grant is not None and record.grant.revoke_reason == RevokeReason.EXPIRED
    events = [event.event_type for event in estate.deps.audit.for_subject(request_id)]
    assert events == [
        AuditEventType.REQUEST_SUBMITTED,
        AuditEventType.REQUEST_DECIDED,
        AuditEventType.GRANT_ISSUED,
        AuditEventType.GRANT_REVOKED,
    ]


def test_given_a_revoked_grant_when_revoked_again_then_it_counts_as_revoked(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    after_expiry(monkeypatch)
    revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps)

    assert revoke_grant(request_id, RevokeReason.SWEEP, "sweeper", estate.deps).status == "ALREADY_REVOKED"


class FailingAttach:
    """An IAM client whose AttachRolePolicy fails: the policy exists, the attach never happens."""

    def __init__(self, iam: Any) -> None:
        self._iam = iam

    def attach_role_policy(self, **kwargs: Any) -> Any:
        raise RuntimeError("injected: attach failed after the policy was created")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iam, name)


def test_given_attach_fails_after_create_when_compensated_then_no_policy_is_left(
    estate: Estate, orders: dict[str, Any]
) -> None:
    from dataclasses import replace

    answer = submit_request(submission(), caller_for(estate, "orders-service"), estate.deps)
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    failing = replace(estate.deps, iam=FailingAttach(estate.deps.iam))
    with pytest.raises(RuntimeError):
        issue_grant(answer.request_id, failing)
    assert len(estate.grant_policies()) == 1  # the half-made grant

    revoke_grant(answer.request_id, RevokeReason.COMPENSATION, "workflow", estate.deps)

    assert estate.grant_policies() == []
    assert estate.deps.grants.get(answer.request_id).status == RequestStatus.FAILED


class RecordWatcher:
    """A grants table that keeps the item as it stands after every write (what a reader could see)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.seen: list[dict[str, Any]] = []

    def update_item(self, **kwargs: Any) -> Any:
        answer = self._table.update_item(**kwargs)
        self.seen.append(self._table.get_item(Key=kwargs["Key"], ConsistentRead=True)["Item"])
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_given_attach_fails_when_compensated_with_the_step_error_then_failed_and_why_are_written_together(
    estate: Estate, orders: dict[str, Any]
) -> None:
    from dataclasses import replace

    from accessctl.store import GrantsStore

    # Given a grant whose attach failed after its policy was created
    answer = submit_request(submission(), caller_for(estate, "orders-service"), estate.deps)
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    with pytest.raises(RuntimeError):
        issue_grant(answer.request_id, replace(estate.deps, iam=FailingAttach(estate.deps.iam)))
    watcher = RecordWatcher(estate.session.resource("dynamodb").Table(estate.deps.settings.grants_table))
    watched = replace(estate.deps, grants=GrantsStore(watcher))

    # When the workflow compensates it, passing on the step's error
    revoke_grant(
        answer.request_id,
        RevokeReason.COMPENSATION,
        "workflow",
        watched,
        failure="RuntimeError: injected: attach failed after the policy was created",
    )

    # Then no reader ever sees the request FAILED without its reason
    assert estate.grant_policies() == []
    failed = [item for item in watcher.seen if item["status"] == RequestStatus.FAILED.value]
    assert failed, watcher.seen
    assert all("attach failed" in item.get("failure", "") for item in failed)
    assert all("active_shard" not in item for item in failed)
    record = estate.deps.grants.get(answer.request_id)
    assert record.status == RequestStatus.FAILED
    assert record.failure == "RuntimeError: injected: attach failed after the policy was created"


def test_given_a_grant_past_expiry_when_the_sweeper_runs_then_it_is_revoked(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    later = utc_now() + timedelta(minutes=11)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: later)

    report = sweep_expired_grants(estate.deps)

    assert report.revoked == [request_id]
    assert estate.grant_policies() == []
    assert estate.deps.grants.get(request_id).grant.revoke_reason == RevokeReason.SWEEP  # type: ignore[union-attr]


def test_given_only_unexpired_grants_when_the_sweeper_runs_then_nothing_is_touched(
    estate: Estate, orders: dict[str, Any]
) -> None:
    granted_request(estate)
    holders = HolderNotices()

    report = sweep_expired_grants(estate.deps, holders=holders.factory)

    assert (report.examined, report.revoked) == (0, [])
    assert len(estate.grant_policies()) == 1
    assert holders.made == 0  # no channel (nor its secret) is set up for a sweep that revokes nothing


class HolderNotices:
    """The sweeper's notifier factory: what it was asked to send, and how often it was made."""

    def __init__(self, fails: bool = False) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.made = 0
        self._fails = fails

    def factory(self) -> HolderNotices:
        self.made += 1
        return self

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        if self._fails:
            raise RuntimeError("injected: every channel failed")
        self.sent.append((event, request.request_id, request.status))


def test_given_a_grant_past_expiry_when_the_sweeper_revokes_it_then_its_holder_is_told_once(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant past expiry that no workflow revoked
    request_id = granted_request(estate)
    after_expiry(monkeypatch)
    holders = HolderNotices()

    # When the sweeper runs, then again
    first = sweep_expired_grants(estate.deps, holders=holders.factory)
    sweep_expired_grants(estate.deps, holders=holders.factory)

    # Then its holder was told of the revocation once, as the workflow tells it (the record already revoked)
    assert first.revoked == [request_id]
    assert holders.sent == [("REVOKED", request_id, RequestStatus.REVOKED)]
    assert holders.made == 1


def test_given_every_channel_failing_when_the_sweeper_revokes_then_the_revocation_stands(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    after_expiry(monkeypatch)

    report = sweep_expired_grants(estate.deps, holders=HolderNotices(fails=True).factory)

    assert (report.revoked, report.failed) == ([request_id], {})
    assert estate.grant_policies() == []
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED


@pytest.mark.parametrize(
    ("make_caller", "message"),
    [
        (lambda estate: caller_for(estate, "not-opted-in"), "not enabled for accessctl"),
        (lambda estate: caller_for(estate, "orders-service", account_id="210987654321"), "account 210987654321"),
        (
            lambda estate: Caller(
                principal_arn=f"arn:aws:iam::{ACCOUNT_ID}:user/alice", account_id=ACCOUNT_ID, partition="aws"
            ),
            "IAM roles",
        ),
    ],
    ids=["role without opt-in tag", "another account's role", "an IAM user"],
)
def test_given_a_caller_out_of_scope_when_submitting_then_it_is_refused_and_iam_is_unchanged(
    estate: Estate, orders: dict[str, Any], make_caller: Any, message: str
) -> None:
    estate.role("not-opted-in", opted_in=False)
    policies_before = estate.session.client("iam").list_policies(Scope="Local")["Policies"]

    with pytest.raises(ForbiddenError, match=message):
        submit_request(submission(), make_caller(estate), estate.deps)

    assert estate.session.client("iam").list_policies(Scope="Local")["Policies"] == policies_before
    assert estate.attached("not-opted-in") == []


def test_given_the_opt_in_tag_removed_before_issue_when_issuing_then_nothing_is_attached(
    estate: Estate, orders: dict[str, Any]
) -> None:
    answer = submit_request(submission(), caller_for(estate, "orders-service"), estate.deps)
    evaluate_request(answer.request_id, policy_engine(), estate.deps)
    estate.session.client("iam").untag_role(RoleName="orders-service", TagKeys=["accessctl-grantable"])

    with pytest.raises(ForbiddenError):
        issue_grant(answer.request_id, estate.deps)

    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []


def test_given_the_audit_trail_when_read_then_the_issued_document_is_recorded(
    estate: Estate, orders: dict[str, Any]
) -> None:
    request_id = granted_request(estate)

    issued = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_ISSUED]

    assert issued[0].details["policy_document"]["Statement"][0]["Action"] == "rds-db:connect"
    assert json.dumps(issued[0].details)  # plain JSON, exportable


def test_given_a_grant_at_exactly_its_expiry_second_when_the_sweeper_runs_then_it_is_revoked(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # DateLessThan: at the instant the grant names, the policy no longer works; the sweeper agrees.
    request_id = granted_request(estate)
    grant = estate.deps.grants.get(request_id).grant
    assert grant is not None
    at_expiry = datetime.strptime(grant.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: at_expiry)

    assert sweep_expired_grants(estate.deps).revoked == [request_id]


def test_given_an_active_grant_when_the_same_role_asks_again_then_that_grant_is_extended_not_duplicated(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = granted_request(estate)
    original = estate.deps.grants.get(first).grant
    assert original is not None
    later = utc_now() + timedelta(minutes=5)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: later)

    second = granted_request(estate, reason="second start")

    (policy,) = estate.grant_policies()
    extended = estate.deps.grants.get(first).grant
    assert extended is not None
    assert extended.expires_at == to_iso(later + timedelta(minutes=10))
    assert extended.extended_by == [second]
    follow_up = estate.deps.grants.get(second)
    assert (follow_up.status, follow_up.extends) == (RequestStatus.EXTENDED, first)
    iam = estate.session.client("iam")
    versions = iam.list_policy_versions(PolicyArn=policy["Arn"])["Versions"]
    assert len(versions) == 1  # one version per grant, whatever the number of extensions
    document = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=versions[0]["VersionId"])["PolicyVersion"]
    assert grant_policy_problems(document["Document"], original.resource_arn, extended.expires_at) == []


def test_given_an_extended_grant_when_its_first_expiry_passes_then_revoke_waits_for_the_new_one(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = granted_request(estate)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: utc_now() + timedelta(minutes=5))
    granted_request(estate, reason="second start")
    extended = estate.deps.grants.get(first).grant
    assert extended is not None

    revocation = revoke_grant(first, RevokeReason.EXPIRED, "workflow", estate.deps)

    assert (revocation.status, revocation.expires_at) == ("EXTENDED", extended.expires_at)
    assert len(estate.grant_policies()) == 1


def test_given_many_extensions_when_each_is_made_then_iams_five_version_limit_is_never_reached(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = granted_request(estate)
    for minutes in range(1, 8):
        moment = utc_now() + timedelta(minutes=minutes)
        monkeypatch.setattr("accessctl.grants.utc_now", lambda moment=moment: moment)
        granted_request(estate, reason=f"restart {minutes}")

    record = estate.deps.grants.get(first)
    assert record.grant is not None and len(record.grant.extended_by) == 7
    (policy,) = estate.grant_policies()
    assert len(estate.session.client("iam").list_policy_versions(PolicyArn=policy["Arn"])["Versions"]) == 1


def test_given_a_role_at_its_managed_policy_quota_when_granting_then_refused_before_any_change(
    estate: Estate, orders: dict[str, Any]
) -> None:
    from accessctl.errors import QuotaExceededError

    iam = estate.session.client("iam")
    for index in range(10):
        arn = iam.create_policy(PolicyName=f"team-{index}", PolicyDocument=json.dumps(_READ_ONLY))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName="orders-service", PolicyArn=arn)
    answer = submit_request(submission(), caller_for(estate, "orders-service"), estate.deps)
    evaluate_request(answer.request_id, policy_engine(), estate.deps)

    with pytest.raises(QuotaExceededError, match="already has 10 managed policies"):
        issue_grant(answer.request_id, estate.deps)

    assert estate.grant_policies() == []
    assert estate.deps.grants.get(answer.request_id).grant is None


_READ_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}


# ------------------------------------------------------------------ one grant per role and database user


def allowed_request(estate: Estate, reason: str) -> str:
    answer = submit_request(submission(reason=reason), caller_for(estate, "orders-service"), estate.deps)
    assert evaluate_request(answer.request_id, policy_engine(), estate.deps).outcome == Outcome.ALLOW
    return answer.request_id


def issue_as_the_workflow_does(request_id: str, deps: Any) -> Grant:
    """The IssueGrant step with its Retry on TransientError: five attempts, the waits doubling."""
    for wait in (0.5, 1, 2, 4):
        try:
            return issue_grant(request_id, deps)
        except TransientError:
            time.sleep(wait)
    return issue_grant(request_id, deps)


def test_given_two_requests_for_the_same_access_issued_at_the_same_moment_then_one_policy_serves_both(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two allowed requests of one role for the same database user, whose grant steps both
    # look for a live grant to extend before either has made one
    first, second = allowed_request(estate, "replica 1 startup"), allowed_request(estate, "replica 2 startup")
    both_looked = threading.Barrier(2)
    looked: set[str] = set()
    extendable = accessctl.grants._extendable_grants

    def look_together(request: AccessRequest, deps: Any) -> list[AccessRequest]:
        found = extendable(request, deps)
        if request.request_id not in looked:
            looked.add(request.request_id)
            both_looked.wait(timeout=30)
        return found

    monkeypatch.setattr("accessctl.grants._extendable_grants", look_together)

    # When both are issued at once
    with ThreadPoolExecutor(max_workers=2) as steps:
        grants = list(
            steps.map(lambda request_id: issue_as_the_workflow_does(request_id, estate.deps), [first, second])
        )

    # Then one policy exists: one request holds it, the other extended it
    (policy,) = estate.grant_policies()
    records = {record.status: record for record in map(estate.deps.grants.get, (first, second))}
    assert set(records) == {RequestStatus.ACTIVE, RequestStatus.EXTENDED}
    holder, extension = records[RequestStatus.ACTIVE], records[RequestStatus.EXTENDED]
    assert extension.extends == holder.request_id
    assert holder.grant is not None and holder.grant.policy_arn == policy["Arn"]
    assert {grant.policy_arn for grant in grants} == {policy["Arn"]}
    assert estate.attached("orders-service") == [policy["Arn"]]


def test_given_the_slots_grant_was_revoked_early_when_the_role_asks_again_then_it_gets_a_grant_of_its_own(
    estate: Estate, orders: dict[str, Any]
) -> None:
    first = granted_request(estate)
    revoke_grant(first, RevokeReason.EARLY, "orders-service", estate.deps)

    second = granted_request(estate, reason="after the early revoke")

    record = estate.deps.grants.get(second)
    assert (record.status, record.extends) == (RequestStatus.ACTIVE, None)
    assert [policy["PolicyName"] for policy in estate.grant_policies()] == [record.grant.policy_name]  # type: ignore[union-attr]


def test_given_a_request_holding_the_slot_while_its_grant_is_made_when_another_is_issued_then_it_waits_unchanged(
    estate: Estate, orders: dict[str, Any]
) -> None:
    # Given a request that has claimed the slot a moment ago and is about to make its grant
    making = allowed_request(estate, "replica 1 startup")
    key = grant_slot_key(orders_role_arn(estate), "orders-prod", "app_rw")
    assert estate.deps.grants.claim_slot(key, making, now=to_iso(utc_now())) is None
    waiting = allowed_request(estate, "replica 2 startup")

    # When the other request's grant step runs, then it is told to come back (the workflow retries it)
    with pytest.raises(TransientError, match="being issued"):
        issue_grant(waiting, estate.deps)

    # and nothing was made or recorded for it
    assert estate.grant_policies() == []
    assert estate.deps.grants.get(waiting).grant is None


def test_given_a_slot_holder_that_stopped_before_making_its_grant_when_another_is_issued_then_it_takes_the_slot(
    estate: Estate, orders: dict[str, Any]
) -> None:
    # Given a request that claimed the slot a minute ago and never made its grant (its step was refused)
    stopped = allowed_request(estate, "refused at the quota")
    key = grant_slot_key(orders_role_arn(estate), "orders-prod", "app_rw")
    assert estate.deps.grants.claim_slot(key, stopped, now=to_iso(utc_now() - timedelta(minutes=1))) is None
    later = allowed_request(estate, "a later start")

    # When another request is issued
    issue_grant(later, estate.deps)

    # Then it has a grant of its own, and holds the slot for the next one to extend
    record = estate.deps.grants.get(later)
    assert (record.status, record.extends) == (RequestStatus.ACTIVE, None)
    assert len(estate.grant_policies()) == 1
    assert estate.deps.grants.claim_slot(key, "someone-else", now=to_iso(utc_now())) == GrantSlot(
        holder=later, claimed_at=ANY
    )


def orders_role_arn(estate: Estate) -> str:
    return f"arn:aws:iam::{ACCOUNT_ID}:role/workloads/orders-service"


def test_given_a_stalled_grant_whose_slot_was_taken_over_when_its_step_runs_again_then_it_makes_no_second_grant(
    estate: Estate, orders: dict[str, Any]
) -> None:
    from dataclasses import replace

    from accessctl.errors import ConflictError
    from tests.faults.support import FaultyClient, throttled

    # Given a grant step that stopped after recording GRANTING (IAM refused the policy), minutes ago
    stalled = allowed_request(estate, "replica 1 startup")
    failing = replace(estate.deps, iam=FaultyClient(estate.deps.iam, create_policy=[throttled("CreatePolicy")]))
    with pytest.raises(TransientError):
        issue_grant(stalled, failing)
    assert estate.deps.grants.get(stalled).status == RequestStatus.GRANTING
    key = grant_slot_key(orders_role_arn(estate), "orders-prod", "app_rw")
    assert estate.deps.grants.claim_slot(key, stalled, now=to_iso(utc_now() - timedelta(minutes=6))) is None
    # and another request that took its slot over and holds a grant of its own
    later = allowed_request(estate, "replica 2 startup")
    issue_grant(later, estate.deps)
    assert estate.deps.grants.get(later).status == RequestStatus.ACTIVE

    # When the stalled step runs again, then it refuses to complete its grant (its compensation cleans up)
    with pytest.raises(ConflictError, match="took over the grant slot"):
        issue_grant(stalled, estate.deps)
    assert [policy["PolicyName"] for policy in estate.grant_policies()] == [
        estate.deps.grants.get(later).grant.policy_name  # type: ignore[union-attr]
    ]
