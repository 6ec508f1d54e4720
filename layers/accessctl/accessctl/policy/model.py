"""What the policy engine is asked, and what it answers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from accessctl.models import MAX_REQUEST_MINUTES, DbUser
from accessctl.signals.clock import require_aware
from accessctl.signals.database import DatabaseFacts
from accessctl.signals.model import RequestSignals
from accessctl.signals.workload import RoleFacts


class WorkloadPrincipal(BaseModel):
    """A role acting for itself (no human behind it): Cedar ``Role``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["workload"] = "workload"
    role: RoleFacts

    def describe(self) -> str:
        return f"role {self.role.name}"


class HumanPrincipal(BaseModel):
    """A human acting through a role: Cedar ``User`` in its groups and in its role.

    ``verified`` is False for a human-facing role that sent no valid ID token: such a caller is
    still a human (so human guardrails apply) but has no groups.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["human"] = "human"
    subject: str
    issuer: str
    verified: bool
    role: RoleFacts

    def describe(self) -> str:
        who = self.subject if self.verified else "an unidentified human"
        return f"{who} (via role {self.role.name})"


Principal = Annotated[WorkloadPrincipal | HumanPrincipal, Field(discriminator="kind")]


class PolicyRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    principal: Principal
    database: DatabaseFacts
    db_user: DbUser
    requested_minutes: int = Field(ge=1, le=MAX_REQUEST_MINUTES)
    signals: RequestSignals = Field(default_factory=RequestSignals)
    at: datetime

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return require_aware(value)


class PolicyOutcome(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    NEEDS_APPROVAL = "NEEDS_APPROVAL"


class PolicyDecision(BaseModel):
    """The answer, with everything needed to act on it and to explain it."""

    outcome: PolicyOutcome
    summary: str = Field(description="One sentence for the requester.")
    reasons: list[str] = Field(default_factory=list, description="Why, in plain words (one per rule).")
    rule_id: str | None = Field(default=None, description="The permit that decided the outcome.")
    matched_rule_ids: list[str] = Field(default_factory=list, description="Every policy that matched.")
    granted_minutes: int | None = None
    grant_ends_by: datetime | None = Field(default=None, description="The rule's window end, if it clamped the grant.")
    approver_group: str | None = None
    approvals_required: int = 0
    approval_timeout_minutes: int | None = None
    break_glass: bool = False
    severity: Literal["info", "high"] = "info"
    missing_signals: list[str] = Field(default_factory=list)
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Each signal with its provenance.")
    errors: list[str] = Field(default_factory=list, description="Evaluation errors (each one denies).")
    decided_at: datetime
