"""Typed views of the API's answers.

Parsing is lenient on purpose: unknown fields are ignored and missing ones become ``None``, so a newer
server does not break an older client. The server's exact answer is kept in ``raw`` (for ``--json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

PENDING, DENIED, GRANTING, ACTIVE, REVOKED, FAILED = "PENDING", "DENIED", "GRANTING", "ACTIVE", "REVOKED", "FAILED"
#: Allowed, and served by extending the caller's active grant on the same database user.
EXTENDED = "EXTENDED"
#: Statuses in which the caller holds access (connection details are present).
GRANTED_STATUSES = frozenset({ACTIVE, EXTENDED})
#: Statuses after which a request never changes again (ACTIVE does later become REVOKED, but it is the
#: outcome a waiter waits for).
TERMINAL_STATUSES = frozenset({ACTIVE, EXTENDED, DENIED, FAILED, REVOKED})


class _FromDict:
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object, ignoring unknown keys."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {name: data.get(name) for name in names if name != "raw"}
        if "raw" in names:
            values["raw"] = data
        return cls(**values)


@dataclass(frozen=True)
class Submission(_FromDict):
    """Answer of ``POST /requests``."""

    request_id: str
    status: str
    execution_arn: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Decision(_FromDict):
    """The policy decision for a request."""

    outcome: str
    reason: str | None = None
    rule_id: str | None = None
    granted_minutes: int | None = None
    target: dict[str, Any] | None = None
    decided_at: str | None = None


@dataclass(frozen=True)
class RequestGrant(_FromDict):
    """The IAM grant made for a request."""

    grant_id: str
    policy_name: str | None = None
    policy_arn: str | None = None
    role_name: str | None = None
    resource_arn: str | None = None
    issued_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None


@dataclass(frozen=True)
class Connection(_FromDict):
    """Where and as whom to connect; present only while the request is ACTIVE (or EXTENDED)."""

    host: str
    port: int
    region: str
    engine: str
    db_user: str


@dataclass(frozen=True)
class RequestView(_FromDict):
    """Answer of ``GET /requests/{request_id}``."""

    request_id: str
    status: str
    principal_arn: str | None = None
    role_arn: str | None = None
    database: str | None = None
    db_user: str | None = None
    requested_minutes: int | None = None
    reason: str | None = None
    requested_at: str | None = None
    decision: Decision | None = None
    grant: RequestGrant | None = None
    connection: Connection | None = None
    failure: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        view = super().from_dict(data)
        nested: dict[str, type[_FromDict]] = {
            "decision": Decision,
            "grant": RequestGrant,
            "connection": Connection,
        }
        converted: dict[str, Any] = {
            name: kind.from_dict(value) for name, kind in nested.items() if isinstance(value := data.get(name), dict)
        }
        return dataclasses.replace(view, **converted)

    @property
    def is_terminal(self) -> bool:
        """True once waiting is over (granted, denied, failed or revoked)."""
        return self.status in TERMINAL_STATUSES

    @property
    def granted(self) -> bool:
        """True when access is active and connection details are available."""
        return self.status in GRANTED_STATUSES and self.connection is not None


@dataclass(frozen=True)
class GrantRecord(_FromDict):
    """One grant as ``GET /grants`` and ``DELETE /grants/{grant_id}`` answer it."""

    grant_id: str
    status: str
    principal_arn: str | None = None
    role_name: str | None = None
    database: str | None = None
    db_user: str | None = None
    expires_at: str | None = None
    policy_arn: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
