"""The one module that touches moto's private API, checked against the pinned moto."""

from __future__ import annotations

import json
import random
import re
import threading
import time

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from accessctl_local import LocalStack, moto_patches
from accessctl_local.emulator import EMULATOR_CONFIG
from accessctl_local.estate import create_database


def test_moto_is_the_version_the_patches_were_written_for() -> None:
    # A moto upgrade must come with a re-check of moto_patches.py (and this test's update).
    assert moto.__version__ == moto_patches.TESTED_MOTO_VERSION


def test_each_db_instance_gets_its_own_dbi_resource_id(stack: LocalStack) -> None:
    # Given two databases created in the emulator
    first, second = create_database(stack, "orders-db"), create_database(stack, "billing-db")
    # Then their resource ids differ, look like AWS's, and describe returns the same ones
    ids = {first["DbiResourceId"], second["DbiResourceId"]}
    assert len(ids) == 2
    assert moto_patches.MOTO_FIXED_DBI_RESOURCE_ID not in ids
    assert all(re.fullmatch(r"db-[A-Z0-9]{26}", i) for i in ids)
    described = stack.client("rds").describe_db_instances(DBInstanceIdentifier="orders-db")["DBInstances"][0]
    assert described["DbiResourceId"] == first["DbiResourceId"]


def test_api_calls_are_counted_per_service_and_action(stack: LocalStack) -> None:
    # Given a fresh count
    stack.reset_api_call_counts()
    # When a handful of calls are made
    ddb = stack.client("dynamodb")
    ddb.describe_table(TableName=stack.resources["ItemsTable"])
    ddb.describe_table(TableName=stack.resources["ItemsTable"])
    stack.client("sns").list_topics()
    stack.client("lambda").invoke(FunctionName=stack.resources["StepFunction"], Payload=b"{}")
    # Then each is counted under its service and action
    counts = stack.api_call_counts()
    assert counts[("dynamodb", "DescribeTable")] == 2
    assert counts[("sns", "ListTopics")] == 1
    assert counts[("lambda", "Invoke")] == 1


def test_calls_made_by_handlers_are_counted_too(stack: LocalStack) -> None:
    # Given the API function, which calls DescribeTable
    stack.reset_api_call_counts()
    # When it is invoked through the Lambda API
    response = stack.client("lambda").invoke(
        FunctionName=stack.resources["ApiFunction"], Payload=json.dumps(_api_event())
    )
    # Then the handler's own call reached the emulator and was counted
    assert json.loads(response["Payload"].read())["statusCode"] == 200
    assert stack.api_call_counts()[("dynamodb", "DescribeTable")] == 1


def test_event_invocations_return_at_once_and_run_in_the_background(stack: LocalStack) -> None:
    # Given a handler blocked until the test releases it
    release, started = threading.Event(), threading.Event()

    def block(event: object, context: object) -> None:
        started.set()
        release.wait(30)

    stack.inject_failure("StepFunction", before=block)
    # When it is invoked asynchronously
    response = stack.client("lambda").invoke(
        FunctionName=stack.resources["StepFunction"], InvocationType="Event", Payload=b"{}"
    )
    # Then the call returned 202 while the handler is still running
    assert response["StatusCode"] == 202
    assert started.wait(30)
    release.set()
    moto_patches.drain_background()


def test_resolve_credentials_finds_users_and_sessions_only_with_the_right_token(stack: LocalStack) -> None:
    iam = stack.client("iam")
    iam.create_user(UserName="resolver-user")
    key = iam.create_access_key(UserName="resolver-user")["AccessKey"]
    user = moto_patches.resolve_credentials(key["AccessKeyId"], None, ["123456789012"])
    assert user is not None and user.secret_access_key == key["SecretAccessKey"]
    assert user.arn == "arn:aws:iam::123456789012:user/resolver-user"

    creds = stack.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/any", RoleSessionName="s1")[
        "Credentials"
    ]
    session = moto_patches.resolve_credentials(creds["AccessKeyId"], creds["SessionToken"], ["123456789012"])
    assert session is not None and session.arn == "arn:aws:sts::123456789012:assumed-role/any/s1"
    assert moto_patches.resolve_credentials(creds["AccessKeyId"], "wrong-token", ["123456789012"]) is None


def _api_event() -> dict[str, object]:
    return {
        "resource": "/things",
        "path": "/things",
        "httpMethod": "GET",
        "pathParameters": None,
        "queryStringParameters": None,
        "body": None,
        "requestContext": {"identity": {"userArn": None}},
    }


