"""Which ingress ranges of a security group reach a database port from outside the allow-list.

Pure functions over ``IpPermissions`` as EC2 describes them. A permission reaches a port when it
is all-traffic (``-1``) or TCP with ``FromPort <= port <= ToPort``. A range offends when it is not
inside an allowed network. The revoke built for one offending range names that range only, in that
permission only: EC2 removes exactly it, and the permission's other ranges survive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from accessctl.remediation.settings import IpNetwork

WORLD = frozenset({"0.0.0.0/0", "::/0"})


@dataclass(frozen=True)
class OffendingRange:
    permission: dict[str, Any]
    cidr: str
    ipv6: bool
    ports: tuple[int, ...]  # the database ports it reaches
    description: str | None

    @property
    def from_world(self) -> bool:
        return self.cidr in WORLD

    def port_label(self) -> str:
        protocol = str(self.permission.get("IpProtocol"))
        if protocol in ("-1", "all"):
            return "all traffic"
        low, high = self.permission.get("FromPort"), self.permission.get("ToPort")
        return f"{protocol} {low}" if low == high else f"{protocol} {low}-{high}"

    def revoke_permission(self) -> dict[str, Any]:
        """The IpPermissions entry that removes exactly this range of exactly this permission."""
        entry: dict[str, Any] = {"IpProtocol": self.permission["IpProtocol"]}
        if "FromPort" in self.permission and str(self.permission["IpProtocol"]) not in ("-1", "all"):
            entry["FromPort"] = self.permission["FromPort"]
            entry["ToPort"] = self.permission["ToPort"]
        if self.ipv6:
            entry["Ipv6Ranges"] = [{"CidrIpv6": self.cidr}]
        else:
            entry["IpRanges"] = [{"CidrIp": self.cidr}]
        return entry

    def permission_after(self) -> dict[str, Any]:
        """The permission as it stands once the range is gone."""
        after = dict(self.permission)
        key, cidr_key = ("Ipv6Ranges", "CidrIpv6") if self.ipv6 else ("IpRanges", "CidrIp")
        after[key] = [r for r in self.permission.get(key, []) if r.get(cidr_key) != self.cidr]
        return after


def reaches(permission: dict[str, Any], port: int) -> bool:
    protocol = str(permission.get("IpProtocol", "")).lower()
    if protocol in ("-1", "all"):
        return True
    if protocol not in ("tcp", "6"):
        return False  # UDP/ICMP never carry a database session
    low, high = permission.get("FromPort"), permission.get("ToPort")
    if low is None or high is None or (low == -1 and high == -1):
        return True
    return int(low) <= port <= int(high)


def allowed(cidr: str, allow_list: Iterable[IpNetwork]) -> bool:
    if isinstance(allow_list, tuple):
        return _allowed(cidr, allow_list)
    return _allowed.__wrapped__(cidr, tuple(allow_list))


@lru_cache(maxsize=4096)
def _allowed(cidr: str, allow_list: tuple[IpNetwork, ...]) -> bool:
    """Cached: a scan sees the same few ranges (0.0.0.0/0, the VPC's) on most of its groups."""
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return any(network.version == a.version and network.subnet_of(a) for a in allow_list)  # type: ignore[arg-type]


def offending_ranges(
    permissions: Iterable[dict[str, Any]], ports: Iterable[int], allow_list: tuple[IpNetwork, ...]
) -> Iterator[OffendingRange]:
    port_list = sorted(set(ports))
    for permission in permissions:
        reached = tuple(port for port in port_list if reaches(permission, port))
        if not reached:
            continue
        for key, cidr_key, ipv6 in (("IpRanges", "CidrIp", False), ("Ipv6Ranges", "CidrIpv6", True)):
            for ip_range in permission.get(key, []):
                cidr = ip_range.get(cidr_key)
                if cidr and not allowed(cidr, allow_list):
                    yield OffendingRange(permission, cidr, ipv6, reached, ip_range.get("Description"))


def merge_revokes(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several ranges of one group in one call (one revoke per group), ranges grouped per permission."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for entry in entries:
        key = (entry["IpProtocol"], entry.get("FromPort"), entry.get("ToPort"))
        target = merged.setdefault(key, {k: v for k, v in entry.items() if k not in ("IpRanges", "Ipv6Ranges")})
        for ranges in ("IpRanges", "Ipv6Ranges"):
            for item in entry.get(ranges, []):
                if item not in target.setdefault(ranges, []):
                    target[ranges].append(item)
    return list(merged.values())
