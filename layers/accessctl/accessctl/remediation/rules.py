"""The rule table: one entry per rule, each with an id, a severity, what it checks, whether it
fixes automatically, and how. Rules are pure: they read an :class:`Estate` and return findings.

Both paths share it: the scheduled scan evaluates every enabled rule over the whole estate, an
event evaluates the rules its event family names over the resources the event touched.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from accessctl.remediation.estate import Aspect, Database, Estate, IamPolicy, ParameterGroup
from accessctl.remediation.models import Finding, Fix, ResourceKind, ResourceRef, Severity
from accessctl.remediation.network import offending_ranges
from accessctl.remediation.settings import RemediationSettings

SG_OPEN_INGRESS = "sg-open-ingress"
DB_PUBLIC_ACCESS = "db-public-access"
DB_IAM_AUTH_DISABLED = "db-iam-auth-disabled"
DB_TLS_NOT_ENFORCED = "db-tls-not-enforced"
DB_STORAGE_UNENCRYPTED = "db-storage-unencrypted"
DB_SNAPSHOT_PUBLIC = "db-snapshot-public"
IAM_STANDING_ACCESS = "iam-standing-access"

Evaluate = Callable[[Estate, RemediationSettings], Iterator[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    description: str
    auto_fix: bool
    fix: str
    needs: frozenset[Aspect]
    evaluate: Evaluate


# ------------------------------------------------------------------ network


def _open_ingress(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    for group in estate.security_groups.values():
        databases = estate.databases_using(group.group_id)
        ports = {db.port for db in databases if db.port}
        for offending in offending_ranges(group.permissions, ports, settings.remediation_allowed_cidrs):
            reached = [db.name for db in databases if db.port in offending.ports]
            yield Finding(
                rule_id=SG_OPEN_INGRESS,
                severity=Severity.CRITICAL if offending.from_world else Severity.HIGH,
                resource=ResourceRef(kind=ResourceKind.SECURITY_GROUP, id=group.group_id),
                summary=(
                    f"{group.group_id} ({group.name}) allows {offending.port_label()} from {offending.cidr}, "
                    f"reaching port {', '.join(map(str, offending.ports))} of {', '.join(reached)}"
                ),
                databases=reached,
                before={"permission": offending.permission},
                after={"permission": offending.permission_after()},
                fix=Fix(
                    action="revoke-ingress",
                    parameters={"GroupId": group.group_id, "IpPermissions": [offending.revoke_permission()]},
                    description=f"revoke {offending.port_label()} from {offending.cidr} on {group.group_id} (only that range)",
                ),
                exemption_tags=[group.tags],
            )


# ------------------------------------------------------------------ database settings


def _database_ref(db: Database) -> ResourceRef:
    kind = ResourceKind.DB_CLUSTER if db.kind == "cluster" else ResourceKind.DB_INSTANCE
    return ResourceRef(kind=kind, id=db.identifier, arn=db.arn or None)


def _exemption_tags(db: Database, estate: Estate) -> list[dict[str, str]]:
    """A database's own tags; an Aurora member is also exempt through its cluster."""
    if db.cluster_id:
        cluster = next((c for c in estate.databases if c.kind == "cluster" and c.identifier == db.cluster_id), None)
        if cluster is not None:
            return [{**cluster.tags, **db.tags}]
    return [db.tags]


