"""Faults while revoking (in-process emulated account): IAM throttling or failing at each step of
the removal, and the DynamoDB write after IAM confirmed the deletion failing. Nothing is recorded
as revoked until IAM confirms; the next sweep finishes the job, and a sweep that could not raises
an alarm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest
from moto.iam.exceptions import IAMException
from moto.iam.models import IAMBackend

from accessctl import aws, config, dependencies
from accessctl.errors import TransientError
from accessctl.grants import SweepReport, issue_grant, revoke_grant, sweep_expired_grants
from accessctl.models import AuditEventType, RequestStatus, RevokeReason, to_iso
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
from tests.support.handlers import FakeLambdaContext, load_handler
from tests.support.template import resources

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

    with pytest.raises(TransientError, match="still exists after deletion"):
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


# ------------------------------------------------------------------ a revocation that still fails is alarmed


def emitted_metrics(output: str) -> dict[str, float]:
    """Metric name -> value of every EMF data point printed (namespace accessctl, dimension service)."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "_aws" not in record:
            continue
        for directive in record["_aws"]["CloudWatchMetrics"]:
            if directive["Namespace"] != "accessctl" or record.get("service") != "accessctl":
                continue
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                found[metric["Name"]] = found.get(metric["Name"], 0.0) + sum(
                    value if isinstance(value, list) else [value]
                )
    return found


def alarmed_metrics() -> set[str]:
    """The accessctl metrics whose first data point above zero sets off an alarm that notifies the topic:
    an alarm on the metric's sum, or on an expression adding up the sums of several (each FILLed with 0)."""
    alarmed = set()
    service = [{"Name": "service", "Value": "accessctl"}]
    for alarm in resources("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if not (
            properties.get("ComparisonOperator") == "GreaterThanThreshold"
            and properties.get("Threshold") == 0
            and {"Ref": "NotificationsTopic"} in properties.get("AlarmActions", [])
        ):
            continue
        if properties.get("Namespace") == "accessctl" and properties.get("Dimensions") == service:
            if properties.get("Statistic") == "Sum":
                alarmed.add(properties["MetricName"])
            continue
        queries = properties.get("Metrics", [])
        returned = [query for query in queries if query.get("ReturnData")]
        if len(returned) != 1 or "Expression" not in returned[0]:
            continue
        terms = {term.strip() for term in returned[0]["Expression"].split("+")}
        for query in queries:
            stat = query.get("MetricStat", {})
            metric = stat.get("Metric", {})
            if (
                metric.get("Namespace") == "accessctl"
                and metric.get("Dimensions") == service
                and stat.get("Stat") == "Sum"
                and f"FILL({query['Id']}, 0)" in terms
            ):
                alarmed.add(metric["MetricName"])
    return alarmed


