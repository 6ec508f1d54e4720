"""Audit records carry the CloudTrail request ids of the controller's own mutating AWS calls."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from accessctl.aws import aws_requests, is_mutating
from accessctl.grants import revoke_grant
from accessctl.integrity import sweep_integrity
from accessctl.models import AuditEvent, AuditEventType, RevokeReason, utc_now
from tests.conftest import Estate
from tests.integration.test_grant_lifecycle import after_expiry, granted_request


@pytest.fixture
def orders(estate: Estate) -> None:
    estate.role("orders-service", path="/workloads/")
    estate.postgres("orders-prod")


@pytest.fixture
def iam_answers(estate: Estate) -> dict[str, list[str]]:
    """The request ids IAM actually answered, per operation, seen by a hook of the test's own."""
    answered: dict[str, list[str]] = {}

    def note(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        answered.setdefault(model.name, []).append(parsed["ResponseMetadata"]["RequestId"])

    estate.deps.iam.meta.events.register("after-call.iam", note)
    return answered


def _record(estate: Estate, subject: str, event_type: AuditEventType) -> AuditEvent:
    (event,) = [event for event in estate.deps.audit.for_subject(subject) if event.event_type == event_type]
    return event


def _calls(event: AuditEvent) -> list[tuple[str, str]]:
    return [(call.service, call.operation) for call in event.aws_requests or []]


def test_given_a_grant_issued_then_revoked_when_audited_then_records_carry_the_iam_request_ids(
    estate: Estate, orders: None, iam_answers: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a grant issued
    request_id = granted_request(estate)
    # When it is revoked at expiry
    after_expiry(monkeypatch)
    revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps)

    # Then the issue record names CreatePolicy and AttachRolePolicy, with IAM's own request ids
    issued = _record(estate, request_id, AuditEventType.GRANT_ISSUED)
    assert _calls(issued) == [("iam", "CreatePolicy"), ("iam", "AttachRolePolicy")]
    assert [call.request_id for call in issued.aws_requests or []] == [
        iam_answers["CreatePolicy"][0],
        iam_answers["AttachRolePolicy"][0],
    ]
    # And the revoke record names DetachRolePolicy and DeletePolicy (reads are not recorded)
    revoked = _record(estate, request_id, AuditEventType.GRANT_REVOKED)
    assert _calls(revoked) == [("iam", "DetachRolePolicy"), ("iam", "DeletePolicy")]
    assert [call.request_id for call in revoked.aws_requests or []] == [
        iam_answers["DetachRolePolicy"][0],
        iam_answers["DeletePolicy"][0],
    ]
    assert all(call.region == "us-east-1" and call.error is None for call in revoked.aws_requests or [])
    # And the records are of the schema version that carries them, and still verify
    assert issued.schema_version == revoked.schema_version == 4
    from accessctl.audit import verify

    assert verify(estate.deps.audit.table, issued.at, revoked.at).ok


def test_given_an_extension_when_audited_then_both_records_carry_the_new_policy_version_calls(
    estate: Estate, orders: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = granted_request(estate)
    later = utc_now() + timedelta(minutes=5)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: later)

    second = granted_request(estate, reason="second start")

    for subject in (first, second):
        extended = _record(estate, subject, AuditEventType.GRANT_EXTENDED)
        assert _calls(extended) == [("iam", "CreatePolicyVersion"), ("iam", "DeletePolicyVersion")]


def test_given_an_orphan_policy_when_the_sweeper_removes_it_then_its_record_carries_the_calls(estate: Estate) -> None:
    estate.role("orders-service")
    arn = estate.hand_made_grant_policy("orders-service")

    sweep_integrity(estate.deps)

    removed = _record(estate, arn, AuditEventType.ORPHAN_REMOVED)
    assert _calls(removed) == [("iam", "DetachRolePolicy"), ("iam", "DeletePolicy")]
    assert all(call.request_id for call in removed.aws_requests or [])


def test_given_a_record_without_calls_then_it_stores_no_empty_list(estate: Estate) -> None:
    event = estate.deps.audit.append(AuditEventType.REQUEST_SUBMITTED, subject="req-1", actor="tester", aws_requests=[])

    (item,) = estate.deps.audit.table.query(
        KeyConditionExpression="subject = :s", ExpressionAttributeValues={":s": "req-1"}
    )["Items"]
    assert event.aws_requests is None and "aws_requests" not in item


def test_given_a_version_1_record_when_read_then_it_is_still_valid() -> None:
    from accessctl.audit import event_from_item

    stored = {
        "schema_version": 1,
        "event_id": "e-1",
        "event_type": "GRANT_ISSUED",
        "at": "2026-01-01T00:00:00.000000Z",
        "subject": "req-1",
        "actor": "workflow",
        "details": "{}",
    }
    event = event_from_item(stored)
    assert (event.schema_version, event.aws_requests) == (1, None)


@pytest.mark.parametrize(
    ("service", "operation", "recorded"),
    [
        ("iam", "CreatePolicy", True),
        ("iam", "AttachRolePolicy", True),
        ("iam", "DetachRolePolicy", True),
        ("iam", "DeletePolicyVersion", True),
        ("ec2", "RevokeSecurityGroupIngress", True),
        ("rds", "ModifyDBInstance", True),
        ("iam", "GetPolicy", False),
        ("iam", "ListEntitiesForPolicy", False),
        ("rds", "DescribeDBInstances", False),
        ("dynamodb", "PutItem", False),  # the audit write itself is not a change to the estate
        ("stepfunctions", "StopExecution", False),
    ],
)
def test_which_calls_are_recorded(service: str, operation: str, recorded: bool) -> None:
    assert is_mutating(service, operation) is recorded


def test_given_nested_blocks_and_another_thread_then_each_block_sees_its_own_calls(estate: Estate) -> None:
    iam = estate.deps.iam
    other: list[Any] = []

    def in_another_thread() -> None:
        iam.create_role(RoleName="elsewhere", AssumeRolePolicyDocument="{}")

    with aws_requests(iam) as outer:
        iam.create_role(RoleName="first", AssumeRolePolicyDocument="{}")
        with aws_requests(iam) as inner:
            iam.tag_role(RoleName="first", Tags=[{"Key": "k", "Value": "v"}])
        worker = threading.Thread(target=in_another_thread)
        worker.start()
        worker.join()
    with aws_requests(iam) as after:
        other.append(iam.get_role(RoleName="first"))

    assert [call.operation for call in outer] == ["CreateRole", "TagRole"]
    assert [call.operation for call in inner] == ["TagRole"]
    assert after == []


def test_given_a_failing_call_then_it_is_recorded_with_its_error_code(estate: Estate) -> None:
    from botocore.exceptions import ClientError

    iam = estate.deps.iam
    with aws_requests(iam) as calls, pytest.raises(ClientError):
        iam.delete_policy(PolicyArn="arn:aws:iam::123456789012:policy/accessctl/grants/none")

    assert [(call.operation, call.error) for call in calls] == [("DeletePolicy", "NoSuchEntity")]
