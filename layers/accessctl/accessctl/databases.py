"""Databases as RDS describes them: the resource id in a grant always comes from here."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from accessctl.aws import call, error_code
from accessctl.models import DatabaseTarget


def describe_database(
    rds: Any, identifier: str, *, region: str, account_id: str, partition: str
) -> DatabaseTarget | None:
    """The DB instance or Aurora cluster called ``identifier``, or ``None`` if RDS has neither.

    An instance that belongs to an Aurora cluster is granted through its cluster: IAM
    authentication for Aurora names the cluster's resource id.
    """
    instance = _first(rds, "describe_db_instances", "DBInstances", DBInstanceIdentifier=identifier)
    if instance is not None and not instance.get("DBClusterIdentifier"):
        endpoint = instance.get("Endpoint") or {}
        return DatabaseTarget(
            identifier=instance["DBInstanceIdentifier"],
            kind="instance",
            resource_id=instance["DbiResourceId"],
            engine=instance.get("Engine", ""),
            host=endpoint.get("Address"),
            port=endpoint.get("Port"),
            region=region,
            account_id=account_id,
            partition=partition,
            iam_auth_enabled=bool(instance.get("IAMDatabaseAuthenticationEnabled")),
        )
    cluster_id = instance["DBClusterIdentifier"] if instance is not None else identifier
    cluster = _first(rds, "describe_db_clusters", "DBClusters", DBClusterIdentifier=cluster_id)
    if cluster is None:
        return None
    return DatabaseTarget(
        identifier=cluster["DBClusterIdentifier"],
        kind="cluster",
        resource_id=cluster["DbClusterResourceId"],
        engine=cluster.get("Engine", ""),
        host=cluster.get("Endpoint"),
        port=cluster.get("Port"),
        region=region,
        account_id=account_id,
        partition=partition,
        iam_auth_enabled=bool(cluster.get("IAMDatabaseAuthenticationEnabled")),
    )


_NOT_FOUND = frozenset({"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault", "DBClusterNotFound"})


def _first(rds: Any, operation: str, key: str, **kwargs: Any) -> dict[str, Any] | None:
    try:
        found = call(getattr(rds, operation), **kwargs)[key]
    except ClientError as error:
        if error_code(error) in _NOT_FOUND:
            return None
        raise
    return found[0] if found else None
