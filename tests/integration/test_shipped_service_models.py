"""The remediator's clients, built from the reduced models the layer ships (accessctl/service_models,
`make service-models`), call the emulated account as clients of the whole service do; botocore's whole
model of those services is never read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from accessctl import aws
from accessctl.remediation.engine import CLIENT_OPERATIONS
from tests.conftest import Estate
from tests.support.template import create_table

pytestmark = [pytest.mark.integration]

WORLD = "0.0.0.0/0"


@pytest.fixture
def whole_models_unreadable(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The shared loader refuses botocore's whole model of every service the layer ships a reduced one of."""
    aws.client.cache_clear()
    monkeypatch.setattr(aws, "_OPERATIONS_MODELS", {})
    loader = aws._data_loader()
    read = loader.load_service_model

    def refuse_whole_models(service_name: str, type_name: str, api_version: str | None = None) -> Any:
        if type_name == "service-2" and service_name in CLIENT_OPERATIONS:
            raise AssertionError(f"botocore's whole {service_name} model was read")
        return read(service_name, type_name, api_version)

    monkeypatch.setattr(loader, "load_service_model", refuse_whole_models)
    yield
    aws.client.cache_clear()


def remediator_client(service_name: str) -> Any:
    return aws.client(service_name, CLIENT_OPERATIONS[service_name])


def test_given_a_group_open_to_the_world_when_the_remediators_ec2_client_revokes_it_then_only_that_range_goes(
    estate: Estate, whole_models_unreadable: None
) -> None:
    # Given a security group allowing 5432 from a private range and from the world, in one permission
    ec2 = estate.session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    group = ec2.create_security_group(GroupName="orders-db", Description="orders", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": WORLD}],
            }
        ],
    )

    # When the remediator's EC2 client (made from the shipped model) pages the group and revokes the world range
    remediator = remediator_client("ec2")
    pages = remediator.get_paginator("describe_security_groups").paginate(GroupIds=[group])
    (described,) = [found for page in pages for found in page["SecurityGroups"]]
    remediator.revoke_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": WORLD}]}],
    )

    # Then it read the group as it is, and a client of the whole service sees only the private range left
    assert {r["CidrIp"] for p in described["IpPermissions"] for r in p["IpRanges"]} == {"10.0.0.0/8", WORLD}
    (left,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert [r["CidrIp"] for r in left["IpRanges"]] == ["10.0.0.0/8"]
    assert sorted(remediator.meta.service_model.operation_names) == sorted(CLIENT_OPERATIONS["ec2"])


def test_given_a_database_without_iam_auth_when_the_remediators_rds_client_enables_it_then_it_is_on(
    estate: Estate, whole_models_unreadable: None
) -> None:
    # Given a tagged PostgreSQL instance with IAM database authentication off
    estate.postgres("orders-prod", iam_auth=False)
    rds = estate.session.client("rds")
    arn = rds.describe_db_instances(DBInstanceIdentifier="orders-prod")["DBInstances"][0]["DBInstanceArn"]
    rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "accessctl:protected", "Value": "true"}])

    # When the remediator's RDS client (made from the shipped model) pages the instances, reads their tags
    # and turns IAM authentication on
    remediator = remediator_client("rds")
    pages = remediator.get_paginator("describe_db_instances").paginate()
    (instance,) = [found for page in pages for found in page["DBInstances"]]
    tags = remediator.list_tags_for_resource(ResourceName=instance["DBInstanceArn"])["TagList"]
    remediator.modify_db_instance(
        DBInstanceIdentifier="orders-prod", EnableIAMDatabaseAuthentication=True, ApplyImmediately=True
    )

    # Then it read the instance and its tags, and the instance now has IAM authentication on
    assert instance["IAMDatabaseAuthenticationEnabled"] is False
    assert {"Key": "accessctl:protected", "Value": "true"} in tags
    after = rds.describe_db_instances(DBInstanceIdentifier="orders-prod")["DBInstances"][0]
    assert after["IAMDatabaseAuthenticationEnabled"] is True


def test_given_no_such_database_when_the_remediators_rds_client_modifies_it_then_the_modeled_error_is_raised(
    estate: Estate, whole_models_unreadable: None
) -> None:
    remediator = remediator_client("rds")

    with pytest.raises(remediator.exceptions.DBInstanceNotFoundFault):
        remediator.modify_db_instance(DBInstanceIdentifier="nowhere", PubliclyAccessible=False, ApplyImmediately=True)


def test_given_the_group_index_table_when_the_remediators_dynamodb_client_writes_and_queries_then_it_reads_back(
    estate: Estate, whole_models_unreadable: None
) -> None:
    # Given the template's group index table
    create_table(estate.session.client("dynamodb"), "RemediationIndexTable", "group-index")

    # When the remediator's DynamoDB client writes entries three ways and queries one bucket
    remediator = remediator_client("dynamodb")
    entry = {"bucket": {"S": "7"}, "entry": {"S": "sg-1#db-a"}}
    remediator.batch_write_item(RequestItems={"group-index": [{"PutRequest": {"Item": entry}}]})
    remediator.put_item(TableName="group-index", Item={"bucket": {"S": "7"}, "entry": {"S": "sg-1#db-b"}})
    remediator.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": "group-index",
                    "Item": {"bucket": {"S": "7"}, "entry": {"S": "sg-2#db-c"}},
                    "ConditionExpression": "attribute_not_exists(entry)",
                }
            }
        ]
    )
    found = remediator.query(
        TableName="group-index", KeyConditionExpression="bucket = :b", ExpressionAttributeValues={":b": {"S": "7"}}
    )

    # Then the bucket holds the three entries
    assert [item["entry"]["S"] for item in found["Items"]] == ["sg-1#db-a", "sg-1#db-b", "sg-2#db-c"]


def test_given_a_subscribed_queue_when_the_remediators_sns_client_publishes_then_the_message_arrives(
    estate: Estate, whole_models_unreadable: None
) -> None:
    # Given a topic with a queue subscribed to it (raw delivery)
    sns, sqs = estate.session.client("sns"), estate.session.client("sqs")
    topic = sns.create_topic(Name="drift")["TopicArn"]
    queue = sqs.create_queue(QueueName="drift-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    # When the remediator's SNS client publishes a notification
    remediator_client("sns").publish(TopicArn=topic, Message=json.dumps({"event": "DRIFT"}), Subject="drift")

    # Then the queue receives it
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"]) == {"event": "DRIFT"}