def _public_access(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    for db in estate.databases:
        if db.kind == "proxy" or not db.publicly_accessible:
            continue
        if db.kind == "cluster" and db.engine.startswith("aurora"):
            continue  # Aurora: public access is per member instance
        yield Finding(
            rule_id=DB_PUBLIC_ACCESS,
            severity=Severity.HIGH,
            resource=_database_ref(db),
            summary=f"{db.name} is publicly accessible",
            databases=[db.name],
            before={"PubliclyAccessible": True},
            after={"PubliclyAccessible": False},
            fix=Fix(
                action="disable-public-access",
                parameters={"kind": db.kind, "identifier": db.identifier},
                description=f"set PubliclyAccessible=false on {db.name} (applied immediately)",
            ),
            exemption_tags=_exemption_tags(db, estate),
        )


IAM_AUTH_ENGINES = ("postgres", "mysql", "mariadb", "aurora-postgresql", "aurora-mysql", "aurora")


def _iam_auth(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    for db in estate.databases:
        if db.kind == "proxy" or db.cluster_id or db.iam_auth is not False:
            continue  # Aurora members follow their cluster
        if not db.engine.startswith(IAM_AUTH_ENGINES):
            continue
        yield Finding(
            rule_id=DB_IAM_AUTH_DISABLED,
            severity=Severity.HIGH,
            resource=_database_ref(db),
            summary=f"{db.name} has IAM database authentication disabled (accessctl grants cannot apply; passwords can)",
            databases=[db.name],
            before={"IAMDatabaseAuthenticationEnabled": False},
            after={"IAMDatabaseAuthenticationEnabled": True},
            fix=Fix(
                action="enable-iam-auth",
                parameters={"kind": db.kind, "identifier": db.identifier},
                description=f"enable IAM database authentication on {db.name} (applied immediately)",
            ),
            exemption_tags=_exemption_tags(db, estate),
        )


def tls_parameter(engine: str) -> str | None:
    """The parameter that makes the engine refuse unencrypted connections, if it has one."""
    if engine.startswith(("postgres", "aurora-postgresql", "sqlserver")):
        return "rds.force_ssl"
    if engine.startswith(("mysql", "mariadb", "aurora-mysql", "aurora")):
        return "require_secure_transport"
    return None


def _enforced(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "on", "true")


def _engine_default_enforces(db: Database) -> bool:
    # RDS for PostgreSQL 15 and later ship rds.force_ssl=1 in their default parameter groups.
    major = db.engine_version.split(".")[0]
    return db.engine == "postgres" and major.isdigit() and int(major) >= 15


def _tls(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    for group in estate.parameter_groups:
        databases = estate.databases_with_parameter_group(group)
        engines = {db.engine for db in databases if tls_parameter(db.engine)}
        if not engines:
            continue
        parameter = tls_parameter(sorted(engines)[0])
        assert parameter is not None
        current = group.parameters.get(parameter, {})
        value = current.get("ParameterValue")
        if value is not None and _enforced(value):
            continue
        if value is None and all(_engine_default_enforces(db) for db in databases):
            continue
        yield _tls_finding(group, databases, parameter, value, current)


def _tls_finding(
    group: ParameterGroup, databases: list[Database], parameter: str, value: Any, current: dict[str, Any]
) -> Finding:
    kind = ResourceKind.DB_CLUSTER_PARAMETER_GROUP if group.kind == "cluster" else ResourceKind.DB_PARAMETER_GROUP
    names = [db.name for db in databases]
    fix = None
    if group.is_default:
        summary = (
            f"{', '.join(names)} use the default parameter group {group.name}, where {parameter} is off; it cannot "
            f"be changed: attach a custom parameter group with {parameter}=1 (attaching one needs a reboot)"
        )
    else:
        static = str(current.get("ApplyType", "dynamic")).lower() == "static"
        summary = f"{parameter} is {value if value is not None else 'unset (engine default: off)'} in {group.name}, used by {', '.join(names)}"
        fix = Fix(
            action="enforce-tls",
            parameters={
                "kind": group.kind,
                "name": group.name,
                "parameter": parameter,
                "value": "1",
                "apply_method": "pending-reboot" if static else "immediate",
            },
            description=f"set {parameter}=1 in {group.name}" + (" (takes effect at the next reboot)" if static else ""),
            needs_reboot=static,
        )
    return Finding(
        rule_id=DB_TLS_NOT_ENFORCED,
        severity=Severity.HIGH,
        resource=ResourceRef(kind=kind, id=group.name),
        summary=summary,
        databases=names,
        before={parameter: value},
        after={parameter: "1"} if fix else {},
        fix=fix,
        exemption_tags=[db.tags for db in databases],
    )


def _storage(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    for db in estate.databases:
        if db.kind == "proxy" or db.cluster_id or db.storage_encrypted is not False:
            continue
        yield Finding(
            rule_id=DB_STORAGE_UNENCRYPTED,
            severity=Severity.MEDIUM,
            resource=_database_ref(db),
            summary=(
                f"{db.name} stores data unencrypted; encryption cannot be switched on in place "
                "(snapshot, copy with a KMS key, restore, cut over)"
            ),
            databases=[db.name],
            before={"StorageEncrypted": False},
            exemption_tags=_exemption_tags(db, estate),
        )


def _snapshot_public(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    for snapshot in estate.snapshots:
        if "all" not in snapshot.restorable_by:
            continue
        kind = ResourceKind.DB_CLUSTER_SNAPSHOT if snapshot.kind == "cluster" else ResourceKind.DB_SNAPSHOT
        owner = next((db for db in estate.databases if db.identifier == snapshot.database_id), None)
        yield Finding(
            rule_id=DB_SNAPSHOT_PUBLIC,
            severity=Severity.CRITICAL,
            resource=ResourceRef(kind=kind, id=snapshot.identifier, arn=snapshot.arn or None),
            summary=f"manual snapshot {snapshot.identifier} of {snapshot.database_id} can be restored by any AWS account",
            databases=[owner.name] if owner else [],
            before={"restore": list(snapshot.restorable_by)},
            after={"restore": [v for v in snapshot.restorable_by if v != "all"]},
            fix=Fix(
                action="make-snapshot-private",
                parameters={"kind": snapshot.kind, "identifier": snapshot.identifier},
                description=f"remove 'all' from the restore attribute of {snapshot.identifier} (shares with named accounts stay)",
            ),
            exemption_tags=[{**(owner.tags if owner else {}), **snapshot.tags}],
        )


# ------------------------------------------------------------------ IAM


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _allows_connect(statement: dict[str, Any]) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase("rds-db:connect", str(a).lower()) for a in _as_list(statement["NotAction"]))
    return any(fnmatch.fnmatchcase("rds-db:connect", str(a).lower()) for a in _as_list(statement.get("Action")))


_EXPIRY_OPERATORS = ("datelessthan", "datelessthanequals", "numericlessthan", "numericlessthanequals")
_EXPIRY_KEYS = ("aws:currenttime", "aws:epochtime")


def has_expiry(statement: dict[str, Any]) -> bool:
    for operator, conditions in (statement.get("Condition") or {}).items():
        if operator.lower().removesuffix("ifexists") not in _EXPIRY_OPERATORS or operator.lower().endswith("ifexists"):
            continue
        if isinstance(conditions, dict) and any(key.lower() in _EXPIRY_KEYS for key in conditions):
            return True
    return False


def _reached(resources: list[str], protected: dict[str, str]) -> tuple[list[str], bool]:
    """(protected databases reached, whether the database part of a resource is a wildcard)."""
    reached: set[str] = set()
    wildcard = False
    for resource in resources:
        if resource == "*":
            return sorted(protected.values()), True
        parts = resource.split(":", 5)
        if len(parts) < 6 or not fnmatch.fnmatchcase("rds-db", parts[2]):
            continue
        database_part = parts[5].partition("/")[0]  # "dbuser:db-ABC", "dbuser:*", "*"
        wildcard = wildcard or "*" in database_part or "?" in database_part
        reached.update(name for rid, name in protected.items() if fnmatch.fnmatchcase(f"dbuser:{rid}", database_part))
    return sorted(reached), wildcard


def _standing_access(estate: Estate, settings: RemediationSettings) -> Iterator[Finding]:
    protected = {db.resource_id: db.name for db in estate.databases if db.resource_id}
    for policy in estate.policies:
        if policy.path.startswith(settings.grants_path):
            continue
        finding = _standing_access_finding(policy, protected, settings)
        if finding is not None:
            yield finding


def _standing_access_finding(
    policy: IamPolicy, protected: dict[str, str], settings: RemediationSettings
) -> Finding | None:
    offending: list[dict[str, Any]] = []
    reached: set[str] = set()
    wildcard = False
    for statement in _as_list(policy.document.get("Statement")):
        if not isinstance(statement, dict) or not _allows_connect(statement) or has_expiry(statement):
            continue
        resources = ["*"] if "NotResource" in statement else [str(r) for r in _as_list(statement.get("Resource"))]
        names, wild = _reached(resources, protected)
        if names or wild:
            offending.append(statement)
            reached.update(names)
            wildcard = wildcard or wild
    if not offending:
        return None
    holders = ", ".join(f"{h.kind}/{h.name}" for h in policy.holders)
    what = "any database (wildcard)" if wildcard else ", ".join(sorted(reached))
    if policy.kind == "managed":
        ref = ResourceRef(kind=ResourceKind.IAM_POLICY, id=policy.id, arn=policy.id)
        fix = Fix(
            action="detach-policy",
            parameters={"policy_arn": policy.id, "holders": [[h.kind, h.name] for h in policy.holders]},
            description=f"detach {policy.name} from {holders}",
        )
    else:
        holder = policy.holders[0]
        ref = ResourceRef(kind=ResourceKind.IAM_INLINE_POLICY, id=policy.id)
        fix = Fix(
            action="delete-inline-policy",
            parameters={"holder_kind": holder.kind, "holder_name": holder.name, "policy_name": policy.name},
            description=f"delete inline policy {policy.name} of {holder.kind}/{holder.name}",
        )
    return Finding(
        rule_id=IAM_STANDING_ACCESS,
        severity=Severity.HIGH,
        resource=ref,
        summary=f"{policy.kind} policy {policy.name} (held by {holders}) allows rds-db:connect on {what} with no expiry: standing access",
        databases=sorted(reached),
        before={"statements": offending},
        after={"attached": False} if policy.kind == "managed" else {"deleted": True},
        fix=fix,
        exemption_tags=[h.tags for h in policy.holders],
    )


# ------------------------------------------------------------------ the table

_DB = frozenset({Aspect.DATABASES})
RULES: tuple[Rule, ...] = (
    Rule(
        SG_OPEN_INGRESS,
        Severity.CRITICAL,
        "Ingress from 0.0.0.0/0, ::/0 or any CIDR outside the allow-list reaches a protected database's port "
        "(port ranges and all-traffic rules included).",
        True,
        "Revoke exactly the offending range of exactly that permission; every other rule and range stays.",
        frozenset({Aspect.DATABASES, Aspect.NETWORK}),
        _open_ingress,
    ),
    Rule(
        DB_PUBLIC_ACCESS,
        Severity.HIGH,
        "A protected DB instance (or Multi-AZ DB cluster) is publicly accessible.",
        True,
        "ModifyDBInstance/ModifyDBCluster PubliclyAccessible=false, applied immediately.",
        _DB,
        _public_access,
    ),
    Rule(
        DB_IAM_AUTH_DISABLED,
        Severity.HIGH,
        "IAM database authentication is disabled on a protected database.",
        True,
        "ModifyDBInstance/ModifyDBCluster EnableIAMDatabaseAuthentication=true, applied immediately.",
        _DB,
        _iam_auth,
    ),
    Rule(
        DB_TLS_NOT_ENFORCED,
        Severity.HIGH,
        "TLS is not enforced: rds.force_ssl / require_secure_transport is off in the parameter group.",
        True,
        "Set the parameter to 1 (immediate when dynamic, else at the next reboot, said so). A default parameter "
        "group cannot be changed: reported, with the remedy.",
        frozenset({Aspect.DATABASES, Aspect.PARAMETERS}),
        _tls,
    ),
    Rule(
        DB_STORAGE_UNENCRYPTED,
        Severity.MEDIUM,
        "A protected database's storage is not encrypted.",
        False,
        "Report only: encryption needs a snapshot copy and a restore.",
        _DB,
        _storage,
    ),
    Rule(
        DB_SNAPSHOT_PUBLIC,
        Severity.CRITICAL,
        "A manual snapshot of a protected database is shared publicly.",
        True,
        "ModifyDBSnapshotAttribute restore ValuesToRemove=[all]; sharing with named accounts stays.",
        frozenset({Aspect.DATABASES, Aspect.SNAPSHOTS}),
        _snapshot_public,
    ),
    Rule(
        IAM_STANDING_ACCESS,
        Severity.HIGH,
        "A policy outside the grants path allows rds-db:connect on a wildcard or a protected database without "
        "an aws:CurrentTime/aws:EpochTime expiry condition.",
        True,
        "Report; detach the managed policy (or delete the inline one) only when RemediationStandingAccessFix=detach "
        "and the rule is in enforce mode.",
        frozenset({Aspect.DATABASES, Aspect.IAM}),
        _standing_access,
    ),
)
RULES_BY_ID = {rule.id: rule for rule in RULES}
