"""Per-rule outcomes, written next to the rule as Cedar annotations, parsed into a typed model.

Permit: ``@id @description @outcome("auto"|"approval") @approver_group @approvals
@approval_timeout_minutes @max_minutes
@break_glass @timezone @window @signals @requires``. Forbid: ``@id @description @reason
@timezone @window @signals``. An unknown or malformed annotation fails loading.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from accessctl.models import MAX_REQUEST_MINUTES
from accessctl.policy.windows import TimeWindow
from accessctl.signals.clock import zone
from accessctl.signals.model import SIGNAL_NAMES

RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
RuleId = Annotated[str, StringConstraints(pattern=RULE_ID_PATTERN)]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")]


def _strict_bool(value: Any) -> Any:
    # Cedar annotations are strings; only the two spellings a reviewer expects are accepted.
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError('must be "true" or "false"')
        return value == "true"
    return value


def _split(separator: str) -> Any:
    def split(value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(separator) if part.strip()]
        return value

    return split


def _parse_windows(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(TimeWindow.parse(part) for part in value.split(";") if part.strip())
    return value


class RuleAnnotations(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    effect: Literal["permit", "forbid"]  # from the policy itself, not an annotation
    id: RuleId
    description: str = ""
    outcome: Literal["auto", "approval"] | None = None
    approver_group: GroupName | None = None
    approvals: int | None = Field(default=None, ge=1, le=5)
    # How long approvers have before the request ends as expired (unset: the deployment default).
    approval_timeout_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    max_minutes: int | None = Field(default=None, ge=1, le=MAX_REQUEST_MINUTES)
    break_glass: Annotated[bool, BeforeValidator(_strict_bool)] = False
    timezone: str = "UTC"
    window: Annotated[tuple[TimeWindow, ...], BeforeValidator(_parse_windows)] = ()
    signals: Annotated[frozenset[str] | None, BeforeValidator(_split(","))] = None
    requires: Annotated[tuple[str, ...], BeforeValidator(_split(";"))] = ()
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("signals")
    @classmethod
    def _known_signals(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        unknown = sorted((value or frozenset()) - set(SIGNAL_NAMES))
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; known: {list(SIGNAL_NAMES)}")
        return value

    @model_validator(mode="after")
    def _fits_the_effect(self) -> Self:
        if self.effect == "forbid":
            self._check_forbid()
        else:
            self._check_permit()
        return self

    def _check_forbid(self) -> None:
        if self.reason is None:
            raise ValueError("a forbid needs @reason (shown to the requester)")
        permit_only = {
            "outcome",
            "approver_group",
            "approvals",
            "approval_timeout_minutes",
            "max_minutes",
            "requires",
        } & self.model_fields_set
        if permit_only or self.break_glass:
            raise ValueError(f"a forbid cannot have {sorted(permit_only) or ['break_glass']}")

    def _check_permit(self) -> None:
        if self.reason is not None:
            raise ValueError("@reason is for forbids; describe a permit with @description")
        if self.outcome is None or self.max_minutes is None:
            raise ValueError('a permit needs @outcome("auto"|"approval") and @max_minutes')
        if self.outcome == "approval":
            if self.approver_group is None:
                raise ValueError('@outcome("approval") needs @approver_group')
            if self.break_glass:
                raise ValueError('break-glass rules are @outcome("auto"): they exist for when nobody can approve')
        elif self.approver_group is not None or self.approvals is not None or self.approval_timeout_minutes is not None:
            raise ValueError('@approver_group, @approvals and @approval_timeout_minutes need @outcome("approval")')

    @property
    def approvals_required(self) -> int:
        if self.outcome != "approval":
            return 0
        return self.approvals or 1


def parse_annotations(effect: str, annotations: dict[str, Any]) -> RuleAnnotations:
    """Validate a policy's annotations (raises pydantic's ValidationError)."""
    return RuleAnnotations.model_validate({"effect": effect, **annotations})
