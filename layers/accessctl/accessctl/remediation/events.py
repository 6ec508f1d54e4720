"""CloudTrail management events, as EventBridge delivers them, mapped to the resources they touched.

Only the fields used are modelled; anything else in the record is ignored. A record whose call
failed (``errorCode``) changed nothing. The table ``EVENT_MAP`` is the single list of event names
the remediator acts on; the template's EventBridge rule names the same ones (a test checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accessctl.remediation.estate import Target
from accessctl.remediation.rules import (
    DB_IAM_AUTH_DISABLED,
    DB_PUBLIC_ACCESS,
    DB_SNAPSHOT_PUBLIC,
    DB_STORAGE_UNENCRYPTED,
    DB_TLS_NOT_ENFORCED,
    IAM_STANDING_ACCESS,
    SG_OPEN_INGRESS,
)

DETAIL_TYPE = "AWS API Call via CloudTrail"


class UserIdentity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str | None = None
    arn: str | None = None
    principalId: str | None = None
    invokedBy: str | None = None

    def who(self) -> str:
        return self.arn or self.invokedBy or f"{self.type or 'unknown'}:{self.principalId or '?'}"


class CloudTrailRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    eventSource: str
    eventName: str
    eventID: str | None = None
    eventTime: str | None = None
    sourceIPAddress: str | None = None
    errorCode: str | None = None
    userIdentity: UserIdentity = Field(default_factory=UserIdentity)
    requestParameters: dict[str, Any] | None = None
    responseElements: dict[str, Any] | None = None


class CloudTrailEvent(BaseModel):
    """The EventBridge envelope of a CloudTrail record."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    detail_type: str = Field(alias="detail-type")
    source: str
    id: str | None = None
    detail: CloudTrailRecord


@dataclass(frozen=True)
class Affected:
    target: Target
    rules: frozenset[str]


DATABASE_RULES = frozenset(
    {SG_OPEN_INGRESS, DB_PUBLIC_ACCESS, DB_IAM_AUTH_DISABLED, DB_TLS_NOT_ENFORCED, DB_STORAGE_UNENCRYPTED}
)
Extractor = Callable[[dict[str, Any], dict[str, Any]], Affected | None]


