"""Fixtures for the local stack's own tests: a small throwaway SAM project under tmp_path.

The throwaway project mirrors the real one's shape (a layer package, functions with ``app.py``, an
ASL file with DefinitionSubstitutions, an AWS_IAM API, a ScheduleV2 event) so these tests do not
depend on the project's handlers, which are written in parallel.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCAL_SRC = Path(__file__).resolve().parents[2] / "local"
if str(LOCAL_SRC) not in sys.path:
    sys.path.insert(0, str(LOCAL_SRC))

from accessctl_local import LocalStack  # noqa: E402

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
  SweepSchedule:
    Type: String
    Default: rate(1 minute)
Globals:
  Function:
    Runtime: python3.13
    Timeout: 30
    MemorySize: 256
    Handler: app.lambda_handler
    Layers: [!Ref SharedLayer]
    Environment:
      Variables:
        ITEMS_TABLE: !Ref ItemsTable
        GREETING: !Ref Greeting
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      LayerName: !Sub "${AWS::StackName}-shared"
      ContentUri: layers/shared/
      CompatibleRuntimes: [python3.13]
  ItemsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: status, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
      GlobalSecondaryIndexes:
        - IndexName: ByStatus
          KeySchema:
            - {AttributeName: status, KeyType: HASH}
          Projection: {ProjectionType: ALL}
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}
  Topic:
    Type: AWS::SNS::Topic
  SharedPolicy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: dynamodb:GetItem
            Resource: !GetAtt ItemsTable.Arn
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
      Auth:
        DefaultAuthorizer: AWS_IAM
        InvokeRole: NONE
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Environment:
        Variables:
          STATE_MACHINE_ARN: !Ref Workflow
      Policies:
        - !Ref SharedPolicy
      Events:
        Echo:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: "/things/{thing_id}", Method: POST}
        List:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /things, Method: GET}
  StepFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/step/
      Environment:
        Variables:
          TOPIC_ARN: !Ref Topic
  SweepFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sweep/
      Events:
        Sweep:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: !Ref SweepSchedule
  Workflow:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "${AWS::StackName}-workflow"
      DefinitionUri: statemachine/workflow.asl.json
      DefinitionSubstitutions:
        StepFunctionArn: !GetAtt StepFunction.Arn
      Policies:
        - LambdaInvokePolicy: {FunctionName: !Ref StepFunction}
Outputs:
  ApiUrl:
    Value: !Sub "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v1"
  ItemsTableName:
    Value: !Ref ItemsTable
  WorkflowArn:
    Value: !Ref Workflow
"""

# Retries TransientError (twice at most), catches everything else into a Pass state.
ASL = """
{
  "StartAt": "Step",
  "States": {
    "Step": {
      "Type": "Task",
      "Resource": "arn:aws:states:::lambda:invoke",
      "Parameters": {"FunctionName": "${StepFunctionArn}", "Payload.$": "$"},
      "ResultSelector": {"result.$": "$.Payload"},
      "Retry": [{"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1.0}],
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
      "End": true
    },
    "Caught": {"Type": "Pass", "End": true}
  }
}
"""

LAYER_INIT = '''
"""Shared package, importable because the layer's ContentUri is on sys.path."""


class TransientError(Exception):
    pass


class PermanentError(Exception):
    pass


def table_name() -> str:
    import os

    return os.environ["ITEMS_TABLE"]
'''

API_APP = """
import json

import boto3
from shared import table_name


def lambda_handler(event, context):
    boto3.client("dynamodb").describe_table(TableName=table_name())
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({
            "identity": event["requestContext"]["identity"],
            "resource": event["resource"],
            "path": event["path"],
            "pathParameters": event["pathParameters"],
            "query": event["queryStringParameters"],
            "body": event["body"],
            "function": context.function_name,
        }),
    }
"""

STEP_APP = """
import os

from shared import PermanentError, TransientError


def lambda_handler(event, context):
    if event.get("raise") == "transient":
        raise TransientError("try again")
    if event.get("raise") == "permanent":
        raise PermanentError("give up")
    return {
        "echo": event,
        "topic": os.environ["TOPIC_ARN"],
        "function": context.function_name,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
    }
"""

SWEEP_APP = """
CALLS = []


def lambda_handler(event, context):
    CALLS.append(event)
    return {"swept": len(CALLS)}
"""


def write_project(root: Path) -> Path:
    files = {
        "template.yaml": TEMPLATE,
        "statemachine/workflow.asl.json": ASL,
        "layers/shared/shared/__init__.py": LAYER_INIT,
        "functions/api/app.py": API_APP,
        "functions/step/app.py": STEP_APP,
        "functions/sweep/app.py": SWEEP_APP,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def stack(project: Path) -> Iterator[LocalStack]:
    with LocalStack.start(project, run_schedules=False, parameter_overrides={"Greeting": "hi"}) as running:
        yield running
