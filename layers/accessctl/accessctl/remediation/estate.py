"""Reading the estate: protected databases, the security groups attached to them, their parameter
groups, snapshots and IAM policies, as plain frozen records for the rules to judge.

Every list call is paginated (moto returns one page; AWS does not). A full scan reads every
aspect the selected rules need; an event reads only the resources the event names (plus the
databases using a group, where the mapping needs it: RDS cannot be asked "who uses this security
group", so the group index names them, see group_index.py, or else the database list is read).
A read that fails is recorded in ``Estate.errors`` and the rest of the read goes on.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from botocore.exceptions import ClientError

from accessctl.aws import call, error_code, transient_errors_surface
from accessctl.observability import logger
from accessctl.remediation.group_index import GroupIndex
from accessctl.remediation.settings import RemediationSettings

# Default ports when RDS does not say (proxies name an engine family, not a port).
PROXY_PORTS = {"POSTGRESQL": 5432, "MYSQL": 3306, "SQLSERVER": 1433}
_SG_FILTER_LIMIT = 200  # values per EC2 filter
_RDS_FILTER_LIMIT = 100  # identifiers per RDS filter, and the most databases the group index is used for


class Aspect(StrEnum):
    DATABASES = "databases"
    NETWORK = "network"
    PARAMETERS = "parameters"
    SNAPSHOTS = "snapshots"
    IAM = "iam"


@dataclass(frozen=True)
class Database:
    kind: Literal["instance", "cluster", "proxy"]
    identifier: str
    arn: str
    engine: str
    port: int | None
    security_group_ids: tuple[str, ...]
    tags: dict[str, str]
    engine_version: str = ""
    publicly_accessible: bool | None = None
    iam_auth: bool | None = None
    storage_encrypted: bool | None = None
    parameter_group: str | None = None  # instance parameter group, or the cluster's cluster parameter group
    cluster_id: str | None = None  # set on an instance that is a member of a cluster
    resource_id: str | None = None  # DbiResourceId / DbClusterResourceId (what rds-db:connect ARNs name)

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.identifier}"


@dataclass(frozen=True)
class SecurityGroup:
    group_id: str
    name: str
    vpc_id: str | None
    tags: dict[str, str]
    permissions: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ParameterGroup:
    name: str
    kind: Literal["instance", "cluster"]
    parameters: dict[str, dict[str, Any]]  # name -> {"ParameterValue", "ApplyType", ...} (user-set only)
    is_default: bool


@dataclass(frozen=True)
class Snapshot:
    identifier: str
    kind: Literal["instance", "cluster"]
    arn: str
    database_id: str | None
    restorable_by: tuple[str, ...]  # the "restore" attribute: account ids, or "all" when public
    tags: dict[str, str]


@dataclass(frozen=True)
class Holder:
    """An IAM role, user or group that holds a policy."""

    kind: Literal["role", "user", "group"]
    name: str
    tags: dict[str, str]


@dataclass(frozen=True)
class IamPolicy:
    kind: Literal["managed", "inline"]
    id: str  # managed: ARN; inline: "role/NAME/POLICY"
    name: str
    path: str
    document: dict[str, Any]
    holders: tuple[Holder, ...]


@dataclass(frozen=True)
class Target:
    """What one event touched. A full scan has no target."""

    security_group_ids: frozenset[str] = frozenset()
    db_instances: frozenset[str] = frozenset()
    db_clusters: frozenset[str] = frozenset()
    db_proxies: frozenset[str] = frozenset()
    parameter_groups: frozenset[str] = frozenset()
    cluster_parameter_groups: frozenset[str] = frozenset()
    snapshots: frozenset[str] = frozenset()
    cluster_snapshots: frozenset[str] = frozenset()
    managed_policies: frozenset[str] = frozenset()
    inline_policies: frozenset[tuple[str, str, str]] = frozenset()  # (role|user|group, entity name, policy name)

    @property
    def names_databases(self) -> bool:
        return bool(self.db_instances or self.db_clusters or self.db_proxies)


@dataclass
class Estate:
    databases: list[Database] = field(default_factory=list)  # protected ones only
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    parameter_groups: list[ParameterGroup] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    policies: list[IamPolicy] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Every database, protected or not, when this read listed them all: the group index is rewritten
    # from it once the other reads are done.
    listed: list[Database] | None = field(default=None, repr=False, compare=False)
    _using: tuple[tuple[int, int], dict[str, list[Database]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def databases_using(self, group_id: str) -> list[Database]:
        """In the list's order; from a map of group -> databases built once per list (a scan asks for
        every group: one pass over the databases, not one per group)."""
        stamp = (id(self.databases), len(self.databases))
        if self._using is None or self._using[0] != stamp:
            using: dict[str, list[Database]] = {}
            for db in self.databases:
                for group in dict.fromkeys(db.security_group_ids):
                    using.setdefault(group, []).append(db)
            self._using = (stamp, using)
        return list(self._using[1].get(group_id, ()))

    def databases_with_parameter_group(self, group: ParameterGroup) -> list[Database]:
        wanted = "cluster" if group.kind == "cluster" else "instance"
        return [db for db in self.databases if db.kind == wanted and db.parameter_group == group.name]

    def examined(self) -> dict[str, int]:
        return {
            "databases": len(self.databases),
            "security_groups": len(self.security_groups),
            "parameter_groups": len(self.parameter_groups),
            "snapshots": len(self.snapshots),
            "policies": len(self.policies),
        }


def _knows(databases: list[Database], target: Target) -> bool:
    if target.security_group_ids:
        return any(group in db.security_group_ids for db in databases for group in target.security_group_ids)
    if target.parameter_groups or target.cluster_parameter_groups:
        names = target.parameter_groups | target.cluster_parameter_groups
        return any(db.parameter_group in names for db in databases)
    return False  # snapshots, policies: which database they concern is known only after reading them


def tag_map(tags: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tags or []}


def paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated list call (throttling after botocore's retries: TransientError)."""
    paginator = client.get_paginator(operation)
    with transient_errors_surface():
        for page in paginator.paginate(**kwargs):
            yield from page.get(result_key, [])


