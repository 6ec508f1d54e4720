"""Deploying a SAM template into the emulator: resources, names, outputs, parameters, environment."""

from __future__ import annotations

import json
import os

import pytest

from accessctl_local import DeployError, LocalStack
from accessctl_local.intrinsics import Resolver
from accessctl_local.provision import resolve_parameters
from accessctl_local.stack import merged_function_environment


def test_tables_exist_with_their_indexes_and_ttl(stack: LocalStack) -> None:
    ddb = stack.client("dynamodb")
    table = ddb.describe_table(TableName=stack.outputs["ItemsTableName"])["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["ByStatus"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "ttl"
    assert table["TableArn"] == stack.attribute("ItemsTable", "Arn")


def test_topic_policy_and_roles_exist(stack: LocalStack) -> None:
    assert stack.resources["Topic"] in [t["TopicArn"] for t in stack.client("sns").list_topics()["Topics"]]
    iam = stack.client("iam")
    policy = iam.get_policy(PolicyArn=stack.resources["SharedPolicy"])["Policy"]
    attached = iam.list_attached_role_policies(RoleName=stack.resources["ApiFunctionRole"])["AttachedPolicies"]
    assert policy["Arn"] in [p["PolicyArn"] for p in attached]
    assert "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole" in [p["PolicyArn"] for p in attached]


def test_functions_exist_with_resolved_environment_and_layer(stack: LocalStack) -> None:
    config = stack.client("lambda").get_function_configuration(FunctionName=stack.resources["ApiFunction"])
    env = config["Environment"]["Variables"]
    assert env["ITEMS_TABLE"] == stack.resources["ItemsTable"]
    assert env["STATE_MACHINE_ARN"] == stack.resources["Workflow"]
    assert env["GREETING"] == "hi"  # the parameter override
    assert config["Layers"][0]["Arn"].startswith("arn:aws:lambda:us-east-1:123456789012:layer:accessctl-local-shared:")
    # And the handler process sees the same values
    assert os.environ["ITEMS_TABLE"] == env["ITEMS_TABLE"]
    assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url


def test_state_machine_exists_in_the_executing_backend_with_substitutions_resolved(stack: LocalStack) -> None:
    described = stack.client("stepfunctions").describe_state_machine(stateMachineArn=stack.outputs["WorkflowArn"])
    definition = json.loads(described["definition"])
    assert definition["States"]["Step"]["Parameters"]["FunctionName"] == stack.attribute("StepFunction", "Arn")
    assert "${" not in described["definition"]
    assert described["name"] == "accessctl-local-workflow"


def test_schedule_exists_in_the_emulator(stack: LocalStack) -> None:
    schedule = stack.client("scheduler").get_schedule(Name=stack.resources["SweepFunctionSweep"])
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Target"]["Arn"] == stack.attribute("SweepFunction", "Arn")


def test_outputs_point_at_the_local_api(stack: LocalStack) -> None:
    assert stack.outputs["ApiUrl"] == stack.api_url
    assert stack.api_url.startswith("http://127.0.0.1:") and stack.api_url.endswith("/v1")


def test_the_process_runs_in_utc(stack: LocalStack) -> None:
    from datetime import UTC, datetime

    assert abs((datetime.now() - datetime.now(UTC).replace(tzinfo=None)).total_seconds()) < 1


def test_conflicting_function_environment_fails_loudly() -> None:
    functions = {
        "A": {"environment": {"SHARED": "1", "ONLY_A": "x"}},
        "B": {"environment": {"SHARED": "1", "TABLE": "t1"}},
        "C": {"environment": {"TABLE": "t2"}},
    }
    with pytest.raises(DeployError, match="TABLE"):
        merged_function_environment(functions)
    assert merged_function_environment({k: functions[k] for k in "AB"}) == {"SHARED": "1", "ONLY_A": "x", "TABLE": "t1"}


def test_parameters_are_validated() -> None:
    template = {
        "Parameters": {
            "Level": {"Type": "String", "Default": "INFO", "AllowedValues": ["INFO", "DEBUG"]},
            "Minutes": {"Type": "Number", "Default": 5, "MinValue": 1, "MaxValue": 720},
            "Arns": {"Type": "CommaDelimitedList", "Default": ""},
        }
    }
    assert resolve_parameters(template, {}) == {"Level": "INFO", "Minutes": "5", "Arns": [""]}
    with pytest.raises(DeployError, match="AllowedValues"):
        resolve_parameters(template, {"Level": "TRACE"})
    with pytest.raises(DeployError, match="MaxValue"):
        resolve_parameters(template, {"Minutes": 721})
    with pytest.raises(DeployError, match="unknown"):
        resolve_parameters(template, {"Nope": "1"})


def test_intrinsics_resolve_like_cloudformation() -> None:
    resolver = Resolver(
        parameters={"Path": "/grants/", "Arns": [""]},
        pseudo={"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"},
        ref=lambda logical_id: f"phys-{logical_id}",
        get_att=lambda logical_id, attribute: f"{logical_id}.{attribute}",
        conditions={"HasArns": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Arns"}]}, ""]}]}},
    )
    assert resolver.resolve({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy${Path}*"}) == (
        "arn:aws:iam::123456789012:policy/grants/*"
    )
    assert resolver.resolve({"Fn::Sub": ["${X}/${T.Arn}", {"X": {"Ref": "Table"}}]}) == "phys-Table/T.Arn"
    assert resolver.resolve({"Fn::Join": [",", {"Ref": "Arns"}]}) == ""
    assert resolver.resolve({"Fn::If": ["HasArns", "yes", {"Ref": "AWS::NoValue"}]}) is not None
    assert resolver.resolve({"k": {"Fn::If": ["HasArns", "yes", {"Ref": "AWS::NoValue"}]}}) == {}
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}) == "b"
    assert resolver.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"
