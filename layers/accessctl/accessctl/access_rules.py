"""The decision seam: a reviewed file of allowed (role, database, db user, max minutes) rules.

Deliberately small; context-aware policy (MFA, source IP, time, posture) replaces
:func:`decide` behind the same signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from accessctl.models import (
    DATABASE_ID_PATTERN,
    DB_USER_PATTERN,
    DatabaseTarget,
    Decision,
    Outcome,
    to_iso,
    utc_now,
)

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
RoleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+=,.@-]+$", max_length=64)]


class AccessRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RuleId
    description: str = ""
    roles: list[RoleName] = Field(min_length=1, description="IAM role names allowed to ask.")
    databases: list[Annotated[str, StringConstraints(pattern=DATABASE_ID_PATTERN)]] = Field(min_length=1)
    db_users: list[Annotated[str, StringConstraints(pattern=DB_USER_PATTERN)]] = Field(min_length=1)
    max_minutes: int = Field(ge=1, le=720)

    def matches(self, role_name: str, database: str, db_user: str) -> bool:
        return role_name in self.roles and database in self.databases and db_user in self.db_users


class AccessRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[AccessRule]


def load_access_rules(path: Path) -> AccessRules:
    """Parse and validate the rules file; a bad file fails the function at cold start."""
    return AccessRules.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def decide(
    rules: AccessRules,
    *,
    role_name: str,
    database: str,
    db_user: str,
    requested_minutes: int,
    target: DatabaseTarget | None,
    ceiling_minutes: int,
) -> Decision:
    """Allow (with the minutes granted) or deny (with a reason the requester understands)."""
    decided_at = to_iso(utc_now())

    def deny(reason: str, rule_id: str | None = None) -> Decision:
        return Decision(outcome=Outcome.DENY, reason=reason, rule_id=rule_id, target=target, decided_at=decided_at)

    if target is None:
        return deny(f"database {database} does not exist in this account and region")
    if not target.iam_auth_enabled:
        return deny(f"IAM database authentication is disabled on {database}")
    rule = next((rule for rule in rules.rules if rule.matches(role_name, database, db_user)), None)
    if rule is None:
        return deny(f"no access rule allows role {role_name} to connect to {database} as {db_user}")
    granted = min(requested_minutes, rule.max_minutes, ceiling_minutes)
    reason = f"allowed by rule {rule.id}"
    if granted < requested_minutes:
        reason += f"; duration clamped from {requested_minutes} to {granted} minutes (the rule's maximum)"
    return Decision(
        outcome=Outcome.ALLOW,
        reason=reason,
        rule_id=rule.id,
        granted_minutes=granted,
        target=target,
        decided_at=decided_at,
    )
