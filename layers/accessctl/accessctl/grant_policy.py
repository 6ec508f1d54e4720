"""Grant policy documents: built from validated parts, and checked before IAM ever sees them.

A grant is one customer-managed policy allowing ``rds-db:connect`` on exactly one ``dbuser``
ARN, with an ``aws:CurrentTime`` condition so it stops working at expiry even if revocation
never happens. The checker is the last gate before ``CreatePolicy``; the sweeper runs the same
checker over what is in IAM to find grants tampered with after issue.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from accessctl.errors import UnsafeGrantError
from accessctl.models import DB_USER_PATTERN, DatabaseTarget, to_iso

POLICY_VERSION = "2012-10-17"
CONNECT_ACTION = "rds-db:connect"
POLICY_NAME_PREFIX = "accessctl-grant-"
MAX_POLICY_CHARACTERS = 6144  # IAM's limit for a managed policy document

_RESOURCE_ID = r"(?:db|cluster)-[A-Z0-9]{1,64}"
_DBUSER_ARN = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov):rds-db:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:dbuser:"
    + _RESOURCE_ID
    + "/"
    + DB_USER_PATTERN.strip("^$")
    + "$"
)
_ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def dbuser_arn(target: DatabaseTarget, db_user: str) -> str:
    """``arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE-ID/DBUSER``, from RDS's own answers."""
    arn = f"arn:{target.partition}:rds-db:{target.region}:{target.account_id}:dbuser:{target.resource_id}/{db_user}"
    if not _DBUSER_ARN.match(arn):
        raise UnsafeGrantError(f"refusing to build a grant for an unexpected resource: {arn}")
    return arn


def policy_name_for(grant_id: str) -> str:
    return f"{POLICY_NAME_PREFIX}{grant_id}"


def build_grant_policy(resource_arn: str, expires_at: str) -> dict[str, Any]:
    """The policy document of one grant, checked before it is returned."""
    document = {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AccessctlGrant",
                "Effect": "Allow",
                "Action": CONNECT_ACTION,
                "Resource": resource_arn,
                "Condition": {"DateLessThan": {"aws:CurrentTime": expires_at}},
            }
        ],
    }
    check_grant_policy(document, expected_resource_arn=resource_arn, expected_expires_at=expires_at)
    return document


def grant_expiry(granted_at: datetime, minutes: int) -> str:
    return to_iso(granted_at + timedelta(minutes=minutes))


def grant_policy_problems(
    document: dict[str, Any] | str, expected_resource_arn: str | None = None, expected_expires_at: str | None = None
) -> list[str]:
    """Every way ``document`` differs from a well-formed grant (empty when it is one)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return ["the document is not JSON"]
    if not isinstance(document, dict):
        return ["the document is not a JSON object"]
    problems: list[str] = []
    if len(json.dumps(document, separators=(",", ":"))) > MAX_POLICY_CHARACTERS:
        problems.append("the document exceeds IAM's managed policy size")
    if document.get("Version") != POLICY_VERSION:
        problems.append(f"Version must be {POLICY_VERSION}")
    if set(document) - {"Version", "Statement", "Id"}:
        problems.append("unexpected top-level keys")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or len(statements) != 1 or not isinstance(statements[0], dict):
        return [*problems, "a grant has exactly one statement"]
    problems.extend(_statement_problems(statements[0], expected_resource_arn, expected_expires_at))
    return problems


def _statement_problems(
    statement: dict[str, Any], expected_resource_arn: str | None, expected_expires_at: str | None
) -> list[str]:
    problems: list[str] = []
    if set(statement) - {"Sid", "Effect", "Action", "Resource", "Condition"}:
        problems.append("the statement has keys a grant never has (NotAction, NotResource, Principal, ...)")
    if statement.get("Effect") != "Allow":
        problems.append("Effect must be Allow")
    if _single(statement.get("Action")) != CONNECT_ACTION:
        problems.append(f"Action must be exactly {CONNECT_ACTION}")
    resource = _single(statement.get("Resource"))
    if not isinstance(resource, str) or not _DBUSER_ARN.match(resource):
        problems.append("Resource must be exactly one dbuser ARN without wildcards")
    elif expected_resource_arn is not None and resource != expected_resource_arn:
        problems.append(f"Resource is {resource}, expected {expected_resource_arn}")
    condition = statement.get("Condition")
    expiry = None
    if isinstance(condition, dict) and set(condition) == {"DateLessThan"}:
        date_less_than = condition["DateLessThan"]
        if isinstance(date_less_than, dict) and set(date_less_than) == {"aws:CurrentTime"}:
            expiry = _single(date_less_than["aws:CurrentTime"])
    if not isinstance(expiry, str) or not _ISO_INSTANT.match(expiry):
        problems.append("Condition must be exactly DateLessThan aws:CurrentTime <instant>")
    elif expected_expires_at is not None and expiry != expected_expires_at:
        problems.append(f"the expiry condition is {expiry}, expected {expected_expires_at}")
    return problems


def check_grant_policy(
    document: dict[str, Any] | str, expected_resource_arn: str | None = None, expected_expires_at: str | None = None
) -> None:
    """Raise :class:`UnsafeGrantError` unless ``document`` is exactly a grant."""
    problems = grant_policy_problems(document, expected_resource_arn, expected_expires_at)
    if problems:
        raise UnsafeGrantError("unsafe grant policy: " + "; ".join(problems))


def _single(value: Any) -> Any:
    """IAM accepts "x" and ["x"] alike; anything with more than one element is not single."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else None
    return value
