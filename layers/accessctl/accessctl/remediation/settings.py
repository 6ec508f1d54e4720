"""The remediator's configuration, read once from the environment through a validated model.

Kept apart from :mod:`accessctl.config` (which every function shares): only the drift remediator
reads these, all prefixed ``REMEDIATION_`` except the stack-wide ``AUDIT_TABLE``,
``NOTIFY_TOPIC_ARN`` and ``GRANTS_PATH``, and ``AUDIT_OUTBOX_URL``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Private ranges (RFC 1918, RFC 6598 shared address space, IPv6 unique local): where a VPC's own
# clients come from. Anything else reaching a database port is outside the allow-list.
DEFAULT_ALLOWED_CIDRS = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"


def parse_cidrs(text: str) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


class Mode(StrEnum):
    REPORT = "report"  # find, audit, notify; change nothing (the default for a new install)
    ENFORCE = "enforce"  # also apply the rule's fix, when it has one
    OFF = "off"  # do not evaluate the rule at all


class RemediationSettings(BaseModel):
    """What the remediator needs. Field names are the environment variable names, lower-cased."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    audit_table: str
    # The audit outbox queue: records whose write failed after their fix go there (accessctl.audit_outbox).
    audit_outbox_url: str | None = None
    notify_topic_arn: str | None = None
    grants_path: str = "/accessctl/grants/"

    remediation_mode: Mode = Mode.REPORT
    # Per-rule overrides as JSON: {"sg-open-ingress": "enforce", "db-storage-unencrypted": "off"}.
    remediation_rule_modes: dict[str, Mode] = Field(default_factory=dict)
    # Which databases are protected: those carrying the tag (key, or key=value), or all of them.
    remediation_scope: Literal["tagged", "all"] = "tagged"
    remediation_protected_tag: str = "accessctl:protected=true"
    remediation_allowed_cidrs: tuple[IpNetwork, ...] = Field(default_factory=lambda: parse_cidrs(DEFAULT_ALLOWED_CIDRS))
    remediation_exemption_tag: str = "accessctl:exempt"
    # Standing access is only ever detached when this says so AND the rule's mode is enforce:
    # the template grants the detach permissions under the same switch.
    remediation_standing_access_fix: Literal["report", "detach"] = "report"
    remediation_fix_concurrency: int = Field(default=8, ge=1, le=64)
    remediation_max_attempts: int = Field(default=4, ge=1, le=10)
    remediation_notify_batch: int = Field(default=50, ge=1, le=200)
    # How long a warm process keeps the database list for mapping events (groups -> databases).
    remediation_index_ttl_seconds: float = Field(default=300, ge=0)
    remediation_index_min_refresh_seconds: float = Field(default=0, ge=0)
    # The group index (group -> databases using it) in DynamoDB; unset: events list the databases.
    remediation_index_table: str | None = None
    # Entries older than this are not used (twice the default scan interval: one missed scan is fine).
    remediation_index_max_age_seconds: float = Field(default=1800, gt=0)
    # Set by Lambda: events caused by this function's own calls are not re-evaluated.
    aws_lambda_function_name: str | None = None

    @field_validator("remediation_rule_modes", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
            if not isinstance(value, dict):
                raise ValueError("REMEDIATION_RULE_MODES must be a JSON object of rule id -> mode")
        return value

    @field_validator("remediation_allowed_cidrs", mode="before")
    @classmethod
    def _cidr_list(cls, value: Any) -> Any:
        return (
            parse_cidrs(value)
            if isinstance(value, str)
            else tuple(ipaddress.ip_network(str(c), strict=False) for c in value)
        )

    @property
    def protected_tag(self) -> tuple[str, str | None]:
        key, sep, value = self.remediation_protected_tag.partition("=")
        return key.strip(), (value.strip() if sep else None)

    def mode_for(self, rule_id: str) -> Mode:
        return self.remediation_rule_modes.get(rule_id, self.remediation_mode)

    def is_protected(self, tags: dict[str, str]) -> bool:
        if self.remediation_scope == "all":
            return True
        key, value = self.protected_tag
        return key in tags and (value is None or tags[key].strip().lower() == value.lower())


@lru_cache(maxsize=1)
def get_remediation_settings() -> RemediationSettings:
    """This process's settings, validated on first use (a bad deployment fails at cold start)."""
    return RemediationSettings.model_validate({name.lower(): value for name, value in os.environ.items()})
