"""Typed models: what a caller may send, what we store, what we decide and grant.

Everything a caller sends is validated here, at the edge, with closed patterns: a value that
reaches an ARN or a policy document has already been checked to be a plain identifier.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# RDS identifiers: a letter, then letters, digits and single hyphens (no trailing hyphen).
DATABASE_ID_PATTERN = r"^[A-Za-z](?:-?[A-Za-z0-9]){0,62}$"
# Database user names as RDS IAM authentication accepts them in a dbuser ARN: no wildcards,
# no path separators, no dots (so neither "*" nor ".." can widen the resource).
DB_USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# A company identity: an email address (what the IdP, Slack and the people directory share).
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+$"

MAX_REQUEST_MINUTES = 720


def _no_control_characters(value: str) -> str:
    if any(ord(char) < 32 and char not in "\t" for char in value):
        raise ValueError("must not contain control characters")
    return value


DatabaseId = Annotated[str, StringConstraints(pattern=DATABASE_ID_PATTERN)]
DbUser = Annotated[str, StringConstraints(pattern=DB_USER_PATTERN)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500), AfterValidator(_no_control_characters)
]


def utc_now() -> datetime:
    """Now, in UTC, to the second (IAM conditions and Step Functions waits use whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


def to_iso(instant: datetime) -> str:
    """``2026-12-03T16:45:00Z``: the form IAM's aws:CurrentTime and ASL TimestampPath both accept."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_now() -> str:
    """Now in UTC to the microsecond: orders audit records written within one second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RequestStatus(StrEnum):
    PENDING = "PENDING"  # submitted, being decided
    DENIED = "DENIED"
    GRANTING = "GRANTING"  # grant recorded, policy being created/attached (the sweeper can see it)
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    FAILED = "FAILED"  # no grant was made (or a half-made one was removed)
    EXTENDED = "EXTENDED"  # allowed, and served by extending the caller's active grant (see extends)
    NEEDS_APPROVAL = "NEEDS_APPROVAL"  # policy allows it only after approval; waiting for approvers
    APPROVED = "APPROVED"  # the required approvals arrived; the grant is being issued
    EXPIRED = "EXPIRED"  # the approvals did not come within the rule's approval timeout; nothing granted


class Outcome(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    NEEDS_APPROVAL = "NEEDS_APPROVAL"


class RevokeReason(StrEnum):
    EXPIRED = "EXPIRED"
    EARLY = "EARLY"  # DELETE /grants/{id}
    COMPENSATION = "COMPENSATION"  # a grant that failed half-way
    SWEEP = "SWEEP"  # backstop: past expiry and still active
    TAMPERED = "TAMPERED"  # the policy in IAM no longer is the grant that was issued


# ------------------------------------------------------------------ the API's input


class AccessRequestSubmission(BaseModel):
    """The body of ``POST /requests``. Identity and context never come from here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    database: DatabaseId = Field(description="RDS DB instance identifier or Aurora DB cluster identifier.")
    db_user: DbUser = Field(description="Database user to connect as (must be set up for IAM authentication).")
    duration_minutes: int = Field(ge=1, le=MAX_REQUEST_MINUTES, description="Requested access time in minutes.")
    reason: Reason = Field(description="Why access is needed (audited).")
    idempotency_key: Annotated[str, StringConstraints(pattern=IDEMPOTENCY_KEY_PATTERN)] | None = Field(
        default=None, description="Client key: the same key from the same caller returns the same request."
    )
    on_behalf_of: Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)] | None = Field(
        default=None,
        description=(
            "For allow-listed chat-ops bots only: the company identity (email) of the person the request is for. "
            "The grant goes to that person's directory role; the audit names both."
        ),
    )


class Caller(BaseModel):
    """Who signed the request, resolved from the signed request context and IAM (never the body)."""

    model_config = ConfigDict(frozen=True)

    principal_arn: str  # as signed, e.g. arn:aws:sts::123456789012:assumed-role/orders-service/i-0abc
    account_id: str
    partition: str
    role_name: str | None = None  # set for assumed roles
    role_arn: str | None = None  # resolved from IAM (includes the role's path)
    source_ip: str | None = None
    is_admin: bool = False
    opted_in: bool = False  # the role carries the opt-in tag


# ------------------------------------------------------------------ decisions and grants


class DatabaseTarget(BaseModel):
    """What RDS says about the database (looked up server-side; never taken from the caller)."""

    identifier: str
    kind: Literal["instance", "cluster"]
    resource_id: str  # DbiResourceId (db-...) or DbClusterResourceId (cluster-...)
    engine: str
    host: str | None = None
    port: int | None = None
    region: str
    account_id: str
    partition: str
    iam_auth_enabled: bool


class Decision(BaseModel):
    """The decision as recorded and answered: outcome, why (in words), and what it rested on."""

    outcome: Outcome
    reason: str
    rule_id: str | None = None
    granted_minutes: int | None = None
    target: DatabaseTarget | None = None
    decided_at: str
    reasons: list[str] = Field(default_factory=list)
    matched_rule_ids: list[str] = Field(default_factory=list)
    approver_group: str | None = None
    approvals_required: int = 0
    # Seconds approvers have (the workflow's TimeoutSecondsPath); set for NEEDS_APPROVAL only.
    approval_timeout_seconds: int | None = None
    break_glass: bool = False
    severity: Literal["info", "high"] = "info"
    missing_signals: list[str] = Field(default_factory=list)
    # Each context signal with its provenance (where it came from, or why it is missing).
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Grant(BaseModel):
    grant_id: str
    policy_name: str
    policy_arn: str
    role_name: str
    resource_arn: str
    issued_at: str
    expires_at: str
    revoked_at: str | None = None
    revoke_reason: RevokeReason | None = None
    extended_by: list[str] = Field(default_factory=list)  # later requests that moved the expiry


class RequestOrigin(StrEnum):
    API = "api"  # signed (SigV4) by the principal who receives the grant
    SLACK = "slack"  # a Slack slash command, by a workspace member mapped to a company identity
    CHATOPS_BOT = "chatops-bot"  # an allow-listed chat-ops bot (SigV4) on behalf of a named person


class SlackOrigin(BaseModel):
    """Where in Slack a request came from (ids only; used to answer the requester there)."""

    team_id: str
    user_id: str
    channel_id: str | None = None


class Requester(BaseModel):
    """The person a request is for, when they did not sign it themselves (Slack, chat-ops bots).

    ``identity`` is the company identity (a verified email address); ``groups`` come from the
    people directory, never from the chat payload; ``source`` says how both were established.
    """

    identity: str
    groups: list[str] = Field(default_factory=list)
    source: str
    slack: SlackOrigin | None = None
    via: str | None = None  # the chat-ops bot's principal ARN that asked on their behalf


class AccessRequest(BaseModel):
    """A request and everything that happened to it: the record in the grants table."""

    request_id: str
    status: RequestStatus
    principal_arn: str
    role_name: str
    role_arn: str
    account_id: str
    database: str
    db_user: str
    requested_minutes: int
    reason: str
    requested_at: str
    source_ip: str | None = None
    # The verified claims of the caller's ID token (signals.oidc.VerifiedIdToken), never the token.
    id_token: dict[str, Any] | None = None
    execution_arn: str | None = None
    decision: Decision | None = None
    grant: Grant | None = None
    extends: str | None = None  # for EXTENDED: the request whose grant this one extended
    failure: str | None = None
    origin: RequestOrigin = RequestOrigin.API
    requester: Requester | None = None  # set for Slack and chat-ops bot requests

    @property
    def requested_by(self) -> str:
        """The person (or workload) the request is for: the company identity, else the signer."""
        return self.requester.identity if self.requester else self.principal_arn


class WorkflowInput(BaseModel):
    """What the state machine starts with: the request, as recorded (ids only; no secrets)."""

    request_id: str
    principal_arn: str
    role_name: str
    database: str
    db_user: str
    requested_minutes: int


# ------------------------------------------------------------------ approvals


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"


class ApprovalVote(BaseModel):
    """One approver's answer. ``approver`` is a company identity, established server-side."""

    approver: str
    decision: Literal["APPROVE", "DENY"]
    at: str
    via: str  # how it arrived: "slack:T0001/U0002", or the signing principal's ARN


class MessageRef(BaseModel):
    """A chat message that shows the approval (updated for everyone once it is decided)."""

    channel: str
    ts: str


class Approval(BaseModel):
    """An approval the workflow waits for. The Step Functions task token is stored beside this
    record in the approvals table and never leaves the server."""

    request_id: str
    approver_group: str
    approvals_required: int = Field(ge=1)
    requester: str  # company identity (or principal ARN): may never approve their own request
    status: ApprovalStatus = ApprovalStatus.PENDING
    votes: list[ApprovalVote] = Field(default_factory=list)
    requested_at: str
    deadline: str  # decisions are recorded only before it; undecided by then, the request ends EXPIRED
    decided_at: str | None = None
    decided_by: list[str] = Field(default_factory=list)  # the approvers (or the one denier)
    messages: list[MessageRef] = Field(default_factory=list)
    # When the decision reached the workflow: SendTaskSuccess accepted ("task_token"), or the
    # workflow acted on it when its wait timed out ("timeout"). None: decided, not delivered yet.
    delivered_at: str | None = None
    delivered_via: Literal["task_token", "timeout"] | None = None

    @property
    def decided(self) -> bool:
        return self.status in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED)

    @property
    def approvers(self) -> list[str]:
        return [vote.approver for vote in self.votes if vote.decision == "APPROVE"]


class ApprovalAnswer(BaseModel):
    """How an approval ended, as the workflow's timeout step answers it (the ASL routes on ``status``)."""

    status: ApprovalStatus
    approved: bool
    decided_by: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------ audit


class AuditEventType(StrEnum):
    REQUEST_SUBMITTED = "REQUEST_SUBMITTED"
    REQUEST_DECIDED = "REQUEST_DECIDED"
    GRANT_ISSUED = "GRANT_ISSUED"
    GRANT_REVOKED = "GRANT_REVOKED"
    GRANT_COMPENSATED = "GRANT_COMPENSATED"
    REQUEST_FAILED = "REQUEST_FAILED"
    REVOKE_FAILED = "REVOKE_FAILED"
    REMEDIATION_FINDING = "REMEDIATION_FINDING"  # drift found (reported or exempt)
    REMEDIATION_APPLIED = "REMEDIATION_APPLIED"  # drift fixed
    REMEDIATION_FAILED = "REMEDIATION_FAILED"  # a fix that did not apply
    GRANT_EXTENDED = "GRANT_EXTENDED"
    BREAK_GLASS_USED = "BREAK_GLASS_USED"
    GRANT_TAMPERED = "GRANT_TAMPERED"
    ORPHAN_REMOVED = "ORPHAN_REMOVED"
    APPROVAL_REQUESTED = "APPROVAL_REQUESTED"
    APPROVAL_VOTE = "APPROVAL_VOTE"  # one approver approved or denied
    APPROVAL_REFUSED = "APPROVAL_REFUSED"  # an approval attempt that was not counted (self, not in group, ...)
    REQUEST_EXPIRED = "REQUEST_EXPIRED"  # approvals did not come in time
    # A decision made before the deadline whose resume of the workflow never arrived, acted on
    # by the workflow when its wait timed out
    APPROVAL_APPLIED_AT_TIMEOUT = "APPROVAL_APPLIED_AT_TIMEOUT"
    AUDIT_EXPORTED = "AUDIT_EXPORTED"  # a closed day's records and stream heads written to S3
    AUDIT_VERIFY_REQUESTED = "AUDIT_VERIFY_REQUESTED"  # an asynchronous verification asked for
    AUDIT_VERIFIED = "AUDIT_VERIFIED"  # its report


class AwsRequest(BaseModel):
    """One mutating call the controller made to AWS, as CloudTrail records it.

    ``request_id`` is CloudTrail's ``requestID`` (``ResponseMetadata.RequestId``): with the service,
    region and time it finds the CloudTrail event (IAM's are in us-east-1, whatever the region).
    """

    service: str  # iam | ec2 | rds
    operation: str  # CreatePolicy, AttachRolePolicy, ...
    request_id: str
    region: str | None = None  # where CloudTrail records it (us-east-1 for IAM)
    at: str
    error: str | None = None  # the error code of a call that failed (CloudTrail records those too)


AUDIT_SCHEMA_VERSION: Literal[4] = 4


class AuditEvent(BaseModel):
    """One append-only audit record. ``schema_version`` moves when fields change meaning.

    - 1: the first schema.
    - 2: adds ``aws_requests`` (the controller's own mutating IAM/EC2/RDS calls made for this
      event; for a grant issued, extended or revoked, and a sweeper removal, an absent list now
      means "no such call was made", where in version 1 it meant "not recorded") and
      ``retain_until`` (set by the chain when retention is configured). Version 1 records stay
      readable and verifiable as they were written.
    - 3: adds ``execution_arn``: the Step Functions execution of the request the record is about
      (its workflow; named before it starts, so the submission's record has it too). Absent on
      records about no request (remediation, exports, verifications).
    - 4: adds ``requester``: who asked, named the same way across sessions and channels: the
      company identity of the person a Slack or chat-ops bot request was made for, else the IAM
      role ARN of the signer (resolved server-side, never taken from the request body). Absent on
      records about no request. Records of earlier versions keep verifying as they were written
      (the hash covers the stored item, which has no ``requester``).
    """

    schema_version: Literal[1, 2, 3, 4] = AUDIT_SCHEMA_VERSION
    event_id: str
    event_type: AuditEventType
    at: str
    subject: str  # the request (= grant) id
    actor: str  # principal ARN, or "workflow" / "sweeper"
    principal_arn: str | None = None
    database: str | None = None
    db_user: str | None = None
    outcome: str | None = None
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    aws_requests: list[AwsRequest] | None = None  # version 2
    execution_arn: str | None = None  # version 3
    requester: str | None = None  # version 4
    # Epoch seconds: DynamoDB's TTL removes the record (and its chain link) after this (version 2).
    retain_until: int | None = None
    # The hash chain (accessctl.audit): set once the record is written to its stream.
    chained_at: str | None = None  # when it was chained, on a record appended late (the outbox's replay)
    stream: str | None = None
    sequence: int | None = None
    previous_hash: str | None = None
    record_hash: str | None = None


# ------------------------------------------------------------------ API answers


class RequestView(BaseModel):
    """What ``GET /requests/{id}`` answers."""

    request_id: str
    status: RequestStatus
    principal_arn: str
    role_arn: str
    database: str
    db_user: str
    requested_minutes: int
    reason: str
    requested_at: str
    decision: Decision | None = None
    grant: Grant | None = None
    extends: str | None = None
    connection: dict[str, Any] | None = None
    failure: str | None = None

    @classmethod
    def of(cls, request: AccessRequest) -> RequestView:
        connection = None
        target = request.decision.target if request.decision else None
        if target is not None and request.status in (RequestStatus.ACTIVE, RequestStatus.EXTENDED):
            connection = {
                "host": target.host,
                "port": target.port,
                "region": target.region,
                "engine": target.engine,
                "db_user": request.db_user,
            }
        return cls(
            request_id=request.request_id,
            status=request.status,
            principal_arn=request.principal_arn,
            role_arn=request.role_arn,
            database=request.database,
            db_user=request.db_user,
            requested_minutes=request.requested_minutes,
            reason=request.reason,
            requested_at=request.requested_at,
            decision=request.decision,
            grant=request.grant,
            extends=request.extends,
            connection=connection,
            failure=request.failure,
        )


class SubmissionAnswer(BaseModel):
    request_id: str
    status: RequestStatus
    execution_arn: str | None = None


class GrantView(BaseModel):
    grant_id: str
    status: RequestStatus
    principal_arn: str
    role_name: str
    database: str
    db_user: str
    expires_at: str
    policy_arn: str
    revoked_at: str | None = None
    revoke_reason: RevokeReason | None = None


class GrantList(BaseModel):
    grants: list[GrantView]
    next_token: str | None = None


# ------------------------------------------------------------------ workflow step inputs

REQUEST_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
RequestId = Annotated[str, StringConstraints(pattern=REQUEST_ID_PATTERN)]


class StepInput(BaseModel):
    """What every workflow step receives: the request id (the record is the source of truth)."""

    model_config = ConfigDict(extra="ignore")

    request_id: RequestId


class StepError(BaseModel):
    """What a Catch puts at ResultPath: Step Functions' Error and Cause."""

    Error: str = "Unknown"
    Cause: str | None = None

    def detail(self) -> str:
        """The error in words for the request record: "<Error>: <message>" (at most 1000 characters)."""
        cause = self.Cause or ""
        try:
            # Lambda errors arrive as a JSON Cause: {"errorMessage": ..., "errorType": ...}
            parsed = json.loads(cause)
            cause = parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause
        except ValueError:
            pass
        return f"{self.Error}: {cause}"[:1000]


class RevokeInput(StepInput):
    reason: RevokeReason
    actor: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = "workflow"
    # For COMPENSATION: the error of the step that failed, recorded with the FAILED status.
    error: StepError | None = None

    def failure(self) -> str | None:
        return self.error.detail() if self.error is not None else None


NotifyEvent = Literal["GRANTED", "EXTENDED", "DENIED", "REVOKED", "FAILED", "EXPIRED", "EXPIRING"]


class NotifyInput(StepInput):
    event: NotifyEvent


class ApprovalStepInput(StepInput):
    """The approval step: the request, and the task token Step Functions waits on."""

    task_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class OutcomeInput(StepInput):
    outcome: Literal[
        "DENIED", "NEEDS_APPROVAL", "APPROVAL_DENIED", "APPROVAL_TIMED_OUT", "EXPIRED", "FAILED", "REVOKE_FAILED"
    ]
    error: StepError | None = None

    def detail(self) -> str | None:
        return self.error.detail() if self.error is not None else None
