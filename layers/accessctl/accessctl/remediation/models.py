"""What the remediator finds and does: findings, fixes, and per-finding results (pydantic)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from accessctl.models import AwsRequest
from accessctl.remediation.settings import Mode


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ResourceKind(StrEnum):
    SECURITY_GROUP = "security-group"
    DB_INSTANCE = "db-instance"
    DB_CLUSTER = "db-cluster"
    DB_PROXY = "db-proxy"
    DB_PARAMETER_GROUP = "db-parameter-group"
    DB_CLUSTER_PARAMETER_GROUP = "db-cluster-parameter-group"
    DB_SNAPSHOT = "db-snapshot"
    DB_CLUSTER_SNAPSHOT = "db-cluster-snapshot"
    IAM_POLICY = "iam-policy"
    IAM_INLINE_POLICY = "iam-inline-policy"


class ResourceRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ResourceKind
    id: str
    arn: str | None = None

    @property
    def subject(self) -> str:
        """The audit subject: one history per resource."""
        return f"{self.kind.value}/{self.id}"


FixAction = Literal[
    "revoke-ingress",
    "disable-public-access",
    "enable-iam-auth",
    "enforce-tls",
    "make-snapshot-private",
    "detach-policy",
    "delete-inline-policy",
]


class Fix(BaseModel):
    """One change, described precisely enough to apply and to audit."""

    model_config = ConfigDict(frozen=True)

    action: FixAction
    parameters: dict[str, Any]
    description: str
    needs_reboot: bool = False


class Finding(BaseModel):
    """One rule broken by one resource (for ingress: one CIDR of one permission)."""

    rule_id: str
    severity: Severity
    resource: ResourceRef
    summary: str
    databases: list[str] = Field(default_factory=list)  # the protected databases it exposes
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)  # the state the fix leaves (when there is one)
    fix: Fix | None = None
    # Tag sets that may exempt the finding: it is exempt only if every one carries a valid exemption.
    exemption_tags: list[dict[str, str]] = Field(default_factory=list, exclude=True)


class Outcome(StrEnum):
    REPORTED = "reported"  # report mode, or a rule with no automatic fix
    FIXED = "fixed"
    FAILED = "failed"
    EXEMPT = "exempt"


class Exemption(BaseModel):
    model_config = ConfigDict(frozen=True)

    until: str
    reason: str
    rules: list[str] | None = None  # None: every rule


class FindingResult(BaseModel):
    finding: Finding
    mode: Mode
    outcome: Outcome
    detail: str
    attempts: int = 0
    error: str | None = None
    exemption: Exemption | None = None
    # The fix's mutating AWS calls (CloudTrail request ids), failed attempts included: on the audit record.
    aws_requests: list[AwsRequest] = Field(default_factory=list)


class Trigger(BaseModel):
    """Why the remediator ran: a schedule, or one CloudTrail event (with who made the change)."""

    kind: Literal["schedule", "event"]
    event_name: str | None = None
    event_id: str | None = None
    changed_by: str | None = None
    event_time: str | None = None
    source_ip: str | None = None


class RemediationReport(BaseModel):
    trigger: Trigger
    started_at: str
    duration_ms: float = 0.0
    examined: dict[str, int] = Field(default_factory=dict)
    results: list[FindingResult] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)  # reads that failed (others went on)
    ignored: str | None = None  # why an event was ignored
    audit_lost: int = 0  # audit records neither written nor deferred to the outbox

    def counts(self) -> dict[str, int]:
        counts = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """What the handler returns: small, JSON, no secrets."""
        return {
            "trigger": self.trigger.model_dump(mode="json", exclude_none=True),
            "examined": self.examined,
            "counts": self.counts(),
            "errors": self.errors,
            "audit_lost": self.audit_lost,
            "ignored": self.ignored,
            "duration_ms": round(self.duration_ms, 1),
            "results": [
                {
                    "rule_id": result.finding.rule_id,
                    "resource": result.finding.resource.subject,
                    "outcome": result.outcome.value,
                    "detail": result.detail,
                }
                for result in self.results
            ],
        }
