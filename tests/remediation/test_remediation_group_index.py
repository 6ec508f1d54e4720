"""The group index on the local stack: the scan writes it, database events extend it, and an event
about a security group in a cold process reads only the databases it names, and lists them all
when it is missing, expired or stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from accessctl.audit import AuditLog
from accessctl.remediation.audit_table import AuditTable
from accessctl.remediation.engine import Remediator
from accessctl.remediation.estate import EstateReader
from accessctl.remediation.fixer import Fixer
from accessctl.remediation.group_index import GroupIndex
from accessctl.remediation.notify import LogRemediationNotifier
from accessctl.remediation.settings import RemediationSettings
from accessctl_local import LocalStack
from tests.remediation.support import PROTECTED, Emulated, cidrs, cloudtrail, opened, tcp
from tests.support.template import PROJECT_ROOT

pytestmark = [pytest.mark.integration]

FUNCTION = "RemediateDriftFunction"
LISTING = {("rds", "DescribeDBClusters"), ("rds", "DescribeDBProxies")}  # only a full listing reads these here


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.start(
        project_root=PROJECT_ROOT, run_schedules=False, parameter_overrides={"RemediationMode": "enforce"}
    ) as running:
        yield running


class NoMetrics:
    def record(self, counts: dict[tuple[str, str], int]) -> None:
        pass


def index_of(stack: LocalStack, clock: Any = time.time) -> GroupIndex:
    return GroupIndex(stack.client("dynamodb"), stack.resources["RemediationIndexTable"], 1800, clock=clock)


def cold_remediator(stack: LocalStack, clock: Any = time.time) -> Remediator:
    """What a new process builds (nothing kept from earlier events), on the stack's tables."""
    settings = RemediationSettings(
        audit_table=stack.resources["AuditTable"],
        remediation_mode="enforce",
        remediation_index_table=stack.resources["RemediationIndexTable"],
    )
    ec2, rds, iam = stack.client("ec2"), stack.client("rds"), stack.client("iam")
    return Remediator(
        settings=settings,
        reader=EstateReader(settings, ec2=ec2, rds=rds, iam=iam, group_index=index_of(stack, clock)),
        fixer=Fixer(ec2=ec2, rds=rds, iam=iam, max_attempts=2),
        audit=AuditLog(AuditTable(stack.client("dynamodb"), settings.audit_table)),
        notifier=LogRemediationNotifier(),
        metrics=NoMetrics(),
    )


def open_to_world(emulated: Emulated, group: str, port: int = 5432) -> None:
    emulated.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(port, "0.0.0.0/0")])


def scan(stack: LocalStack) -> None:
    invocation = stack.fire_schedule(FUNCTION)
    assert not invocation.errored, invocation.payload