def _first(params: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _security_group(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    request = params.get("ModifySecurityGroupRulesRequest")
    group = _first(request, "GroupId") if isinstance(request, dict) else _first(params, "groupId")
    if group is None:  # CloudTrail puts the group of the new rules in the response too
        items = ((response.get("securityGroupRuleSet") or {}).get("items")) or []
        group = next((i.get("groupId") for i in items if isinstance(i, dict) and i.get("groupId")), None)
    return Affected(Target(security_group_ids=frozenset({group})), frozenset({SG_OPEN_INGRESS})) if group else None


def _instance(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    identifier = _first(params, "newDBInstanceIdentifier", "dBInstanceIdentifier", "targetDBInstanceIdentifier")
    return Affected(Target(db_instances=frozenset({identifier})), DATABASE_RULES) if identifier else None


def _cluster(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    identifier = _first(params, "newDBClusterIdentifier", "dBClusterIdentifier")
    return Affected(Target(db_clusters=frozenset({identifier})), DATABASE_RULES) if identifier else None


def _proxy(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    name = _first(params, "newDBProxyName", "dBProxyName")
    return Affected(Target(db_proxies=frozenset({name})), frozenset({SG_OPEN_INGRESS})) if name else None


def _parameter_group(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    name = _first(params, "dBParameterGroupName")
    return Affected(Target(parameter_groups=frozenset({name})), frozenset({DB_TLS_NOT_ENFORCED})) if name else None


def _cluster_parameter_group(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    name = _first(params, "dBClusterParameterGroupName")
    return (
        Affected(Target(cluster_parameter_groups=frozenset({name})), frozenset({DB_TLS_NOT_ENFORCED})) if name else None
    )


def _snapshot(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    name = _first(params, "dBSnapshotIdentifier")
    return Affected(Target(snapshots=frozenset({name})), frozenset({DB_SNAPSHOT_PUBLIC})) if name else None


def _cluster_snapshot(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    name = _first(params, "dBClusterSnapshotIdentifier")
    return Affected(Target(cluster_snapshots=frozenset({name})), frozenset({DB_SNAPSHOT_PUBLIC})) if name else None


def _managed_policy(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
    arn = _first(params, "policyArn")
    return Affected(Target(managed_policies=frozenset({arn})), frozenset({IAM_STANDING_ACCESS})) if arn else None


def _inline(kind: str, name_key: str) -> Extractor:
    def extract(params: dict[str, Any], response: dict[str, Any]) -> Affected | None:
        holder, policy = _first(params, name_key), _first(params, "policyName")
        if not (holder and policy):
            return None
        return Affected(Target(inline_policies=frozenset({(kind, holder, policy)})), frozenset({IAM_STANDING_ACCESS}))

    return extract


EVENT_MAP: dict[tuple[str, str], Extractor] = {
    ("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress"): _security_group,
    ("ec2.amazonaws.com", "ModifySecurityGroupRules"): _security_group,
    ("rds.amazonaws.com", "CreateDBInstance"): _instance,
    ("rds.amazonaws.com", "ModifyDBInstance"): _instance,
    ("rds.amazonaws.com", "RestoreDBInstanceFromDBSnapshot"): _instance,
    ("rds.amazonaws.com", "RestoreDBInstanceToPointInTime"): _instance,
    ("rds.amazonaws.com", "CreateDBInstanceReadReplica"): _instance,
    ("rds.amazonaws.com", "CreateDBCluster"): _cluster,
    ("rds.amazonaws.com", "ModifyDBCluster"): _cluster,
    ("rds.amazonaws.com", "RestoreDBClusterFromSnapshot"): _cluster,
    ("rds.amazonaws.com", "RestoreDBClusterToPointInTime"): _cluster,
    ("rds.amazonaws.com", "CreateDBProxy"): _proxy,
    ("rds.amazonaws.com", "ModifyDBProxy"): _proxy,
    ("rds.amazonaws.com", "ModifyDBParameterGroup"): _parameter_group,
    ("rds.amazonaws.com", "ResetDBParameterGroup"): _parameter_group,
    ("rds.amazonaws.com", "ModifyDBClusterParameterGroup"): _cluster_parameter_group,
    ("rds.amazonaws.com", "ResetDBClusterParameterGroup"): _cluster_parameter_group,
    ("rds.amazonaws.com", "ModifyDBSnapshotAttribute"): _snapshot,
    ("rds.amazonaws.com", "ModifyDBClusterSnapshotAttribute"): _cluster_snapshot,
    ("iam.amazonaws.com", "AttachRolePolicy"): _managed_policy,
    ("iam.amazonaws.com", "AttachUserPolicy"): _managed_policy,
    ("iam.amazonaws.com", "AttachGroupPolicy"): _managed_policy,
    ("iam.amazonaws.com", "CreatePolicyVersion"): _managed_policy,
    ("iam.amazonaws.com", "SetDefaultPolicyVersion"): _managed_policy,
    ("iam.amazonaws.com", "PutRolePolicy"): _inline("role", "roleName"),
    ("iam.amazonaws.com", "PutUserPolicy"): _inline("user", "userName"),
    ("iam.amazonaws.com", "PutGroupPolicy"): _inline("group", "groupName"),
}


def event_names_by_source() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for source, name in EVENT_MAP:
        names.setdefault(source, []).append(name)
    return names


class Ignored(Exception):
    """The event is not one to act on; the message says why (it is logged, never raised further)."""


def affected_by(event: CloudTrailEvent, own_function_name: str | None = None) -> Affected:
    """The resources and rules an event calls for; raises :class:`Ignored` with the reason otherwise."""
    record = event.detail
    if event.detail_type != DETAIL_TYPE:
        raise Ignored(f"not a CloudTrail API call (detail-type {event.detail_type!r})")
    if record.errorCode:
        raise Ignored(f"{record.eventName} failed ({record.errorCode}): nothing changed")
    extractor = EVENT_MAP.get((record.eventSource, record.eventName))
    if extractor is None:
        raise Ignored(f"{record.eventSource} {record.eventName} is not an event the remediator acts on")
    identity = record.userIdentity
    if own_function_name and identity.type == "AssumedRole" and (identity.arn or "").endswith(f"/{own_function_name}"):
        raise Ignored(f"{record.eventName} was the remediator's own change")
    affected = extractor(record.requestParameters or {}, record.responseElements or {})
    if affected is None:
        raise Ignored(f"{record.eventName} names no resource the remediator can read")
    return replace(affected)
