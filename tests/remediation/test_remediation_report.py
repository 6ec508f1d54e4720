"""Drift remediation in report mode (the default for a new install) on the local stack, and the
engine's isolation of failures: one resource failing never stops the others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from accessctl_local import LocalStack
from accessctl_local.estate import audit_trail
from tests.remediation.conftest import Inbox, audit_records
from tests.remediation.support import Emulated, cidrs, cloudtrail, opened, tcp
from tests.support.template import PROJECT_ROOT

pytestmark = [pytest.mark.integration]

FUNCTION = "RemediateDriftFunction"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.start(project_root=PROJECT_ROOT, run_schedules=False) as running:  # template defaults
        yield running


def test_given_the_default_install_when_drift_is_found_then_report_mode_changes_nothing(
    stack: LocalStack, emulated: Emulated, inbox: Inbox
) -> None:
    # Given an open group and a public database, with the template's default parameters
    group = emulated.group(tcp(5432, "0.0.0.0/0", "10.0.0.0/8"))
    emulated.postgres("report-db", group, PubliclyAccessible=True)
    before = emulated.ingress(group)
    inbox.drain()
    stack.reset_api_call_counts()

    # When the event arrives, and the schedule fires
    event_answer = stack.invoke(FUNCTION, opened(group)).payload
    scan_answer = stack.fire_schedule(FUNCTION).payload

    # Then nothing changed
    assert emulated.ingress(group) == before
    assert emulated.rds.describe_db_instances(DBInstanceIdentifier="report-db")["DBInstances"][0]["PubliclyAccessible"]
    writes = {
        k
        for k in stack.api_call_counts()
        if k[0] in ("ec2", "rds", "iam") and not k[1].startswith(("Describe", "List", "Get"))
    }
    assert writes == set()
    # but every finding was reported, audited and notified, saying what would have been done
    assert event_answer["counts"] == {"reported": 1, "fixed": 0, "failed": 0, "exempt": 0}
    assert {r["rule_id"] for r in scan_answer["results"] if r["outcome"] == "reported"} >= {
        "sg-open-ingress",
        "db-public-access",
    }
    assert event_answer["results"][0]["detail"].startswith("report mode: would revoke tcp 5432 from 0.0.0.0/0")
    records = audit_records(stack, f"security-group/{group}")
    assert {r["event_type"] for r in records} == {"REMEDIATION_FINDING"}
    assert all(r["details"]["mode"] == "report" for r in records)
    assert len(inbox.drain()) == 2


class FlakyEc2:
    """The emulator's EC2 client, except that revokes on some groups fail or are throttled first."""

    def __init__(self, real: Any, broken: set[str], throttled: dict[str, int]) -> None:
        self._real = real
        self.broken = broken
        self.throttled = throttled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def revoke_security_group_ingress(self, **kwargs: Any) -> Any:
        group = kwargs["GroupId"]
        if group in self.broken:
            raise ClientError(
                {"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}}, "RevokeSecurityGroupIngress"
            )
        if self.throttled.get(group, 0) > 0:
            self.throttled[group] -= 1
            raise ClientError(
                {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}, "RevokeSecurityGroupIngress"
            )
        return self._real.revoke_security_group_ingress(**kwargs)


def test_given_one_fix_failing_and_one_throttled_then_the_others_are_fixed_and_each_reported_alone(
    stack: LocalStack, emulated: Emulated
) -> None:
    from accessctl.audit import AuditLog
    from accessctl.remediation.engine import Remediator
    from accessctl.remediation.estate import EstateReader
    from accessctl.remediation.fixer import Fixer
    from accessctl.remediation.notify import LogRemediationNotifier
    from accessctl.remediation.settings import RemediationSettings

    # Given three open groups: one whose revoke is refused, one throttled twice, one fine
    broken, throttled, fine = (emulated.group(tcp(5432, "0.0.0.0/0"), tcp(5432, "10.0.0.0/8")) for _ in range(3))
    for number, group in enumerate((broken, throttled, fine)):
        emulated.postgres(f"isolated-{number}", group)
    settings = RemediationSettings(audit_table=stack.resources["AuditTable"], remediation_mode="enforce")
    ec2 = FlakyEc2(stack.client("ec2"), {broken}, {throttled: 2})
    rds, iam = stack.client("rds"), stack.client("iam")

    class Counts:
        seen: dict[tuple[str, str], int] = {}

        def record(self, counts: dict[tuple[str, str], int]) -> None:
            self.seen = counts

    remediator = Remediator(
        settings=settings,
        reader=EstateReader(settings, ec2=ec2, rds=rds, iam=iam),
        fixer=Fixer(ec2=ec2, rds=rds, iam=iam, max_attempts=4, sleep=lambda _: None),
        audit=AuditLog(
            stack.session().resource("dynamodb", endpoint_url=stack.endpoint_url).Table(settings.audit_table)
        ),
        notifier=LogRemediationNotifier(),
        metrics=Counts(),
    )

    # When the scan runs
    report = remediator.scan()

    # Then the refused one failed on its own, the throttled one was retried and fixed, the other fixed
    outcomes = {r.finding.resource.id: r for r in report.results if r.finding.rule_id == "sg-open-ingress"}
    assert outcomes[broken].outcome == "failed" and "UnauthorizedOperation" in (outcomes[broken].error or "")
    assert outcomes[throttled].outcome == "fixed" and outcomes[throttled].attempts == 3
    assert outcomes[fine].outcome == "fixed"
    assert ("tcp", 5432, 5432, "0.0.0.0/0") in cidrs(emulated.ingress(broken))
    for group in (throttled, fine):
        assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
    (failed_record,) = audit_records(stack, f"security-group/{broken}")
    assert failed_record["event_type"] == "REMEDIATION_FAILED"


def _answered_request_ids(aws_client: Any) -> dict[str, list[str]]:
    """The request ids the emulator answered, per operation, as a hook of the test's own sees them."""
    answered: dict[str, list[str]] = {}

    def note(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        answered.setdefault(model.name, []).append(parsed["ResponseMetadata"]["RequestId"])

    aws_client.meta.events.register("after-call", note)
    return answered


def test_given_a_fix_when_audited_then_the_record_carries_the_cloudtrail_request_id_of_its_revoke(
    stack: LocalStack, emulated: Emulated
) -> None:
    from accessctl.audit import AuditLog
    from accessctl.remediation.engine import Remediator
    from accessctl.remediation.estate import EstateReader
    from accessctl.remediation.fixer import Fixer
    from accessctl.remediation.notify import LogRemediationNotifier
    from accessctl.remediation.settings import RemediationSettings

    # Given a protected database whose group is open to the world, and a remediator in enforce mode
    group = emulated.group(tcp(5432, "0.0.0.0/0", "10.0.0.0/8"))
    emulated.postgres("pivot-db", group)
    settings = RemediationSettings(audit_table=stack.resources["AuditTable"], remediation_mode="enforce")
    ec2, rds, iam = stack.client("ec2"), stack.client("rds"), stack.client("iam")
    answered = _answered_request_ids(ec2)

    class NoMetrics:
        def record(self, counts: dict[tuple[str, str], int]) -> None:
            pass

    remediator = Remediator(
        settings=settings,
        reader=EstateReader(settings, ec2=ec2, rds=rds, iam=iam),
        fixer=Fixer(ec2=ec2, rds=rds, iam=iam, max_attempts=2, sleep=lambda _: None),
        audit=AuditLog(
            stack.session().resource("dynamodb", endpoint_url=stack.endpoint_url).Table(settings.audit_table)
        ),
        notifier=LogRemediationNotifier(),
        metrics=NoMetrics(),
    )

    # When the event for it is handled
    report = remediator.handle_event(opened(group))

    # Then the fix's audit record names the revoke EC2 answered, with EC2's own request id: the
    # investigator's pivot to the CloudTrail event (reads are not recorded)
    assert report.counts()["fixed"] == 1
    (record,) = audit_trail(stack, f"security-group/{group}")
    assert record["event_type"] == "REMEDIATION_APPLIED" and record["schema_version"] == 4
    calls = record["aws_requests"]
    assert [(c["service"], c["operation"]) for c in calls] == [("ec2", "RevokeSecurityGroupIngress")]
    assert [c["request_id"] for c in calls] == answered["RevokeSecurityGroupIngress"]
    assert calls[0]["region"] == ec2.meta.region_name and "error" not in calls[0]


def test_given_a_fix_that_aws_refuses_then_the_failure_carries_the_request_id_of_the_refused_call(
    stack: LocalStack, emulated: Emulated
) -> None:
    from accessctl.remediation.fixer import Fixer, FixFailed
    from accessctl.remediation.models import Fix

    # Given a revoke for a group that no longer exists (deleted between the read and the fix)
    group = emulated.group(tcp(5432, "0.0.0.0/0"))
    emulated.ec2.delete_security_group(GroupId=group)
    ec2 = stack.client("ec2")
    answered = _answered_request_ids(ec2)
    fixer = Fixer(ec2=ec2, rds=stack.client("rds"), iam=stack.client("iam"), max_attempts=2, sleep=lambda _: None)
    fix = Fix(
        action="revoke-ingress",
        parameters={"GroupId": group, "IpPermissions": [tcp(5432, "0.0.0.0/0")]},
        description=f"revoke tcp 5432 from 0.0.0.0/0 on {group}",
    )

    # When it is applied
    with pytest.raises(FixFailed) as failed:
        fixer.apply(fix)

    # Then the failure names the refused call, its error code and EC2's request id
    (call,) = failed.value.aws_requests
    assert (call.service, call.operation, call.error) == ("ec2", "RevokeSecurityGroupIngress", "InvalidGroup.NotFound")
    assert [call.request_id] == answered["RevokeSecurityGroupIngress"]


def test_given_an_iam_event_for_a_grant_policy_then_the_grants_path_is_left_alone(
    stack: LocalStack, emulated: Emulated
) -> None:
    policy = emulated.iam.create_policy(
        PolicyName="accessctl-grant-x",
        Path="/accessctl/grants/",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"*"}]}',
    )["Policy"]["Arn"]

    answer = stack.invoke(
        FUNCTION, cloudtrail("cloudtrail_attach_role_policy.json", parameters={"policyArn": policy, "roleName": "x"})
    ).payload

    assert answer["results"] == [] and "no protected database" in answer["ignored"]
