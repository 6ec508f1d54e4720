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

    @field_validator("oidc_issuer", "oidc_audience", "oidc_jwks_uri", "posture_table", mode="before")
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
        return frozenset(arn.strip() for arn in self.admin_role_arns.split(",") if arn.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, validated on first use (a bad deployment fails at cold start)."""
    return Settings.model_validate({name.lower(): value for name, value in os.environ.items()})
