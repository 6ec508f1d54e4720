"""A scan with more attached groups than an id filter takes reads every page of the region's groups,
once; a failure there is reported like any failed read and the databases are kept."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from accessctl.remediation.estate import Aspect, EstateReader
from accessctl.remediation.settings import RemediationSettings

SETTINGS = RemediationSettings(audit_table="audit")


class Pages:
    def __init__(self, pages: list[dict[str, Any]] | Exception) -> None:
        self._pages = pages

    def paginate(self, **_: Any) -> Any:
        if isinstance(self._pages, Exception):
            raise self._pages
        yield from self._pages


class FakeClient:
    """Stands for an EC2 or RDS client: the pages of each list operation, and which were asked for."""

    def __init__(self, **pages: list[dict[str, Any]] | Exception) -> None:
        self._pages = pages
        self.asked: list[str] = []

    def get_paginator(self, operation: str) -> Pages:
        self.asked.append(operation)
        return Pages(self._pages.get(operation, [{}]))


def instance(number: int) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": f"db-{number}",
        "Engine": "postgres",
        "Endpoint": {"Port": 5432},
        "VpcSecurityGroups": [{"VpcSecurityGroupId": f"sg-{number}-{n}"} for n in range(5)],
        "TagList": [{"Key": "accessctl:protected", "Value": "true"}],
    }


def group(group_id: str) -> dict[str, Any]:
    return {"GroupId": group_id, "GroupName": group_id, "IpPermissions": []}


RDS_PAGES = {"describe_db_instances": [{"DBInstances": [instance(n) for n in range(42)]}]}


def test_given_210_attached_groups_when_scanned_then_every_page_of_the_region_is_read_once() -> None:
    region = [group(f"sg-{n}-{m}") for n in range(42) for m in range(5)] + [group("sg-unattached")]
    ec2 = FakeClient(describe_security_groups=[{"SecurityGroups": region[:150]}, {"SecurityGroups": region[150:]}])
    reader = EstateReader(SETTINGS, ec2=ec2, rds=FakeClient(**RDS_PAGES), iam=None)

    estate = reader.read(frozenset({Aspect.NETWORK}))

    assert estate.errors == []
    assert len(estate.databases) == 42
    assert sorted(estate.security_groups) == sorted(g["GroupId"] for g in region[:-1])
    assert ec2.asked == ["describe_security_groups"]


def test_given_the_region_read_failing_when_scanned_then_it_is_reported_and_the_databases_are_kept() -> None:
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "DescribeSecurityGroups")
    reader = EstateReader(
        SETTINGS, ec2=FakeClient(describe_security_groups=throttled), rds=FakeClient(**RDS_PAGES), iam=None
    )

    estate = reader.read(frozenset({Aspect.NETWORK}))

    assert len(estate.databases) == 42 and estate.security_groups == {}
    assert len(estate.errors) == 1 and estate.errors[0].startswith("reading security groups: TransientError")
