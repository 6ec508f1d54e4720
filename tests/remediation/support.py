"""Helpers for the drift-remediation tests: sample CloudTrail events and a small emulated estate."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support.events import load_event

PROTECTED = [{"Key": "accessctl:protected", "Value": "true"}]


def cloudtrail(name: str, *, parameters: dict[str, Any] | None = None, **detail: Any) -> dict[str, Any]:
    """A sample from events/ with its requestParameters (and other detail fields) replaced."""
    event = copy.deepcopy(load_event(name))
    if parameters is not None:
        event["detail"]["requestParameters"] = parameters
        event["detail"]["responseElements"] = None
    event["detail"].update(detail)
    return event


def opened(group_id: str, cidr: str = "0.0.0.0/0", port: int = 5432) -> dict[str, Any]:
    """The AuthorizeSecurityGroupIngress sample, for this group."""
    return cloudtrail(
        "cloudtrail_authorize_sg_ingress.json",
        parameters={
            "groupId": group_id,
            "ipPermissions": {
                "items": [
                    {"ipProtocol": "tcp", "fromPort": port, "toPort": port, "ipRanges": {"items": [{"cidrIp": cidr}]}}
                ]
            },
        },
    )


def tcp(port: int, *cidrs: str, to_port: int | None = None) -> dict[str, Any]:
    v4 = [{"CidrIp": c} for c in cidrs if ":" not in c]
    v6 = [{"CidrIpv6": c} for c in cidrs if ":" in c]
    permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": to_port or port}
    if v4:
        permission["IpRanges"] = v4
    if v6:
        permission["Ipv6Ranges"] = v6
    return permission


def all_traffic(*cidrs: str) -> dict[str, Any]:
    return {"IpProtocol": "-1", "IpRanges": [{"CidrIp": c} for c in cidrs]}


class Emulated:
    """Creates resources in an emulator through boto3 clients (``client(service)``)."""

    def __init__(self, client: Any) -> None:
        self.ec2 = client("ec2")
        self.rds = client("rds")
        self.iam = client("iam")
        self._count = 0

    def group(self, *permissions: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        self._count += 1
        vpc = self.ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        spec = (
            [{"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
            if tags
            else []
        )
        group_id = self.ec2.create_security_group(
            GroupName=f"db-{self._count}-{id(self)}", Description="database", VpcId=vpc, TagSpecifications=spec
        )["GroupId"]
        if permissions:
            self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=list(permissions))
        return str(group_id)

    def ingress(self, group_id: str) -> list[dict[str, Any]]:
        permissions = self.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]
        return [normalise(p) for p in permissions]

    def postgres(self, identifier: str, *groups: str, protected: bool = True, **extra: Any) -> dict[str, Any]:
        return dict(
            self.rds.create_db_instance(
                DBInstanceIdentifier=identifier,
                DBInstanceClass="db.t4g.micro",
                Engine="postgres",
                EngineVersion=extra.pop("EngineVersion", "14.10"),
                MasterUsername="postgres",
                MasterUserPassword="not-used-in-tests",
                AllocatedStorage=20,
                VpcSecurityGroupIds=list(groups),
                Tags=PROTECTED if protected else [],
                EnableIAMDatabaseAuthentication=extra.pop("EnableIAMDatabaseAuthentication", True),
                StorageEncrypted=extra.pop("StorageEncrypted", True),
                **extra,
            )["DBInstance"]
        )

    def aurora_mysql(self, identifier: str, *groups: str) -> dict[str, Any]:
        return dict(
            self.rds.create_db_cluster(
                DBClusterIdentifier=identifier,
                Engine="aurora-mysql",
                MasterUsername="admin",
                MasterUserPassword="not-used-in-tests",
                VpcSecurityGroupIds=list(groups),
                Tags=PROTECTED,
                EnableIAMDatabaseAuthentication=True,
                StorageEncrypted=True,
            )["DBCluster"]
        )

    def proxy(self, name: str, *groups: str, protected: bool = True) -> dict[str, Any]:
        """An RDS Proxy (PostgreSQL) in the default VPC's subnets, fronting nothing yet."""
        vpc = self.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        proxy = self.rds.create_db_proxy(
            DBProxyName=name,
            EngineFamily="POSTGRESQL",
            Auth=[
                {"AuthScheme": "SECRETS", "SecretArn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}"}
            ],
            RoleArn="arn:aws:iam::123456789012:role/rds-proxy",
            VpcSubnetIds=[subnet["SubnetId"] for subnet in subnets[:2]],
            VpcSecurityGroupIds=list(groups),
            RequireTLS=True,
            Tags=PROTECTED if protected else [],
        )["DBProxy"]
        return dict(proxy)


def normalise(permission: dict[str, Any]) -> dict[str, Any]:
    """A permission as a comparable value (empty lists dropped, ranges sorted)."""
    out = {k: v for k, v in permission.items() if v not in ([], None)}
    for key, cidr in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
        if key in out:
            out[key] = sorted(({cidr: r[cidr]} for r in out[key]), key=json.dumps)
    return out


def cidrs(permissions: list[dict[str, Any]]) -> set[tuple[str, Any, Any, str]]:
    """Every (protocol, from, to, cidr) the group allows in."""
    found = set()
    for p in permissions:
        for r in p.get("IpRanges", []):
            found.add((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIp"]))
        for r in p.get("Ipv6Ranges", []):
            found.add((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIpv6"]))
    return found
