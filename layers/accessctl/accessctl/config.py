"""Configuration, read once from the environment through a validated model."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Settings(BaseModel):
    """What every accessctl function may need; unset optional values stay ``None``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    grants_table: str
    audit_table: str
    grants_path: str = "/accessctl/grants/"
    opt_in_tag_key: str = "accessctl-grantable"
    admin_role_arns: str = ""
    max_grant_minutes: int = Field(default=720, ge=1, le=720)
    # IAM's default quota of managed policies per role; raise it here if the account's is raised.
    role_policy_quota: int = Field(default=10, ge=1, le=20)

    idempotency_table: str | None = None
    state_machine_arn: str | None = None
    revoke_function_name: str | None = None
    notify_topic_arn: str | None = None
    policies_dir: str = "policies"
    # The Object Lock bucket of the daily audit export (AuditExport=true); unset: no export, no anchors.
    audit_export_bucket: str | None = None
    # The function that runs asynchronous audit verifications (POST /audit/verifications).
    verify_function_name: str | None = None

    @field_validator("audit_export_bucket", mode="before")
    @classmethod
    def _no_bucket_is_unset(cls, value: str | None) -> str | None:
        return value or None

    # The company IdP (OIDC): unset means no ID tokens are accepted (human-only rules then fail closed).
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_uri: str | None = None
    oidc_groups_claim: str = "groups"

    # Device posture pushed by the MDM/EDR webhook (unset: device rules fail closed).
    posture_table: str | None = None
    posture_webhook_secret_name: str | None = None
    posture_max_age_hours: int = Field(default=24, ge=1, le=24 * 30)

    # Approvals: the table holding pending approvals and their task tokens; the default timeout
    # when a rule names none (@approval_timeout_minutes).
    approvals_table: str | None = None
    approval_timeout_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    # The holder is warned this many minutes before a grant expires (0: no warning).
    expiry_warning_minutes: int = Field(default=5, ge=0, le=60)

    # Chat-ops. Slack: one secret (JSON with signing_secret and bot_token), the one workspace and
    # app accepted, the channel per approver group ("db-owners=C0123,dba=C0456"), and whether the
    # workspace enforces two-factor sign-in for every member (then a Slack request carries mfa=true).
    slack_secret_name: str | None = None
    slack_team_id: str | None = None
    slack_app_id: str | None = None
    slack_api_url: str | None = None  # the Slack Web API base URL (default https://slack.com/api/)
    slack_approval_channels: str = ""
    slack_workspace_enforces_mfa: bool = False
    slack_worker_function_name: str | None = None
    # Where Slack's response_url callbacks may point (the local fake Slack sets its own address).
    slack_response_url_prefix: str = "https://hooks.slack.com/"
    # The people directory (an SSM parameter holding JSON: identity -> role and groups) that maps a
    # verified company identity to the role that receives its grants and the groups it belongs to.
    people_directory_parameter: str | None = None
    # Chat-ops bots (Hubot, Errbot, Teams bots) allowed to ask on behalf of a named person.
    chatops_bot_role_arns: str = ""
    # Microsoft Teams: a secret holding the incoming-webhook URL (unset: no Teams notifications).
    teams_webhook_secret_name: str | None = None

    @field_validator(
        "oidc_issuer",
        "oidc_audience",
        "oidc_jwks_uri",
        "posture_table",
        "approvals_table",
        "slack_secret_name",
        "slack_team_id",
        "slack_app_id",
        "slack_api_url",
        "slack_worker_function_name",
        "people_directory_parameter",
        "teams_webhook_secret_name",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("grants_path")
    @classmethod
    def _grants_path_is_an_iam_path(cls, value: str) -> str:
        if not (value.startswith("/") and value.endswith("/") and len(value) > 2):
            raise ValueError("grants_path must look like /accessctl/grants/")
        return value

    @property
    def admins(self) -> frozenset[str]:
        return _comma_separated(self.admin_role_arns)

    @property
    def chatops_bots(self) -> frozenset[str]:
        return _comma_separated(self.chatops_bot_role_arns)

    @property
    def approval_channels(self) -> dict[str, str]:
        """Approver group -> Slack channel id, from ``group=channel`` pairs."""
        pairs = (item.split("=", 1) for item in self.slack_approval_channels.split(",") if "=" in item)
        return {group.strip(): channel.strip() for group, channel in pairs if group.strip() and channel.strip()}


def _comma_separated(value: str) -> frozenset[str]:
    """A template CommaDelimitedList, joined with "," into one variable (empty items dropped)."""
    return frozenset(item.strip() for item in value.split(",") if item.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, validated on first use (a bad deployment fails at cold start)."""
    return Settings.model_validate({name.lower(): value for name, value in os.environ.items()})
