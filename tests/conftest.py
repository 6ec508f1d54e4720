"""Shared fixtures: an emulated AWS account (moto, in-process) with the template's tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from accessctl_local import moto_patches
from tests.support.template import PROJECT_ROOT, create_table

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
OPT_IN_TAG = "accessctl-grantable"
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def pytest_configure(config: pytest.Config) -> None:
    # The emulator as the local stack runs it: TransactWriteItems undoes only what it touched, and a
    # Query on a table's key reads that partition only.
    moto_patches.install_transaction_undo_log()
    moto_patches.install_partition_query()
    # ... and StopExecution right after StartExecution stops the execution instead of failing.
    moto_patches.install_execution_stop()


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "accessctl",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Estate:
    """An emulated account: the template's tables, opted-in roles, and RDS databases."""

    session: boto3.session.Session
    deps: Any

    def role(self, name: str, *, opted_in: bool = True, path: str = "/") -> str:
        tags = [{"Key": OPT_IN_TAG, "Value": "true"}] if opted_in else []
        iam = self.session.client("iam")
        return str(
            iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST_POLICY, Tags=tags)["Role"]["Arn"]
        )

    def postgres(self, identifier: str, *, iam_auth: bool = True) -> dict[str, Any]:
        rds = self.session.client("rds")
        return dict(
            rds.create_db_instance(
                DBInstanceIdentifier=identifier,
                DBInstanceClass="db.t4g.micro",
                Engine="postgres",
                MasterUsername="postgres",
                MasterUserPassword="not-used-in-tests",
                AllocatedStorage=20,
                EnableIAMDatabaseAuthentication=iam_auth,
            )["DBInstance"]
        )

    def grant_policies(self) -> list[dict[str, Any]]:
        iam = self.session.client("iam")
        return list(iam.list_policies(Scope="Local", PathPrefix=self.deps.settings.grants_path)["Policies"])

    def hand_made_grant_policy(self, role_name: str) -> str:
        """A grant-shaped policy under the grants path that no request issued, attached to ``role_name``."""
        from accessctl.grant_policy import build_grant_policy

        document = build_grant_policy(
            "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXYZ/app_rw", "2099-01-01T00:00:00Z"
        )
        iam = self.session.client("iam")
        arn = str(
            iam.create_policy(
                PolicyName="hand-made", Path=self.deps.settings.grants_path, PolicyDocument=json.dumps(document)
            )["Policy"]["Arn"]
        )
        iam.attach_role_policy(RoleName=role_name, PolicyArn=arn)
        return arn

    def attached(self, role_name: str) -> list[str]:
        iam = self.session.client("iam")
        return [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]


@pytest.fixture
def estate(aws_environment: None) -> Iterator[Estate]:
    from accessctl.audit import AuditLog
    from accessctl.config import Settings
    from accessctl.dependencies import Dependencies
    from accessctl.store import GrantsStore

    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        dynamodb = session.client("dynamodb")
        create_table(dynamodb, "GrantsTable", "grants")
        create_table(dynamodb, "AuditTable", "audit")
        create_table(dynamodb, "IdempotencyTable", "idempotency")
        sfn = session.client("stepfunctions")
        definition = (PROJECT_ROOT / "statemachine" / "access_request.asl.json").read_text()
        state_machine_arn = sfn.create_state_machine(
            name="access-request",
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/sfn",
        )["stateMachineArn"]
        settings = Settings(
            grants_table="grants",
            audit_table="audit",
            idempotency_table="idempotency",
            state_machine_arn=state_machine_arn,
            revoke_function_name="revoke",
        )
        resource = session.resource("dynamodb")
        deps = Dependencies(
            settings=settings,
            grants=GrantsStore(resource.Table("grants")),
            audit=AuditLog(resource.Table("audit")),
            iam=session.client("iam"),
            rds=session.client("rds"),
            sfn=sfn,
            lambda_client=session.client("lambda"),
            sns=session.client("sns"),
            region=REGION,
            account_id=ACCOUNT_ID,
            partition="aws",
        )
        yield Estate(session=session, deps=deps)
