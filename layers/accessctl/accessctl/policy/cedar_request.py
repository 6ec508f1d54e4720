"""Turning a :class:`PolicyRequest` into Cedar's request, entities and per-partition context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accessctl.models import to_iso
from accessctl.policy.compiler import Partition
from accessctl.policy.model import HumanPrincipal, PolicyRequest
from accessctl.policy.windows import WindowState, window_state
from accessctl.signals.clock import LocalTime, local_time, zone

ACTION = {"type": "Action", "id": "connect"}


def _uid(entity_type: str, entity_id: str) -> dict[str, str]:
    return {"type": entity_type, "id": entity_id}


def principal_uid(request: PolicyRequest) -> dict[str, str]:
    principal = request.principal
    if isinstance(principal, HumanPrincipal):
        return _uid("User", principal.subject)
    return _uid("Role", principal.role.name)


def resource_uid(request: PolicyRequest) -> dict[str, str]:
    return _uid("DbUser", f"{request.database.identifier}/{request.db_user}")


def entities(request: PolicyRequest) -> list[dict[str, Any]]:
    """The request's entity graph: principal (and its groups and role), database user, database."""
    principal = request.principal
    role = principal.role
    role_uid = _uid("Role", role.name)
    graph: list[dict[str, Any]] = [
        {"uid": role_uid, "attrs": {"name": role.name, "account_id": role.account_id}, "parents": [], "tags": role.tags}
    ]
    if isinstance(principal, HumanPrincipal):
        groups_signal = request.signals.groups
        # Group membership only from a verified token; an unverified human is in no group.
        groups = list(groups_signal.value) if principal.verified and isinstance(groups_signal.value, list) else []
        graph.extend({"uid": _uid("Group", group), "attrs": {}, "parents": []} for group in groups)
        graph.append(
            {
                "uid": principal_uid(request),
                "attrs": {"issuer": principal.issuer, "verified": principal.verified},
                "parents": [*(_uid("Group", group) for group in groups), role_uid],
            }
        )
    database = request.database
    database_uid = _uid("Database", database.identifier)
    graph.append(
        {
            "uid": database_uid,
            "attrs": {
                "identifier": database.identifier,
                "environment": database.environment,
                "engine": database.engine,
            },
            "parents": [],
            "tags": database.tags,
        }
    )
    graph.append(
        {
            "uid": resource_uid(request),
            "attrs": {"name": request.db_user, "database": {"__entity": database_uid}},
            "parents": [database_uid],
        }
    )
    return graph


@dataclass(frozen=True)
class PartitionClock:
    """The time facts of one partition: local time in its zone and the state of its window."""

    local: LocalTime
    window: WindowState | None


def partition_clock(request: PolicyRequest, partition: Partition) -> PartitionClock:
    local = local_time(request.at, partition.timezone)
    state = window_state(partition.windows, request.at, zone(partition.timezone)) if partition.windows else None
    return PartitionClock(local=local, window=state)


def context(request: PolicyRequest, clock: PartitionClock, signals: dict[str, Any]) -> dict[str, Any]:
    """The Cedar context for one partition (``signals`` is the request's present signals, in Cedar form)."""
    result: dict[str, Any] = {
        "requested_minutes": request.requested_minutes,
        "now": {"__extn": {"fn": "datetime", "arg": to_iso(request.at)}},
        "local": clock.local.cedar(),
        **signals,
    }
    if clock.window is not None:
        result["window"] = clock.window.cedar()
    return result
