"""A demo estate inside the emulator: a PostgreSQL instance with IAM auth, workload roles, and
signed clients acting as those roles. Used by the demo, the workflow tests and the benchmarks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import botocore.session
from boto3.dynamodb.types import TypeDeserializer

from accessctl_client import AccessctlClient

from .stack import LocalStack

OPT_IN_TAG = "accessctl-grantable"


@dataclass(frozen=True)
class Workload:
    """A role a workload runs as, with credentials from STS AssumeRole (as a container would have)."""

    role_name: str
    role_arn: str
    credentials: dict[str, str]
    client: AccessctlClient

    @property
    def principal_arn(self) -> str:
        return self.credentials["AssumedRoleArn"]


def create_database(
    stack: LocalStack, identifier: str, *, engine: str = "postgres", iam_auth: bool = True
) -> dict[str, Any]:
    rds = stack.client("rds")
    instance = rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        DBInstanceClass="db.t4g.micro",
        Engine=engine,
        MasterUsername="postgres",
        MasterUserPassword="local-only-not-a-secret",
        AllocatedStorage=20,
        EnableIAMDatabaseAuthentication=iam_auth,
    )["DBInstance"]
    return dict(instance)


def create_role(stack: LocalStack, role_name: str, *, opted_in: bool = True, path: str = "/workloads/") -> str:
    iam = stack.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{stack.account_id}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    tags = [{"Key": OPT_IN_TAG, "Value": "true"}] if opted_in else []
    role = iam.create_role(RoleName=role_name, Path=path, AssumeRolePolicyDocument=json.dumps(trust), Tags=tags)
    return str(role["Role"]["Arn"])


def assume(stack: LocalStack, role_arn: str, session_name: str) -> dict[str, str]:
    answer = stack.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)
    credentials = answer["Credentials"]
    return {
        "AccessKeyId": credentials["AccessKeyId"],
        "SecretAccessKey": credentials["SecretAccessKey"],
        "SessionToken": credentials["SessionToken"],
        "AssumedRoleArn": answer["AssumedRoleUser"]["Arn"],
    }


def signed_client(stack: LocalStack, credentials: dict[str, str]) -> AccessctlClient:
    """An API client signing with exactly these credentials (not the process's)."""
    session = botocore.session.Session()
    session.set_credentials(credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"])
    return AccessctlClient(stack.api_url, region=stack.region, session=session)


def workload(stack: LocalStack, role_name: str, *, opted_in: bool = True, session_name: str = "task-1") -> Workload:
    role_arn = create_role(stack, role_name, opted_in=opted_in)
    credentials = assume(stack, role_arn, session_name)
    return Workload(role_name, role_arn, credentials, signed_client(stack, credentials))


def grant_policies(stack: LocalStack, grants_path: str = "/accessctl/grants/") -> list[dict[str, Any]]:
    pages = stack.client("iam").get_paginator("list_policies").paginate(Scope="Local", PathPrefix=grants_path)
    return [policy for page in pages for policy in page["Policies"]]


def policy_document(stack: LocalStack, policy_arn: str) -> dict[str, Any]:
    iam = stack.client("iam")
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    return dict(iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"])


def attached_policies(stack: LocalStack, role_name: str) -> list[str]:
    attached = stack.client("iam").list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    return [policy["PolicyArn"] for policy in attached]


def audit_trail(stack: LocalStack, request_id: str) -> list[dict[str, Any]]:
    """The request's audit records in time order, as written (``details`` decoded from its JSON text)."""
    table = stack.resources["AuditTable"]
    items = stack.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="subject = :subject",
        ExpressionAttributeValues={":subject": {"S": request_id}},
    )["Items"]
    deserializer = TypeDeserializer()
    records = [{key: deserializer.deserialize(value) for key, value in item.items()} for item in items]
    return [{**record, "details": json.loads(record.get("details") or "{}")} for record in records]