def test_given_a_scan_when_a_group_is_opened_then_a_cold_process_reads_only_the_databases_the_index_names(
    stack: LocalStack, emulated: Emulated
) -> None:
    # Given two databases sharing a group, indexed by the scan
    shared, other = emulated.group(tcp(5432, "10.0.0.0/8")), emulated.group()
    emulated.postgres("indexed-a", shared)
    emulated.postgres("indexed-b", shared, other)
    scan(stack)
    assert index_of(stack).lookup(shared) == {"instance/indexed-a", "instance/indexed-b"}
    assert index_of(stack).lookup(other) == {"instance/indexed-b"}

    # When the group is opened to the world and the event reaches a new process
    open_to_world(emulated, shared)
    stack.reset_api_call_counts()
    report = cold_remediator(stack).handle_event(opened(shared))

    # Then the range is closed, the finding names both databases, and they were read by identifier
    assert report.counts()["fixed"] == 1
    assert sorted(report.results[0].finding.databases) == ["instance/indexed-a", "instance/indexed-b"]
    assert cidrs(emulated.ingress(shared)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
    counts = stack.api_call_counts()
    assert counts[("rds", "DescribeDBInstances")] == 1 and not LISTING & counts.keys()


def test_given_a_stale_index_when_the_group_moved_to_another_database_then_the_event_lists_them_and_closes_it(
    stack: LocalStack, emulated: Emulated
) -> None:
    # Given a group indexed for one database, then moved to another with no event processed since
    moved, elsewhere = emulated.group(tcp(5432, "10.0.0.0/8")), emulated.group()
    emulated.postgres("moved-from", moved)
    scan(stack)
    emulated.rds.modify_db_instance(
        DBInstanceIdentifier="moved-from", VpcSecurityGroupIds=[elsewhere], ApplyImmediately=True
    )
    emulated.postgres("moved-to", moved)
    open_to_world(emulated, moved)
    stack.reset_api_call_counts()

    # When the event reaches a new process
    report = cold_remediator(stack).handle_event(opened(moved))

    # Then the index named a database that no longer uses the group: the list was read, and the
    # group closed for the database that uses it now
    assert report.counts()["fixed"] == 1 and report.results[0].finding.databases == ["instance/moved-to"]
    assert stack.api_call_counts().keys() >= LISTING
    assert cidrs(emulated.ingress(moved)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
    # and the listing rewrote the index
    assert index_of(stack).lookup(moved) == {"instance/moved-to"}


def test_given_a_database_event_then_the_index_learns_its_groups_for_the_next_group_event(
    stack: LocalStack, emulated: Emulated
) -> None:
    # Given a MySQL database attached to an indexed PostgreSQL group after the scan
    group = emulated.group(tcp(5432, "10.0.0.0/8"))
    emulated.postgres("learn-pg", group)
    scan(stack)
    emulated.rds.create_db_instance(
        DBInstanceIdentifier="learn-mysql",
        DBInstanceClass="db.t4g.micro",
        Engine="mysql",
        MasterUsername="admin",
        MasterUserPassword="not-used-in-tests",
        AllocatedStorage=20,
        VpcSecurityGroupIds=[group],
        Tags=PROTECTED,
        EnableIAMDatabaseAuthentication=True,
        StorageEncrypted=True,
    )

    # When its event is handled, and then the group is opened on MySQL's port
    cold_remediator(stack).handle_event(
        cloudtrail("cloudtrail_modify_db_instance.json", parameters={"dBInstanceIdentifier": "learn-mysql"})
    )
    open_to_world(emulated, group, port=3306)
    stack.reset_api_call_counts()
    report = cold_remediator(stack).handle_event(opened(group, port=3306))

    # Then the index named both databases, and 3306 from the world is closed without a listing
    assert index_of(stack).lookup(group) == {"instance/learn-pg", "instance/learn-mysql"}
    assert report.counts()["fixed"] == 1
    assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
    assert not LISTING & stack.api_call_counts().keys()


@pytest.mark.parametrize("case", ["unknown group", "expired index"])
def test_given_an_index_that_cannot_say_then_the_event_lists_the_databases(
    stack: LocalStack, emulated: Emulated, case: str
) -> None:
    # Given a protected database on a group the index does not know, or an index past its age
    group = emulated.group(tcp(5432, "10.0.0.0/8"))
    if case == "expired index":
        emulated.postgres(f"aged-{case[:3]}", group)
        scan(stack)
        clock = lambda: time.time() + 3600  # noqa: E731 - an hour on: older than the 30 minutes allowed
    else:
        scan(stack)
        emulated.postgres(f"aged-{case[:3]}", group)
        clock = time.time
    open_to_world(emulated, group)
    stack.reset_api_call_counts()

    # When the event reaches a new process
    report = cold_remediator(stack, clock).handle_event(opened(group))

    # Then the databases were listed and the group closed
    assert report.counts()["fixed"] == 1
    assert stack.api_call_counts().keys() >= LISTING
    assert cidrs(emulated.ingress(group)) == {("tcp", 5432, 5432, "10.0.0.0/8")}
