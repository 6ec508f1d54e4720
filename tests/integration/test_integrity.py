"""The integrity sweep: orphaned and tampered grant policies are found, removed and recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from accessctl.grant_policy import build_grant_policy
from accessctl.grants import revoke_grant
from accessctl.integrity import check_policies, sweep_integrity
from accessctl.models import AuditEventType, RequestStatus, RevokeReason
from accessctl.notify import SnsNotifier
from tests.conftest import Estate
from tests.integration.test_grant_lifecycle import after_expiry, granted_request


@pytest.fixture
def grant(estate: Estate) -> str:
    estate.role("orders-service", path="/workloads/")
    estate.postgres("orders-prod")
    return granted_request(estate)


def _policy_arn(estate: Estate, request_id: str) -> str:
    record = estate.deps.grants.get(request_id)
    assert record.grant is not None
    return record.grant.policy_arn


def new_default_version(document_change: Callable[[dict[str, Any]], None]) -> Callable[[Estate, str], None]:
    def tamper(estate: Estate, request_id: str) -> None:
        record = estate.deps.grants.get(request_id)
        assert record.grant is not None
        document = build_grant_policy(record.grant.resource_arn, record.grant.expires_at)
        document_change(document["Statement"][0])
        estate.session.client("iam").create_policy_version(
            PolicyArn=record.grant.policy_arn, PolicyDocument=json.dumps(document), SetAsDefault=True
        )

    return tamper


def attach_to_another_role(estate: Estate, request_id: str) -> None:
    estate.role("intruder", opted_in=False)
    estate.session.client("iam").attach_role_policy(RoleName="intruder", PolicyArn=_policy_arn(estate, request_id))


TAMPERINGS = {
    "condition removed": (new_default_version(lambda s: s.pop("Condition")), "DateLessThan"),
    "resource widened": (
        new_default_version(lambda s: s.update(Resource="*")),
        "Resource must be exactly one dbuser ARN",
    ),
    "expiry extended": (
        new_default_version(
            lambda s: s.update(Condition={"DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"}})
        ),
        "the expiry condition is 2099-01-01T00:00:00Z",
    ),
    "attached to another role": (attach_to_another_role, "attached to role/intruder"),
}


@pytest.mark.parametrize(("tamper", "why"), TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_given_a_tampered_grant_when_the_integrity_sweep_runs_then_it_is_removed_and_recorded_why(
    estate: Estate, grant: str, tamper: Callable[[Estate, str], None], why: str
) -> None:
    tamper(estate, grant)

    report = sweep_integrity(estate.deps)

    (finding,) = report.findings
    assert finding.kind == "tampered"
    assert any(why in problem for problem in finding.problems), finding.problems
    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []
    record = estate.deps.grants.get(grant)
    assert record.status == RequestStatus.REVOKED
    assert record.grant is not None and record.grant.revoke_reason == RevokeReason.TAMPERED
    audit = {event.event_type: event for event in estate.deps.audit.for_subject(grant)}
    assert why in (audit[AuditEventType.GRANT_TAMPERED].reason or "")


def test_given_an_intact_grant_when_the_integrity_sweep_runs_then_nothing_changes(estate: Estate, grant: str) -> None:
    report = sweep_integrity(estate.deps)

    assert (report.examined, report.findings, report.failed) == (1, [], {})
    assert estate.deps.grants.get(grant).status == RequestStatus.ACTIVE
    assert estate.attached("orders-service") == [_policy_arn(estate, grant)]


def test_given_a_policy_under_the_grants_path_without_a_record_when_swept_then_it_is_removed_and_operators_told(
    estate: Estate,
) -> None:
    # Given a grant-shaped policy no request issued, and the operators' topic
    estate.role("orders-service")
    arn = estate.hand_made_grant_policy("orders-service")
    topic, inbox = _operators_topic(estate)

    # When the integrity sweep runs
    report = sweep_integrity(estate.deps, SnsNotifier(estate.session.client("sns"), topic))

    # Then it is removed, and the operators are told which policy, why, at high severity
    assert [finding.kind for finding in report.findings] == ["orphan"]
    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []
    (message,) = inbox()
    body = json.loads(message["Body"])
    assert (body["event"], body["subject"]) == ("ORPHAN_REMOVED", arn)
    assert "no record" in body["summary"]
    assert message["MessageAttributes"]["severity"]["StringValue"] == "high"


def _operators_topic(estate: Estate) -> tuple[str, Callable[[], list[dict[str, Any]]]]:
    """An SNS topic with an SQS queue subscribed (raw delivery, attributes kept): what operators receive."""
    sns, sqs = estate.session.client("sns"), estate.session.client("sqs")
    topic = sns.create_topic(Name="operators")["TopicArn"]
    url = sqs.create_queue(QueueName="operators-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def received() -> list[dict[str, Any]]:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        return list(answer.get("Messages", []))

    return topic, received


def test_given_a_revoked_record_whose_policy_reappeared_when_swept_then_it_is_an_orphan(
    estate: Estate, grant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = estate.deps.grants.get(grant)
    assert record.grant is not None
    after_expiry(monkeypatch)
    assert revoke_grant(grant, RevokeReason.EXPIRED, "workflow", estate.deps).status == "REVOKED"
    document = build_grant_policy(record.grant.resource_arn, record.grant.expires_at)
    estate.session.client("iam").create_policy(
        PolicyName=record.grant.policy_name, Path=estate.deps.settings.grants_path, PolicyDocument=json.dumps(document)
    )

    report = check_policies([record.grant.policy_arn], estate.deps)

    assert [finding.kind for finding in report.findings] == ["orphan"]
    assert estate.grant_policies() == []
    assert estate.deps.grants.get(grant).status == RequestStatus.REVOKED
    assert AuditEventType.ORPHAN_REMOVED in [event.event_type for event in estate.deps.audit.for_subject(grant)]
