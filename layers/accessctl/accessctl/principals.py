"""Who is asking: parsed from the signed request context, resolved against IAM.

API Gateway fills ``requestContext.identity`` only after verifying the SigV4 signature
(``AWS_IAM`` authorisation), so it is the one source of the caller's identity. Grants attach
to IAM roles, so the caller must sign with a role's credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from accessctl.aws import call, error_code
from accessctl.errors import ForbiddenError, NotAuthenticatedError
from accessctl.models import Caller

_ASSUMED_ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):sts::(?P<account>\d{12}):assumed-role/(?P<role>[\w+=,.@-]{1,64})/(?P<session>[\w+=,.@-]{2,64})$"
)
_IAM_ARN = re.compile(r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):(?:iam|sts)::(?P<account>\d{12}):")


def role_arn_of_session(principal_arn: str) -> str | None:
    """The role ARN of a verified assumed-role session ARN (without the role's path, which the
    session ARN does not carry), or None for any other principal."""
    assumed = _ASSUMED_ROLE_ARN.match(principal_arn)
    if not assumed:
        return None
    return f"arn:{assumed['partition']}:iam::{assumed['account']}:role/{assumed['role']}"


def caller_from_identity(identity: dict[str, Any] | None, admins: frozenset[str] = frozenset()) -> Caller:
    """The caller as API Gateway verified it. Raises if the request was not signed by a principal."""
    principal_arn = (identity or {}).get("userArn") or ""
    source_ip = (identity or {}).get("sourceIp")
    assumed = _ASSUMED_ROLE_ARN.match(principal_arn)
    if assumed:
        return Caller(
            principal_arn=principal_arn,
            account_id=assumed["account"],
            partition=assumed["partition"],
            role_name=assumed["role"],
            source_ip=source_ip,
        )
    other = _IAM_ARN.match(principal_arn)
    if other:
        return Caller(
            principal_arn=principal_arn,
            account_id=other["account"],
            partition=other["partition"],
            source_ip=source_ip,
            is_admin=principal_arn in admins,
        )
    raise NotAuthenticatedError("the request is not signed by an AWS principal")


@dataclass(frozen=True)
class RoleInfo:
    name: str
    arn: str
    tags: dict[str, str]

    def is_opted_in(self, tag_key: str) -> bool:
        return self.tags.get(tag_key, "").lower() == "true"


def lookup_role(iam: Any, role_name: str) -> RoleInfo:
    """The role as IAM knows it (path included), with its tags."""
    try:
        role = call(iam.get_role, RoleName=role_name)["Role"]
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            raise ForbiddenError(f"role {role_name} does not exist in this account") from error
        raise
    tags = {tag["Key"]: tag["Value"] for tag in role.get("Tags", [])}
    if not tags:
        # GetRole returns tags in current AWS; ListRoleTags is the documented source.
        listed = call(iam.list_role_tags, RoleName=role_name)
        tags = {tag["Key"]: tag["Value"] for tag in listed.get("Tags", [])}
    return RoleInfo(name=role["RoleName"], arn=role["Arn"], tags=tags)


def resolve_caller(caller: Caller, iam: Any, *, account_id: str, admins: frozenset[str], opt_in_tag_key: str) -> Caller:
    """Add the role ARN (with its path), the admin flag and the opt-in flag to an assumed-role caller.

    Only roles of this account are looked up: a same-named role elsewhere is a different role.
    """
    if caller.role_name is None or caller.account_id != account_id:
        return caller
    role = lookup_role(iam, caller.role_name)
    return caller.model_copy(
        update={"role_arn": role.arn, "is_admin": role.arn in admins, "opted_in": role.is_opted_in(opt_in_tag_key)}
    )