_NOT_FOUND = frozenset(
    {
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBClusterNotFoundFault",
        "DBClusterNotFound",
        "DBProxyNotFoundFault",
        "DBProxyNotFound",
        "DBSnapshotNotFound",
        "DBSnapshotNotFoundFault",
        "DBClusterSnapshotNotFoundFault",
        "DBParameterGroupNotFound",
        "DBParameterGroupNotFoundFault",
        "DBClusterParameterGroupNotFound",
        "DBClusterParameterGroupNotFoundFault",
        "NoSuchEntity",
        "InvalidGroup.NotFound",
    }
)


class EstateReader:
    """Reads what the rules need, from the clients it is given (tests pass emulated ones)."""

    def __init__(
        self,
        settings: RemediationSettings,
        *,
        ec2: Any,
        rds: Any,
        iam: Any,
        group_index: GroupIndex | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._group_index = group_index
        self._ec2 = ec2
        self._rds = rds
        self._iam = iam
        self._clock = clock
        # The database list, kept by a warm process for events that must map a resource to the
        # databases using it (RDS cannot be asked "who uses this group"): see _databases_for_event.
        self._index: tuple[float, list[Database]] | None = None
        self._index_lock = threading.Lock()

    def read(self, aspects: frozenset[Aspect], target: Target | None = None) -> Estate:
        estate = Estate()
        if not aspects:
            return estate
        self._guard(estate, "databases", self._read_databases, estate, target)
        if Aspect.NETWORK in aspects:
            self._guard(estate, "security groups", self._read_security_groups, estate, target)
        if Aspect.PARAMETERS in aspects:
            self._read_parameter_groups(estate, target)
        if Aspect.SNAPSHOTS in aspects:
            self._read_snapshots(estate, target)
        if Aspect.IAM in aspects:
            self._guard(estate, "iam policies", self._read_policies, estate, target)
        self._write_group_index(estate)
        return estate

    @staticmethod
    def _guard(estate: Estate, what: str, read: Callable[..., None], *args: Any) -> None:
        """One failed read is recorded and the others go on."""
        try:
            read(*args)
        except Exception as error:
            logger.warning("remediation read failed", extra={"what": what, "error": str(error)})
            estate.errors.append(f"reading {what}: {type(error).__name__}: {error}")

    # ---------------------------------------------------------------- databases

    def _read_databases(self, estate: Estate, target: Target | None) -> None:
        """Protected databases. Events about one database read just it; everything else reads the list."""
        if target is None:
            found = self._list_databases(estate)
        elif target.names_databases:
            found = self._named_databases(target)
            self._index = None  # a database changed: the next mapping re-reads the list
            # Indexed before its groups are judged: an event about one of them that reads the index
            # after this write is judged with this database; one that read it before happened
            # before these groups are read below, so what it opened is seen here.
            self._index_uses(estate, found)
        else:
            found = self._databases_for_event(target, estate)
        protected_clusters = {db.identifier for db in found if db.kind == "cluster" and self._protected(db)}
        estate.databases = [
            db
            for db in found
            if self._protected(db) or (db.cluster_id is not None and db.cluster_id in protected_clusters)
        ]

    def _list_databases(self, estate: Estate) -> list[Database]:
        found = [*self._instances(), *self._clusters(), *self._proxies()]
        with self._index_lock:
            self._index = (self._clock(), found)
        estate.listed = found
        return found

    def _write_group_index(self, estate: Estate) -> None:
        """After the reads, not between them: the index's table client (and its model) is made once the
        security groups are read and their page is released, and the index is still written before
        any fix or audit record."""
        if self._group_index is None or estate.listed is None:
            return
        found, estate.listed = estate.listed, None
        try:
            self._group_index.replace_all((group, db.name) for db in found for group in db.security_group_ids)
        except Exception as error:  # the index only saves reads: events fall back to the list
            logger.warning("group index not written", extra={"error": str(error)})
            estate.errors.append(f"writing the group index: {type(error).__name__}: {error}")

    def _index_uses(self, estate: Estate, found: list[Database]) -> None:
        if self._group_index is None:
            return
        uses = [(group, db.name) for db in found for group in db.security_group_ids]
        if not uses:
            return
        try:
            self._group_index.add(uses)
        except Exception as error:
            logger.warning("group index not updated", extra={"error": str(error)})
            estate.errors.append(f"updating the group index: {type(error).__name__}: {error}")

    def _databases_for_event(self, target: Target, estate: Estate) -> list[Database]:
        """The kept list while it is younger than the TTL and knows the event's resource; else the
        databases the group index names, read by identifier; else a fresh list.

        A resource the kept list does not know (a group just attached, say) refreshes it, at most once
        per ``remediation_index_min_refresh_seconds``; database events drop it (they change it), and
        the scheduled scan replaces it.
        """
        with self._index_lock:
            index = self._index
        now = self._clock()
        if index is not None:
            age = now - index[0]
            if age < self._settings.remediation_index_ttl_seconds and (
                _knows(index[1], target) or age < self._settings.remediation_index_min_refresh_seconds
            ):
                return index[1]
        if target.security_group_ids and self._group_index is not None:
            indexed = self._databases_from_group_index(target)
            if indexed is not None:
                return indexed
        return self._list_databases(estate)

    def _databases_from_group_index(self, target: Target) -> list[Database] | None:
        """The databases the index names for the event's groups, as they are now; None (list them
        all) when the index cannot say, names too many, or is stale: a group none of them uses now."""
        assert self._group_index is not None
        names: set[str] = set()
        try:
            for group in sorted(target.security_group_ids):
                named = self._group_index.lookup(group)
                if named is None:
                    return None
                names |= named
        except Exception as error:
            logger.warning("group index not read", extra={"error": str(error)})
            return None
        if len(names) > _RDS_FILTER_LIMIT:
            return None
        found = self._databases_named(names)
        if not all(any(group in db.security_group_ids for db in found) for group in target.security_group_ids):
            logger.info("group index stale: listing databases", extra={"groups": sorted(target.security_group_ids)})
            return None
        return found

    def _databases_named(self, names: set[str]) -> list[Database]:
        """Databases by ``kind/identifier``: one filtered call per kind (proxies: one each), and the
        cluster of any Aurora member (it is protected through it)."""
        wanted: dict[str, list[str]] = {"instance": [], "cluster": [], "proxy": []}
        for name in sorted(names):
            kind, _, identifier = name.partition("/")
            if kind in wanted and identifier:
                wanted[kind].append(identifier)
        found: list[Database] = []
        if wanted["instance"]:
            found += self._instances(Filters=[{"Name": "db-instance-id", "Values": wanted["instance"]}])
        clusters = set(wanted["cluster"]) | {db.cluster_id for db in found if db.cluster_id}
        if clusters:
            found += self._clusters(Filters=[{"Name": "db-cluster-id", "Values": sorted(clusters)}])
        for name in wanted["proxy"]:
            found += self._absent_ok(self._proxies, DBProxyName=name)
        return found

    def _protected(self, db: Database) -> bool:
        return self._settings.is_protected(db.tags)

    def _named_databases(self, target: Target) -> list[Database]:
        found: list[Database] = []
        for identifier in sorted(target.db_instances):
            instances = self._absent_ok(self._instances, DBInstanceIdentifier=identifier)
            found.extend(instances)
            for member in instances:
                if member.cluster_id:  # an Aurora member is protected through its cluster, and shares its groups
                    found.extend(self._absent_ok(self._clusters, DBClusterIdentifier=member.cluster_id))
        for identifier in sorted(target.db_clusters):
            found.extend(self._absent_ok(self._clusters, DBClusterIdentifier=identifier))
        for name in sorted(target.db_proxies):
            found.extend(self._absent_ok(self._proxies, DBProxyName=name))
        return found

    @staticmethod
    def _absent_ok(read: Callable[..., Iterable[Any]], **kwargs: Any) -> list[Any]:
        """Everything ``read(**kwargs)`` yields; nothing if the resource no longer exists."""
        try:
            return list(read(**kwargs))
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return []
            raise

    def _instances(self, **kwargs: Any) -> Iterator[Database]:
        config = {} if kwargs else {"PaginationConfig": {"PageSize": 100}}
        for item in paginate(self._rds, "describe_db_instances", "DBInstances", **kwargs, **config):
            endpoint = item.get("Endpoint") or {}
            groups = item.get("DBParameterGroups") or [{}]
            yield Database(
                kind="instance",
                identifier=item["DBInstanceIdentifier"],
                arn=item.get("DBInstanceArn", ""),
                engine=item.get("Engine", ""),
                engine_version=item.get("EngineVersion", ""),
                port=endpoint.get("Port") or item.get("DbInstancePort") or None,
                security_group_ids=tuple(g["VpcSecurityGroupId"] for g in item.get("VpcSecurityGroups", [])),
                tags=tag_map(item.get("TagList")),
                publicly_accessible=item.get("PubliclyAccessible"),
                iam_auth=item.get("IAMDatabaseAuthenticationEnabled"),
                storage_encrypted=item.get("StorageEncrypted"),
                parameter_group=groups[0].get("DBParameterGroupName"),
                cluster_id=item.get("DBClusterIdentifier"),
                resource_id=item.get("DbiResourceId"),
            )

    def _clusters(self, **kwargs: Any) -> Iterator[Database]:
        config = {} if kwargs else {"PaginationConfig": {"PageSize": 100}}
        for item in paginate(self._rds, "describe_db_clusters", "DBClusters", **kwargs, **config):
            yield Database(
                kind="cluster",
                identifier=item["DBClusterIdentifier"],
                arn=item.get("DBClusterArn", ""),
                engine=item.get("Engine", ""),
                engine_version=item.get("EngineVersion", ""),
                port=item.get("Port"),
                security_group_ids=tuple(g["VpcSecurityGroupId"] for g in item.get("VpcSecurityGroups", [])),
                tags=tag_map(item.get("TagList")),
                publicly_accessible=item.get("PubliclyAccessible"),
                iam_auth=item.get("IAMDatabaseAuthenticationEnabled"),
                storage_encrypted=item.get("StorageEncrypted"),
                parameter_group=item.get("DBClusterParameterGroup"),
                resource_id=item.get("DbClusterResourceId"),
            )

    def _proxies(self, **kwargs: Any) -> Iterator[Database]:
        config = {} if kwargs else {"PaginationConfig": {"PageSize": 100}}
        for item in paginate(self._rds, "describe_db_proxies", "DBProxies", **kwargs, **config):
            arn = item.get("DBProxyArn", "")
            # DescribeDBProxies carries no tags: ask only when the scope depends on them.
            tags: dict[str, str] = {}
            if self._settings.remediation_scope == "tagged" and arn:
                tags = tag_map(call(self._rds.list_tags_for_resource, ResourceName=arn).get("TagList"))
            yield Database(
                kind="proxy",
                identifier=item["DBProxyName"],
                arn=arn,
                engine=str(item.get("EngineFamily", "")).lower(),
                port=PROXY_PORTS.get(str(item.get("EngineFamily", "")).upper()),
                security_group_ids=tuple(item.get("VpcSecurityGroupIds", [])),
                tags=tags,
            )

    # ---------------------------------------------------------------- security groups

    def _read_security_groups(self, estate: Estate, target: Target | None) -> None:
        attached = {group for db in estate.databases for group in db.security_group_ids}
        if target is not None and target.security_group_ids:
            attached &= target.security_group_ids
        if not attached:
            return
        for item in self._describe_groups(attached):
            if item["GroupId"] in attached:
                estate.security_groups[item["GroupId"]] = SecurityGroup(
                    group_id=item["GroupId"],
                    name=item.get("GroupName", ""),
                    vpc_id=item.get("VpcId"),
                    tags=tag_map(item.get("Tags")),
                    permissions=tuple(item.get("IpPermissions", [])),
                )

    def _describe_groups(self, group_ids: set[str]) -> Iterator[dict[str, Any]]:
        """One or two ids (an event): by id, the cheapest call; a group deleted meanwhile falls back to
        the filter. A few: filtered by id (a deleted group is simply absent). Many: every page of the
        region, which at up to 1,000 groups a page costs fewer calls than 200-id filters."""
        if len(group_ids) <= 2:
            try:
                yield from call(self._ec2.describe_security_groups, GroupIds=sorted(group_ids))["SecurityGroups"]
                return
            except ClientError as error:
                if error_code(error) not in _NOT_FOUND:
                    raise
        if len(group_ids) <= _SG_FILTER_LIMIT:
            filters = [{"Name": "group-id", "Values": sorted(group_ids)}]
            yield from paginate(self._ec2, "describe_security_groups", "SecurityGroups", Filters=filters)
            return
        yield from paginate(
            self._ec2, "describe_security_groups", "SecurityGroups", PaginationConfig={"PageSize": 1000}
        )

    # ---------------------------------------------------------------- parameter groups

    def _read_parameter_groups(self, estate: Estate, target: Target | None) -> None:
        wanted: set[tuple[Literal["instance", "cluster"], str]] = set()
        for db in estate.databases:
            if db.parameter_group and db.kind == "instance" and db.cluster_id is None:
                wanted.add(("instance", db.parameter_group))
            elif db.parameter_group and db.kind == "cluster":
                wanted.add(("cluster", db.parameter_group))
        if target is not None and (target.parameter_groups or target.cluster_parameter_groups):
            wanted = {
                (kind, name)
                for kind, name in wanted
                if name in (target.parameter_groups if kind == "instance" else target.cluster_parameter_groups)
            }
        for kind, name in sorted(wanted):
            if name.startswith("default."):  # AWS's own: cannot be modified, engine defaults apply
                estate.parameter_groups.append(ParameterGroup(name, kind, {}, is_default=True))
                continue
            self._guard(estate, f"{kind} parameter group {name}", self._parameters, estate, kind, name)

    def _parameters(self, estate: Estate, kind: Literal["instance", "cluster"], name: str) -> None:
        if kind == "instance":
            items = paginate(
                self._rds, "describe_db_parameters", "Parameters", DBParameterGroupName=name, Source="user"
            )
        else:
            items = paginate(
                self._rds,
                "describe_db_cluster_parameters",
                "Parameters",
                DBClusterParameterGroupName=name,
                Source="user",
            )
        parameters = {str(item["ParameterName"]): dict(item) for item in items}
        estate.parameter_groups.append(ParameterGroup(name, kind, parameters, is_default=False))

    # ---------------------------------------------------------------- snapshots

    def _read_snapshots(self, estate: Estate, target: Target | None) -> None:
        instance_ids = {db.identifier for db in estate.databases if db.kind == "instance"}
        cluster_ids = {db.identifier for db in estate.databases if db.kind == "cluster"}
        kinds: list[tuple[Literal["instance", "cluster"], dict[str, Any]]] = []
        if target is None:
            kinds = [("instance", {"SnapshotType": "manual"}), ("cluster", {"SnapshotType": "manual"})]
        else:
            kinds = [("instance", {"DBSnapshotIdentifier": s}) for s in sorted(target.snapshots)]
            kinds += [("cluster", {"DBClusterSnapshotIdentifier": s}) for s in sorted(target.cluster_snapshots)]
        for kind, kwargs in kinds:
            self._guard(
                estate,
                f"{kind} snapshots",
                self._snapshots,
                estate,
                kind,
                kwargs,
                instance_ids if kind == "instance" else cluster_ids,
            )

    def _snapshots(
        self, estate: Estate, kind: Literal["instance", "cluster"], kwargs: dict[str, Any], protected_ids: set[str]
    ) -> None:
        if kind == "instance":
            items = self._absent_ok(self._paginate_rds, operation="describe_db_snapshots", key="DBSnapshots", **kwargs)
        else:
            items = self._absent_ok(
                self._paginate_rds, operation="describe_db_cluster_snapshots", key="DBClusterSnapshots", **kwargs
            )
        for item in items:
            tags = tag_map(item.get("TagList"))
            database_id = item.get("DBInstanceIdentifier") if kind == "instance" else item.get("DBClusterIdentifier")
            if database_id not in protected_ids and not self._settings.is_protected(tags):
                continue
            identifier = item["DBSnapshotIdentifier"] if kind == "instance" else item["DBClusterSnapshotIdentifier"]
            self._guard(estate, f"{kind} snapshot {identifier}", self._snapshot, estate, kind, item, tags, database_id)

    def _snapshot(
        self,
        estate: Estate,
        kind: Literal["instance", "cluster"],
        item: dict[str, Any],
        tags: dict[str, str],
        database_id: str | None,
    ) -> None:
        identifier = item["DBSnapshotIdentifier"] if kind == "instance" else item["DBClusterSnapshotIdentifier"]
        estate.snapshots.append(
            Snapshot(
                identifier=identifier,
                kind=kind,
                arn=item.get("DBSnapshotArn") or item.get("DBClusterSnapshotArn") or "",
                database_id=database_id,
                restorable_by=self._restore_attribute(kind, identifier),
                tags=tags,
            )
        )

    def _paginate_rds(self, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return paginate(self._rds, operation, key, **kwargs)

    def _restore_attribute(self, kind: str, identifier: str) -> tuple[str, ...]:
        if kind == "instance":
            result = call(self._rds.describe_db_snapshot_attributes, DBSnapshotIdentifier=identifier)
            attributes = result["DBSnapshotAttributesResult"]["DBSnapshotAttributes"]
        else:
            result = call(self._rds.describe_db_cluster_snapshot_attributes, DBClusterSnapshotIdentifier=identifier)
            attributes = result["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"]
        for attribute in attributes:
            if attribute.get("AttributeName") == "restore":
                return tuple(attribute.get("AttributeValues", []))
        return ()

    # ---------------------------------------------------------------- IAM

    def _read_policies(self, estate: Estate, target: Target | None) -> None:
        if target is None:
            estate.policies = [p for p in self._all_policies() if not p.path.startswith(self._settings.grants_path)]
            return
        for arn in sorted(target.managed_policies):
            self._guard(estate, f"policy {arn}", self._managed_policy, estate, arn)
        for holder_kind, holder_name, policy_name in sorted(target.inline_policies):
            self._guard(
                estate,
                f"inline policy {holder_kind}/{holder_name}/{policy_name}",
                self._inline_policy,
                estate,
                holder_kind,
                holder_name,
                policy_name,
            )

    def _all_policies(self) -> Iterator[IamPolicy]:
        """One paginated call for every role, user, group and customer managed policy, inline ones included."""
        holders_of: dict[str, list[Holder]] = {}
        managed: list[dict[str, Any]] = []
        detail_keys = (
            ("RoleDetailList", "role", "RoleName", "RolePolicyList"),
            ("UserDetailList", "user", "UserName", "UserPolicyList"),
            ("GroupDetailList", "group", "GroupName", "GroupPolicyList"),
        )
        paginator = self._iam.get_paginator("get_account_authorization_details")
        with transient_errors_surface():
            pages = list(paginator.paginate(Filter=["Role", "User", "Group", "LocalManagedPolicy"]))
        for page in pages:
            managed.extend(page.get("Policies", []))
            for list_key, kind, name_key, inline_key in detail_keys:
                for entity in page.get(list_key, []):
                    holder = Holder(kind, entity[name_key], tag_map(entity.get("Tags")))  # type: ignore[arg-type]
                    for attached in entity.get("AttachedManagedPolicies", []):
                        holders_of.setdefault(attached["PolicyArn"], []).append(holder)
                    for inline in entity.get(inline_key, []):
                        yield IamPolicy(
                            kind="inline",
                            id=f"{kind}/{holder.name}/{inline['PolicyName']}",
                            name=inline["PolicyName"],
                            path=entity.get("Path", "/"),
                            document=policy_document(inline.get("PolicyDocument")),
                            holders=(holder,),
                        )
        for policy in managed:
            holders = tuple(holders_of.get(policy["Arn"], []))
            if not holders:
                continue  # unattached: grants nothing
            default = next((v for v in policy.get("PolicyVersionList", []) if v.get("IsDefaultVersion")), None)
            yield IamPolicy(
                kind="managed",
                id=policy["Arn"],
                name=policy.get("PolicyName", ""),
                path=policy.get("Path", "/"),
                document=policy_document(default.get("Document") if default else None),
                holders=holders,
            )

    def _managed_policy(self, estate: Estate, arn: str) -> None:
        policy = call(self._iam.get_policy, PolicyArn=arn)["Policy"]
        if str(policy.get("Path", "/")).startswith(self._settings.grants_path):
            return  # the grants path is accessctl's own, with its own checker
        version = call(self._iam.get_policy_version, PolicyArn=arn, VersionId=policy["DefaultVersionId"])
        holders: list[Holder] = []
        for kind, key, name_key in (
            ("role", "PolicyRoles", "RoleName"),
            ("user", "PolicyUsers", "UserName"),
            ("group", "PolicyGroups", "GroupName"),
        ):
            for entity in paginate(
                self._iam, "list_entities_for_policy", key, PolicyArn=arn, EntityFilter=kind.title()
            ):
                holders.append(Holder(kind, entity[name_key], self._holder_tags(kind, entity[name_key])))  # type: ignore[arg-type]
        if holders:
            estate.policies.append(
                IamPolicy(
                    kind="managed",
                    id=arn,
                    name=policy.get("PolicyName", ""),
                    path=policy.get("Path", "/"),
                    document=policy_document(version["PolicyVersion"].get("Document")),
                    holders=tuple(holders),
                )
            )

    def _inline_policy(self, estate: Estate, holder_kind: str, holder_name: str, policy_name: str) -> None:
        operation = {"role": "get_role_policy", "user": "get_user_policy", "group": "get_group_policy"}[holder_kind]
        name_key = {"role": "RoleName", "user": "UserName", "group": "GroupName"}[holder_kind]
        found = self._absent_ok(
            self._one, operation=getattr(self._iam, operation), **{name_key: holder_name, "PolicyName": policy_name}
        )
        if not found:
            return  # deleted since
        holder = Holder(holder_kind, holder_name, self._holder_tags(holder_kind, holder_name))  # type: ignore[arg-type]
        estate.policies.append(
            IamPolicy(
                kind="inline",
                id=f"{holder_kind}/{holder_name}/{policy_name}",
                name=policy_name,
                path="/",
                document=policy_document(found[0].get("PolicyDocument")),
                holders=(holder,),
            )
        )

    @staticmethod
    def _one(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
        return [call(operation, **kwargs)]

    def _holder_tags(self, kind: str, name: str) -> dict[str, str]:
        if kind == "role":
            return tag_map(paginate(self._iam, "list_role_tags", "Tags", RoleName=name))
        if kind == "user":
            return tag_map(paginate(self._iam, "list_user_tags", "Tags", UserName=name))
        return {}


def policy_document(raw: Any) -> dict[str, Any]:
    """IAM documents arrive parsed (boto3) or URL-encoded JSON text (the raw API, some emulators)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw:
        text = urllib.parse.unquote(raw) if raw.lstrip().startswith("%") else raw
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = json.loads(urllib.parse.unquote(raw))
        return parsed if isinstance(parsed, dict) else {}
    return {}