def test_queries_answer_in_key_order_with_whole_pages_whatever_the_insertion_order(stack: LocalStack) -> None:
    # Given a table with a range key and an index, filled in a shuffled order (ties on the index key)
    ddb = stack.client("dynamodb")
    ddb.create_table(
        TableName="ordered",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "group", "at")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByGroup",
                "KeySchema": [
                    {"AttributeName": "group", "KeyType": "HASH"},
                    {"AttributeName": "at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    keys = [(f"p{p}", f"s{s:02d}") for p in range(4) for s in range(12)]
    random.Random(3).shuffle(keys)
    for pk, sk in keys:
        item = {"pk": {"S": pk}, "sk": {"S": sk}, "group": {"S": f"g{int(sk[1:]) % 2}"}, "at": {"S": f"t{sk[2]}"}}
        ddb.put_item(TableName="ordered", Item=item)

    def pages(**request: object) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        while True:
            page = ddb.query(TableName="ordered", Limit=5, **request)
            found += [(item["pk"]["S"], item["sk"]["S"]) for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # When the index and the table are queried page by page, both ways
    group = {"IndexName": "ByGroup", "KeyConditionExpression": "#g = :g", "ExpressionAttributeNames": {"#g": "group"}}
    forward = pages(**group, ExpressionAttributeValues={":g": {"S": "g0"}})
    backward = pages(**group, ExpressionAttributeValues={":g": {"S": "g0"}}, ScanIndexForward=False)
    one_key = pages(
        KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
        ExpressionAttributeValues={":p": {"S": "p2"}, ":a": {"S": "s03"}, ":b": {"S": "s10"}},
    )

    # Then every item comes once, in (index key, table key) order, and the table's in range-key order
    in_group = sorted((f"t{sk[2]}", pk, sk) for pk, sk in keys if int(sk[1:]) % 2 == 0)
    assert forward == [(pk, sk) for _, pk, sk in in_group]
    assert backward == forward[::-1]
    assert one_key == [("p2", f"s{s:02d}") for s in range(3, 11)]


def test_object_retention_is_answered_for_locked_objects_and_refused_for_others(stack: LocalStack) -> None:
    # Given an object under a bucket's default Object Lock retention, and one in a bucket without Object Lock
    s3 = stack.client("s3")
    s3.create_bucket(Bucket="locked-bucket", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket="locked-bucket",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}},
        },
    )
    s3.put_object(Bucket="locked-bucket", Key="kept", Body=b"x", ChecksumAlgorithm="SHA256")
    s3.create_bucket(Bucket="plain-bucket")
    s3.put_object(Bucket="plain-bucket", Key="loose", Body=b"x")

    # When their retention is asked for
    retention = s3.get_object_retention(Bucket="locked-bucket", Key="kept")["Retention"]

    # Then the locked one has the default's mode and date, and the other is refused as S3 does
    assert retention["Mode"] == "GOVERNANCE" and retention["RetainUntilDate"].year >= 2000
    with pytest.raises(ClientError) as refused:
        s3.get_object_retention(Bucket="plain-bucket", Key="loose")
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    # And the object itself still reads as before
    assert s3.get_object(Bucket="locked-bucket", Key="kept")["Body"].read() == b"x"


def test_a_stop_that_arrives_before_the_execution_has_begun_waits_for_it_and_stops_it() -> None:
    # Given an execution worker whose thread sets its environment only after a stop was asked for
    stopped_with: list[object] = []

    class Worker:
        env: object | None = None

    def moto_stop(self: Worker, **kwargs: object) -> None:
        assert self.env is not None, "moto's stop reads the environment"
        stopped_with.append(self.env)

    worker = Worker()
    environment = object()
    threading.Timer(0.2, lambda: setattr(worker, "env", environment)).start()

    # When the execution is stopped at once
    moto_patches._make_execution_stop(moto_stop)(worker, stop_date=None, error="", cause="")  # type: ignore[arg-type]

    # Then the stop waited for the environment and went through
    assert stopped_with == [environment]


def test_an_execution_stopped_right_after_it_started_is_aborted(aws_environment: None) -> None:
    # Given a state machine that waits, in the emulator running executions as the local stack does
    with mock_aws(config=EMULATOR_CONFIG):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        definition = json.dumps({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 60, "End": True}}})
        machine = sfn.create_state_machine(
            name="hold", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]

        # When each of 20 executions is stopped as soon as it is started
        arns = []
        for index in range(20):
            arns.append(sfn.start_execution(stateMachineArn=machine, name=f"run-{index}")["executionArn"])
            sfn.stop_execution(executionArn=arns[-1], error="GrantRevoked", cause="revoked early")

        # Then every one is aborted (the emulator records it once the execution's thread has seen the stop)
        statuses = dict.fromkeys(arns, "RUNNING")
        for _ in range(500):
            statuses = {arn: sfn.describe_execution(executionArn=arn)["status"] for arn in arns}
            if "RUNNING" not in statuses.values():
                break
            time.sleep(0.02)
        assert set(statuses.values()) == {"ABORTED"}
