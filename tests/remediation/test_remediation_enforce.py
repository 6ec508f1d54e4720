"""Drift remediation in enforce mode, on the local stack: template.yaml deployed into the emulator,
the real handler invoked with events built like CloudTrail-via-EventBridge deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accessctl.remediation.events import EVENT_MAP
from accessctl_local import LocalStack
from accessctl_local.estate import audit_trail
from tests.remediation.conftest import Inbox, audit_records
from tests.remediation.support import Emulated, all_traffic, cidrs, cloudtrail, opened, tcp
from tests.support.template import PROJECT_ROOT

pytestmark = [pytest.mark.integration]

FUNCTION = "RemediateDriftFunction"
EXEMPT = "accessctl:exempt"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.start(
        project_root=PROJECT_ROOT, run_schedules=False, parameter_overrides={"RemediationMode": "enforce"}
    ) as running:
        yield running


def invoke(stack: LocalStack, event: dict[str, Any]) -> dict[str, Any]:
    invocation = stack.invoke(FUNCTION, event)
    assert not invocation.errored, invocation.payload
    return dict(invocation.payload)


def test_given_an_opened_group_when_the_event_arrives_then_only_the_offending_range_is_revoked(
    stack: LocalStack, emulated: Emulated, inbox: Inbox
) -> None:
    # Given a protected database whose group someone opened to the world next to benign rules
    group = emulated.group(
        tcp(5432, "0.0.0.0/0", "10.0.0.0/8"),  # the offending range shares its permission with a sibling
        tcp(443, "0.0.0.0/0"),  # not the database port
        tcp(5432, "192.168.10.0/24"),
    )
    emulated.postgres("orders-db", group)
    inbox.drain()
    stack.reset_api_call_counts()

    # When the CloudTrail event is delivered
    answer = invoke(stack, opened(group))

    # Then exactly 0.0.0.0/0 on 5432 is gone, and everything else survives
    assert cidrs(emulated.ingress(group)) == {
        ("tcp", 5432, 5432, "10.0.0.0/8"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 5432, 5432, "192.168.10.0/24"),
    }
    assert answer["counts"]["fixed"] == 1
    assert stack.api_call_counts()[("ec2", "RevokeSecurityGroupIngress")] == 1
    # and the audit record has before and after, the actor from CloudTrail, and what was done
    (record,) = audit_records(stack, f"security-group/{group}")
    assert record["event_type"] == "REMEDIATION_APPLIED"
    assert {"CidrIp": "0.0.0.0/0"} in record["details"]["before"]["permission"]["IpRanges"]
    after = {r["CidrIp"] for r in record["details"]["after"]["permission"]["IpRanges"]}
    assert after == {"10.0.0.0/8", "192.168.10.0/24"}  # EC2 keeps one permission per protocol and port range
    assert record["details"]["trigger"]["changed_by"].endswith("assumed-role/platform-admin/jane.doe")
    # and it names the revoke it made, by CloudTrail request id (the pivot to CloudTrail)
    (call,) = audit_trail(stack, f"security-group/{group}")[0]["aws_requests"]
    assert (call["service"], call["operation"]) == ("ec2", "RevokeSecurityGroupIngress") and call["request_id"]
    # and a notification says what changed, who changed it and what the controller did
    (message,) = inbox.drain()
    (finding,) = message["findings"]
    assert finding["changed_by"].endswith("platform-admin/jane.doe")
    assert "0.0.0.0/0" in finding["what_changed"] and finding["outcome"] == "fixed"
    assert finding["action"].startswith(f"revoke tcp 5432 from 0.0.0.0/0 on {group}")


def test_given_ipv6_world_ingress_when_the_event_arrives_then_only_the_ipv6_range_goes(
    stack: LocalStack, emulated: Emulated
) -> None:
    group = emulated.group(tcp(5432, "::/0", "fc00::/7", "2001:db8::/32"), tcp(5432, "10.1.0.0/16"))
    emulated.postgres("ipv6-db", group)

    invoke(stack, opened(group, cidr="::/0"))

    # 2001:db8::/32 is public address space outside the allow-list too: it reaches 5432, so it goes
    assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "fc00::/7"), ("tcp", 5432, 5432, "10.1.0.0/16")}


def test_given_port_ranges_when_one_spans_the_database_port_then_that_range_goes_and_others_stay(
    stack: LocalStack, emulated: Emulated
) -> None:
    group = emulated.group(
        tcp(5000, "0.0.0.0/0", to_port=6000),  # spans 5432
        tcp(8000, "0.0.0.0/0", to_port=9000),  # does not
        {
            "IpProtocol": "udp",
            "FromPort": 5432,
            "ToPort": 5432,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
        },  # UDP: no session
    )
    emulated.postgres("ranges-db", group)

    invoke(
        stack,
        cloudtrail(
            "cloudtrail_modify_sg_rules.json", parameters={"ModifySecurityGroupRulesRequest": {"GroupId": group}}
        ),
    )

    assert cidrs(emulated.ingress(group)) == {("tcp", 8000, 9000, "0.0.0.0/0"), ("udp", 5432, 5432, "0.0.0.0/0")}


def test_given_an_all_traffic_rule_from_the_world_then_it_is_revoked(stack: LocalStack, emulated: Emulated) -> None:
    group = emulated.group(all_traffic("0.0.0.0/0", "10.0.0.0/8"), tcp(5432, "172.16.0.0/12"))
    emulated.postgres("all-traffic-db", group)

    invoke(stack, opened(group))

    assert cidrs(emulated.ingress(group)) == {("-1", None, None, "10.0.0.0/8"), ("tcp", 5432, 5432, "172.16.0.0/12")}


def test_given_a_group_shared_by_two_databases_then_both_ports_are_closed_in_one_revoke(
    stack: LocalStack, emulated: Emulated
) -> None:
    # Given one group on a PostgreSQL instance (5432) and an Aurora MySQL cluster (3306)
    group = emulated.group(tcp(5432, "0.0.0.0/0"), tcp(3306, "198.51.100.0/24"), tcp(22, "0.0.0.0/0"))
    emulated.postgres("shared-pg", group)
    emulated.aurora_mysql("shared-mysql", group)
    stack.reset_api_call_counts()

    answer = invoke(stack, opened(group))

    assert cidrs(emulated.ingress(group)) == {("tcp", 22, 22, "0.0.0.0/0")}
    assert answer["counts"]["fixed"] == 2
    assert stack.api_call_counts()[("ec2", "RevokeSecurityGroupIngress")] == 1  # one call per group
    details = [r["detail"] for r in answer["results"]]
    assert any("3306" in d for d in details) and any("5432" in d for d in details)


def test_given_a_group_only_a_protected_rds_proxy_uses_when_opened_then_the_proxy_port_is_closed(
    stack: LocalStack, emulated: Emulated
) -> None:
    # Given an RDS Proxy (PostgreSQL: it listens on 5432) tagged protected, whose group is opened to
    # the world next to a benign rule; no database instance uses the group
    group = emulated.group(tcp(5432, "0.0.0.0/0", "10.0.0.0/8"), tcp(443, "0.0.0.0/0"))
    emulated.proxy("orders-proxy", group)

    # When the CloudTrail event arrives
    answer = invoke(stack, opened(group))

    # Then the world range on the proxy's port goes and everything else stays
    assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8"), ("tcp", 443, 443, "0.0.0.0/0")}
    (result,) = [r for r in answer["results"] if r["rule_id"] == "sg-open-ingress"]
    assert result["outcome"] == "fixed"
    (record,) = audit_records(stack, f"security-group/{group}")
    assert record["details"]["databases"] == ["proxy/orders-proxy"]


def test_given_a_group_of_an_unprotected_rds_proxy_then_it_is_left_alone(stack: LocalStack, emulated: Emulated) -> None:
    # Given a proxy without the protected tag (the template's default scope is tagged databases)
    group = emulated.group(tcp(5432, "0.0.0.0/0"))
    emulated.proxy("scratch-proxy", group, protected=False)

    # When its group is opened and the schedule's full scan runs too
    invoke(stack, opened(group))
    invoke(stack, {"action": "scan"})

    # Then nothing changed and nothing was recorded for it
    assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "0.0.0.0/0")}
    assert audit_records(stack, f"security-group/{group}") == []


@pytest.mark.parametrize(
    ("until", "closed"),
    [
        ((datetime.now(UTC) + timedelta(days=30)).date().isoformat(), False),
        ((datetime.now(UTC) - timedelta(days=1)).date().isoformat(), True),
    ],
    ids=["valid-exemption", "expired-exemption"],
)
def test_given_an_exempt_group_then_a_valid_exemption_holds_and_an_expired_one_does_not(
    stack: LocalStack, emulated: Emulated, until: str, closed: bool
) -> None:
    group = emulated.group(tcp(5432, "0.0.0.0/0"), tags={EXEMPT: f"until={until};reason=vendor migration OPS-42"})
    emulated.postgres(f"exempt-{'expired' if closed else 'valid'}", group)

    answer = invoke(stack, opened(group))

    still_open = ("tcp", 5432, 5432, "0.0.0.0/0") in cidrs(emulated.ingress(group))
    assert still_open is not closed
    (result,) = answer["results"]
    if closed:
        assert result["outcome"] == "fixed"
        (record,) = audit_records(stack, f"security-group/{group}")
        assert "expired" in record["details"]["action"] or record["event_type"] == "REMEDIATION_APPLIED"
    else:
        assert result["outcome"] == "exempt"
        assert "vendor migration OPS-42" in result["detail"]


@pytest.mark.parametrize(
    ("event", "why"),
    [
        ({"detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2"}, "malformed"),
        ({"hello": "world"}, "malformed"),
        ("not even an object", "malformed"),
        (cloudtrail("cloudtrail_unrelated_event.json"), "not an event the remediator acts on"),
        (
            cloudtrail(
                "cloudtrail_authorize_sg_ingress.json", errorCode="UnauthorizedOperation", errorMessage="denied"
            ),
            "nothing changed",
        ),
        (
            cloudtrail("cloudtrail_authorize_sg_ingress.json", parameters={"ipPermissions": {}}),
            "names no resource",
        ),
    ],
    ids=["no-detail", "not-an-event", "string", "unrelated-s3", "failed-call", "no-group"],
)
def test_given_a_malformed_or_unrelated_event_then_it_is_ignored_and_logged(
    stack: LocalStack, event: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack.reset_api_call_counts()

    answer = invoke(stack, event)

    assert why in answer["ignored"]
    assert answer["results"] == []
    assert any(r.getMessage() == "event ignored" and why in getattr(r, "reason", "") for r in caplog.records)
    changes = {k: v for k, v in stack.api_call_counts().items() if not k[1].startswith(("Describe", "List", "Get"))}
    assert changes == {}


def test_given_a_group_of_no_protected_database_then_the_event_is_ignored(
    stack: LocalStack, emulated: Emulated
) -> None:
    group = emulated.group(tcp(5432, "0.0.0.0/0"))
    emulated.postgres("unprotected-db", group, protected=False)

    answer = invoke(stack, opened(group))

    assert "no protected database" in answer["ignored"]
    assert ("tcp", 5432, 5432, "0.0.0.0/0") in cidrs(emulated.ingress(group))


def test_given_a_database_made_public_then_it_is_closed_and_iam_auth_enabled(
    stack: LocalStack, emulated: Emulated
) -> None:
    emulated.postgres(
        "public-db", PubliclyAccessible=True, EnableIAMDatabaseAuthentication=False, StorageEncrypted=False
    )

    answer = invoke(
        stack, cloudtrail("cloudtrail_modify_db_instance.json", parameters={"dBInstanceIdentifier": "public-db"})
    )

    instance = emulated.rds.describe_db_instances(DBInstanceIdentifier="public-db")["DBInstances"][0]
    assert instance["PubliclyAccessible"] is False
    assert instance["IAMDatabaseAuthenticationEnabled"] is True
    outcomes = {r["rule_id"]: r["outcome"] for r in answer["results"]}
    assert outcomes["db-public-access"] == "fixed"
    assert outcomes["db-iam-auth-disabled"] == "fixed"
    assert outcomes["db-storage-unencrypted"] == "reported"  # no automatic fix exists
    assert outcomes["db-tls-not-enforced"] == "reported"  # default parameter group: the remedy needs a reboot


def test_given_tls_switched_off_in_a_custom_parameter_group_then_it_is_enforced_again(
    stack: LocalStack, emulated: Emulated
) -> None:
    emulated.rds.create_db_parameter_group(
        DBParameterGroupName="orders-postgres16", DBParameterGroupFamily="postgres16", Description="orders"
    )
    emulated.rds.modify_db_parameter_group(
        DBParameterGroupName="orders-postgres16",
        Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "0", "ApplyMethod": "immediate"}],
    )
    emulated.postgres("tls-db", DBParameterGroupName="orders-postgres16")

    answer = invoke(stack, cloudtrail("cloudtrail_modify_db_parameter_group.json"))

    parameters = emulated.rds.describe_db_parameters(DBParameterGroupName="orders-postgres16")["Parameters"]
    assert {p["ParameterName"]: p["ParameterValue"] for p in parameters}["rds.force_ssl"] == "1"
    assert answer["results"][0]["outcome"] == "fixed"


def test_given_a_public_snapshot_then_it_is_made_private(stack: LocalStack, emulated: Emulated) -> None:
    emulated.postgres("snap-db")
    emulated.rds.create_db_snapshot(DBSnapshotIdentifier="orders-db-before-migration", DBInstanceIdentifier="snap-db")
    emulated.rds.modify_db_snapshot_attribute(
        DBSnapshotIdentifier="orders-db-before-migration", AttributeName="restore", ValuesToAdd=["all", "210987654321"]
    )

    answer = invoke(stack, cloudtrail("cloudtrail_modify_db_snapshot_attribute.json"))

    attributes = emulated.rds.describe_db_snapshot_attributes(DBSnapshotIdentifier="orders-db-before-migration")
    (restore,) = attributes["DBSnapshotAttributesResult"]["DBSnapshotAttributes"]
    assert restore["AttributeValues"] == ["210987654321"]  # the named account keeps its share
    assert answer["results"][0]["outcome"] == "fixed"


def test_given_standing_access_by_inline_policy_then_it_is_reported_not_detached_by_default(
    stack: LocalStack, emulated: Emulated
) -> None:
    emulated.iam.create_role(
        RoleName="reporting-job", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}'
    )
    document = cloudtrail("cloudtrail_put_role_policy.json")["detail"]["requestParameters"]["policyDocument"]
    emulated.iam.put_role_policy(RoleName="reporting-job", PolicyName="db-access", PolicyDocument=document)

    answer = invoke(stack, cloudtrail("cloudtrail_put_role_policy.json"))

    (result,) = answer["results"]
    assert result["rule_id"] == "iam-standing-access"
    assert result["outcome"] == "reported"  # RemediationStandingAccessFix defaults to report
    assert emulated.iam.list_role_policies(RoleName="reporting-job")["PolicyNames"] == ["db-access"]


def test_given_drift_the_events_missed_when_the_schedule_fires_then_the_full_scan_closes_it(
    stack: LocalStack, emulated: Emulated
) -> None:
    groups = [emulated.group(tcp(5432, "0.0.0.0/0", "10.0.0.0/8"), tcp(443, "0.0.0.0/0")) for _ in range(3)]
    for number, group in enumerate(groups):
        emulated.postgres(f"missed-{number}", group)
    stack.reset_api_call_counts()

    invocation = stack.fire_schedule(FUNCTION)

    assert not invocation.errored, invocation.payload
    for group in groups:
        assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8"), ("tcp", 443, 443, "0.0.0.0/0")}
    counts = stack.api_call_counts()
    assert counts[("ec2", "RevokeSecurityGroupIngress")] == 3  # the floor: one per open group
    # and the scan's audit records went in one chained batch (one transaction), one record per fix
    assert counts[("dynamodb", "TransactWriteItems")] == 1 and ("dynamodb", "PutItem") not in counts
    for group in groups:
        (record,) = audit_trail(stack, f"security-group/{group}")
        assert record["event_type"] == "REMEDIATION_APPLIED" and record["details"]["trigger"]["kind"] == "schedule"
        assert [call["operation"] for call in record["aws_requests"]] == ["RevokeSecurityGroupIngress"]


def test_given_more_attached_groups_than_an_id_filter_takes_when_the_schedule_fires_then_one_region_read_closes_them(
    stack: LocalStack, emulated: Emulated
) -> None:
    # Given 42 protected databases with 5 groups each (210: more than one id filter takes), 3 open
    groups = [emulated.group(tcp(5432, "10.0.0.0/8"), tcp(443, "0.0.0.0/0")) for _ in range(210)]
    opened_groups = groups[::70]
    for group in opened_groups:
        emulated.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(5432, "0.0.0.0/0")])
    for number in range(42):
        emulated.postgres(f"many-groups-{number}", *groups[number * 5 : number * 5 + 5])
    stack.reset_api_call_counts()

    # When the schedule fires
    invocation = stack.fire_schedule(FUNCTION)

    # Then the region's groups were read once (one page) and exactly the 3 world ranges are gone
    assert not invocation.errored, invocation.payload
    assert stack.api_call_counts()[("ec2", "DescribeSecurityGroups")] == 1
    for group in groups:
        assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8"), ("tcp", 443, 443, "0.0.0.0/0")}
    fixed = {result["resource"] for result in invocation.payload["results"] if result["outcome"] == "fixed"}
    assert {f"security-group/{group}" for group in opened_groups} <= fixed


def test_given_a_warm_process_when_the_same_group_is_opened_again_then_the_database_list_is_not_re_read(
    stack: LocalStack, emulated: Emulated
) -> None:
    group = emulated.group(tcp(5432, "10.0.0.0/8"))
    emulated.postgres("warm-db", group)
    world = [tcp(5432, "0.0.0.0/0")]
    emulated.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=world)
    invoke(stack, opened(group))  # a group the kept list did not know: the list is refreshed
    emulated.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=world)
    stack.reset_api_call_counts()

    answer = invoke(stack, opened(group))

    assert answer["counts"]["fixed"] == 1
    counts = stack.api_call_counts()
    assert ("rds", "DescribeDBInstances") not in counts
    assert counts[("ec2", "DescribeSecurityGroups")] == 1 and counts[("ec2", "RevokeSecurityGroupIngress")] == 1


def test_the_deployed_rule_routes_the_sample_events_and_only_those(stack: LocalStack) -> None:
    # Given the deployed EventBridge rule, with a queue added as a second target to observe routing
    # in place of the function (the emulator delivers to SQS targets and fails on Lambda ones: the
    # handler tests invoke the function directly with the same events)
    events, sqs = stack.client("events"), stack.client("sqs")
    rule_name = stack.resources["RemediateDriftFunctionCloudTrailChange"]
    url = sqs.create_queue(QueueName="drift-rule-probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deployed = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert [t["Arn"] for t in deployed] == [stack.functions[FUNCTION].function_arn]
    events.remove_targets(Rule=rule_name, Ids=[t["Id"] for t in deployed])
    events.put_targets(Rule=rule_name, Targets=[{"Id": "probe", "Arn": arn}])
    samples = [
        "cloudtrail_authorize_sg_ingress.json",
        "cloudtrail_modify_sg_rules.json",
        "cloudtrail_modify_db_instance.json",
        "cloudtrail_modify_db_parameter_group.json",
        "cloudtrail_modify_db_snapshot_attribute.json",
        "cloudtrail_put_role_policy.json",
        "cloudtrail_attach_role_policy.json",
        "cloudtrail_unrelated_event.json",
    ]

    # When each sample is put on the default bus
    for sample in samples:
        event = cloudtrail(sample)
        events.put_events(
            Entries=[
                {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"])}
            ]
        )

    events.remove_targets(Rule=rule_name, Ids=["probe"])
    events.put_targets(Rule=rule_name, Targets=deployed)

    # Then every remediation sample is routed, the unrelated one is not
    routed = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        routed += [json.loads(m["Body"])["detail"]["eventName"] for m in batch]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    assert sorted(routed) == sorted(cloudtrail(s)["detail"]["eventName"] for s in samples[:-1])
    # and the rule names exactly the events the remediator maps
    pattern = json.loads(events.describe_rule(Name=rule_name)["EventPattern"])
    assert set(pattern["detail"]["eventName"]) == {name for _, name in EVENT_MAP}