@pytest.fixture
def sweeper(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The deployed sweeper's handler, on a process's own dependencies (read from the environment)."""
    settings = estate.deps.settings
    for name, value in {"GRANTS_TABLE": settings.grants_table, "AUDIT_TABLE": settings.audit_table}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "accessctl")
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    monkeypatch.setattr("botocore.retries.adaptive.ClientRateLimiter.on_sending_request", lambda self, **kwargs: None)

    def forget() -> None:
        for cached in (dependencies.default_dependencies, aws.client, aws.resource, config.get_settings):
            cached.cache_clear()

    forget()
    yield load_handler("sweep_grants")
    forget()


def test_given_iam_keeps_failing_a_revocation_when_the_sweeper_gives_up_on_it_then_an_alarm_is_raised(
    estate: Estate,
    orders: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sweeper: ModuleType,
) -> None:
    # Given a grant past expiry whose workflow is gone, and IAM refusing to delete its policy
    request_id = issued(estate)
    move_clock(monkeypatch, 11)

    def still_throttled(self: IAMBackend, policy_arn: str) -> None:
        raise IAMException("Throttling", "Rate exceeded")

    monkeypatch.setattr(IAMBackend, "delete_policy", still_throttled)
    capsys.readouterr()

    # When the scheduled sweep runs (the deployed handler)
    report = sweeper.lambda_handler({"source": "aws.scheduler"}, FakeLambdaContext())

    # Then the grant is not recorded revoked, and what the sweep reported sets off an alarm
    assert list(report["failed"]) == [request_id]
    assert estate.deps.grants.get(request_id).status == RequestStatus.ACTIVE
    failures = {name for name, value in emitted_metrics(capsys.readouterr().out).items() if value > 0}
    assert failures & alarmed_metrics(), f"no alarm on any of {sorted(failures)}"


# ------------------------------------------------------------------ two revokers, and an index behind the table


def test_given_the_sweeper_revokes_while_the_workflow_is_revoking_when_both_finish_then_one_revocation_is_recorded(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant past expiry whose workflow has started revoking it
    request_id = issued(estate)
    now = move_clock(monkeypatch, 11)
    sweeps: list[SweepReport] = []

    class SweepRunsMeanwhile(FaultyClient):
        def delete_policy(self, **kwargs: Any) -> Any:
            if not sweeps:  # the every-minute sweep runs between the workflow's detach and its delete
                sweeps.append(sweep_expired_grants(estate.deps))
            return self._client.delete_policy(**kwargs)

    # When the sweeper revokes it in the meantime, and the workflow carries on
    revocation = revoke_grant(
        request_id, RevokeReason.EXPIRED, "workflow", replace(estate.deps, iam=SweepRunsMeanwhile(estate.deps.iam))
    )

    # Then the first to record it keeps it: one GRANT_REVOKED, by the sweeper, and the workflow is told
    assert sweeps[0].revoked == [request_id]
    assert revocation.status == "ALREADY_REVOKED"
    record = estate.deps.grants.get(request_id)
    assert record.grant is not None and record.grant.revoke_reason == RevokeReason.SWEEP
    revoked = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_REVOKED]
    assert [event.actor for event in revoked] == ["sweeper"]
    sweep_then_check(estate, now)


def test_given_the_index_still_shows_an_extended_grants_old_expiry_when_swept_then_it_stays_until_the_new_one(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant extended five minutes after it was issued, and the expiry index (a global
    # secondary index: eventually consistent) still listing it by its first expiry
    first = issued(estate)
    as_first_indexed = estate.deps.grants.get(first)
    move_clock(monkeypatch, 5)
    issue_grant(allowed_request(estate, reason="second start"), estate.deps)
    extended = estate.deps.grants.get(first).grant
    assert extended is not None and as_first_indexed.grant is not None
    assert extended.expires_at > as_first_indexed.grant.expires_at
    now = move_clock(monkeypatch, 11)  # past the first expiry, before the new one
    monkeypatch.setattr(estate.deps.grants, "expired_active", lambda now: iter([as_first_indexed]))

    # When the sweeper runs
    report = sweep_then_check(estate, now)

    # Then the grant is left live until its new expiry, and the sweep reports nothing revoked
    assert report.revoked == []
    assert estate.deps.grants.get(first).status == RequestStatus.ACTIVE
    assert estate.attached("orders-service") == [extended.policy_arn]


def test_given_the_index_still_lists_a_grant_its_workflow_revoked_when_swept_then_nothing_is_reported_revoked(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant its workflow revoked at expiry, still listed by the (eventually consistent) expiry index
    request_id = issued(estate)
    now = move_clock(monkeypatch, 11)
    as_indexed = estate.deps.grants.get(request_id)
    assert revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps).status == "REVOKED"
    monkeypatch.setattr(estate.deps.grants, "expired_active", lambda now: iter([as_indexed]))

    # When the sweeper runs
    report = sweep_then_check(estate, now)

    # Then it reports nothing revoked: SweeperRevoked (GrantPastExpiryAlarm) counts grants the workflow missed
    assert report.revoked == []
    record = estate.deps.grants.get(request_id)
    assert record.grant is not None and record.grant.revoke_reason == RevokeReason.EXPIRED


def test_given_a_grant_being_revoked_at_expiry_when_its_role_asks_again_meanwhile_then_the_new_access_is_not_lost(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant past its expiry whose workflow is revoking it (between the detach and the delete)
    first = issued(estate)
    now = move_clock(monkeypatch, 10.1)
    second: list[str] = []

    class RequestArrivesMeanwhile(FaultyClient):
        def delete_policy(self, **kwargs: Any) -> Any:
            if not second:  # the role asks again for the same database user, and is allowed
                second.append(allowed_request(estate, reason="asked again at expiry"))
                issue_grant(second[0], estate.deps)
            return self._client.delete_policy(**kwargs)

    # When the revocation finishes
    revoked = revoke_grant(
        first, RevokeReason.EXPIRED, "workflow", replace(estate.deps, iam=RequestArrivesMeanwhile(estate.deps.iam))
    )

    # Then the expired grant is revoked, and the new request holds a live grant of its own, attached,
    # rather than an extension of the policy being deleted
    assert revoked.status == "REVOKED"
    record = estate.deps.grants.get(second[0])
    assert record.status == RequestStatus.ACTIVE and record.grant is not None
    assert record.grant.expires_at > to_iso(now)
    assert estate.attached("orders-service") == [record.grant.policy_arn]
    sweep_then_check(estate, now)


# ------------------------------------------------------------------ a backlog larger than one run


def test_given_more_expired_grants_than_one_run_has_time_for_when_swept_then_it_stops_in_time_and_the_next_finishes(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two grants past expiry (a backlog), and a sweep whose Lambda has time for one of them
    first, second = issued(estate, "orders-service"), issued(estate, "reporting-job")
    now = move_clock(monkeypatch, 11)
    seconds_left = iter([120.0, 120.0, 20.0])  # as the run starts, before the first grant, before the second

    # When the sweep runs
    report = sweep_expired_grants(estate.deps, seconds_left=lambda: next(seconds_left))

    # Then it revokes one, stops before the Lambda's timeout (so it ends normally, and its metrics
    # and report are emitted), and says it left work for the next run, which finishes it
    assert len(report.revoked) == 1 and report.failed == {}
    assert report.out_of_time is True
    assert set(report.revoked + sweep_then_check(estate, now).revoked) == {first, second}
