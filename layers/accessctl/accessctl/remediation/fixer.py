"""Applying fixes: each one on its own, retried on throttling with backoff, failing alone.

Botocore's adaptive retries absorb throttling first; what is still throttled surfaces as
:class:`TransientError` and is retried here a few more times with exponential backoff and jitter.
Any other error fails that fix only. Fixes are idempotent: a range already gone counts as fixed.

Each fix notes the mutating calls it made (their CloudTrail request ids, failed attempts included)
so its audit record links to what CloudTrail recorded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from accessctl.aws import aws_requests, call, error_code, record_requests
from accessctl.errors import TransientError
from accessctl.models import AwsRequest
from accessctl.remediation.models import Fix, FixAction

T = TypeVar("T")

_ALREADY_GONE = frozenset({"InvalidPermission.NotFound", "NoSuchEntity"})


# The client each action calls: the request-id hook is put on it when a fix first uses it (a lazy
# client is only made then).
_SERVICE_OF: dict[FixAction, str] = {
    "revoke-ingress": "ec2",
    "disable-public-access": "rds",
    "enable-iam-auth": "rds",
    "enforce-tls": "rds",
    "make-snapshot-private": "rds",
    "detach-policy": "iam",
    "delete-inline-policy": "iam",
}


@dataclass(frozen=True)
class Applied:
    detail: str
    attempts: int
    aws_requests: list[AwsRequest] = field(default_factory=list)  # the calls that made the change


class FixFailed(Exception):
    def __init__(self, message: str, attempts: int, aws_requests: list[AwsRequest] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.aws_requests = list(aws_requests or [])  # the attempts that failed, as CloudTrail has them


def with_retries(
    operation: Callable[[], T],
    *,
    max_attempts: int,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """(result, attempts). Retries :class:`TransientError` only; the last one is raised as :class:`FixFailed`."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation(), attempt
        except TransientError as error:
            if attempt >= max_attempts:
                raise FixFailed(f"still throttled after {attempt} attempts: {error}", attempt) from error
            sleep(min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
        except ClientError as error:
            raise FixFailed(f"{error_code(error)}: {error}", attempt) from error


class Fixer:
    def __init__(
        self, *, ec2: Any, rds: Any, iam: Any, max_attempts: int, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._ec2 = ec2
        self._rds = rds
        self._iam = iam
        self._max_attempts = max_attempts
        self._sleep = sleep

    def apply(self, fix: Fix) -> Applied:
        action = getattr(self, "_" + fix.action.replace("-", "_"))
        service_client = {"ec2": self._ec2, "rds": self._rds, "iam": self._iam}[_SERVICE_OF[fix.action]]
        with aws_requests() as calls:
            record_requests(service_client)
            try:
                detail, attempts = with_retries(
                    lambda: action(fix.parameters), max_attempts=self._max_attempts, sleep=self._sleep
                )
            except FixFailed as failed:
                failed.aws_requests = list(calls)
                raise
        return Applied(str(detail), attempts, list(calls))

    # ---------------------------------------------------------------- actions

    def _revoke_ingress(self, parameters: dict[str, Any]) -> str:
        try:
            answer = call(
                self._ec2.revoke_security_group_ingress,
                GroupId=parameters["GroupId"],
                IpPermissions=parameters["IpPermissions"],
            )
        except ClientError as error:
            if error_code(error) in _ALREADY_GONE:
                return "already revoked by someone else"
            raise
        unknown = answer.get("UnknownIpPermissions") or []
        if unknown:
            return f"revoked; {len(unknown)} range(s) were already gone"
        return "revoked"

    def _disable_public_access(self, parameters: dict[str, Any]) -> str:
        self._modify(parameters, PubliclyAccessible=False)
        return "PubliclyAccessible set to false"

    def _enable_iam_auth(self, parameters: dict[str, Any]) -> str:
        self._modify(parameters, EnableIAMDatabaseAuthentication=True)
        return "IAM database authentication enabled"

    def _modify(self, parameters: dict[str, Any], **change: Any) -> None:
        if parameters["kind"] == "cluster":
            call(
                self._rds.modify_db_cluster,
                DBClusterIdentifier=parameters["identifier"],
                ApplyImmediately=True,
                **change,
            )
        else:
            call(
                self._rds.modify_db_instance,
                DBInstanceIdentifier=parameters["identifier"],
                ApplyImmediately=True,
                **change,
            )

    def _enforce_tls(self, parameters: dict[str, Any]) -> str:
        change = [
            {
                "ParameterName": parameters["parameter"],
                "ParameterValue": parameters["value"],
                "ApplyMethod": parameters["apply_method"],
            }
        ]
        if parameters["kind"] == "cluster":
            call(
                self._rds.modify_db_cluster_parameter_group,
                DBClusterParameterGroupName=parameters["name"],
                Parameters=change,
            )
        else:
            call(self._rds.modify_db_parameter_group, DBParameterGroupName=parameters["name"], Parameters=change)
        if parameters["apply_method"] == "pending-reboot":
            return f"{parameters['parameter']}=1 set; takes effect at the next reboot of the databases using it"
        return f"{parameters['parameter']}=1 set, applied immediately"

    def _make_snapshot_private(self, parameters: dict[str, Any]) -> str:
        if parameters["kind"] == "cluster":
            call(
                self._rds.modify_db_cluster_snapshot_attribute,
                DBClusterSnapshotIdentifier=parameters["identifier"],
                AttributeName="restore",
                ValuesToRemove=["all"],
            )
        else:
            call(
                self._rds.modify_db_snapshot_attribute,
                DBSnapshotIdentifier=parameters["identifier"],
                AttributeName="restore",
                ValuesToRemove=["all"],
            )
        return "public restore permission removed"

    def _detach_policy(self, parameters: dict[str, Any]) -> str:
        operations = {
            "role": (self._iam.detach_role_policy, "RoleName"),
            "user": (self._iam.detach_user_policy, "UserName"),
            "group": (self._iam.detach_group_policy, "GroupName"),
        }
        for kind, name in parameters["holders"]:
            operation, key = operations[kind]
            try:
                call(operation, PolicyArn=parameters["policy_arn"], **{key: name})
            except ClientError as error:
                if error_code(error) not in _ALREADY_GONE:
                    raise
        return f"detached from {len(parameters['holders'])} holder(s)"

    def _delete_inline_policy(self, parameters: dict[str, Any]) -> str:
        operations = {
            "role": (self._iam.delete_role_policy, "RoleName"),
            "user": (self._iam.delete_user_policy, "UserName"),
            "group": (self._iam.delete_group_policy, "GroupName"),
        }
        operation, key = operations[parameters["holder_kind"]]
        try:
            call(operation, PolicyName=parameters["policy_name"], **{key: parameters["holder_name"]})
        except ClientError as error:
            if error_code(error) not in _ALREADY_GONE:
                raise
            return "already deleted"
        return "inline policy deleted"
