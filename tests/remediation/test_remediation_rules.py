"""The rule engine's pure parts, without AWS: ingress analysis, exemptions, event mapping, standing access."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from accessctl.remediation.estate import Database, Estate, Holder, IamPolicy, SecurityGroup
from accessctl.remediation.events import CloudTrailEvent, Ignored, affected_by
from accessctl.remediation.exemptions import exemption_for
from accessctl.remediation.network import merge_revokes, offending_ranges
from accessctl.remediation.rules import RULES, RULES_BY_ID
from accessctl.remediation.settings import Mode, RemediationSettings
from tests.remediation.support import all_traffic, cloudtrail, tcp

SETTINGS = RemediationSettings(audit_table="audit")
ALLOW = SETTINGS.remediation_allowed_cidrs
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("permission", "offending"),
    [
        (tcp(5432, "0.0.0.0/0", "10.0.0.0/8"), {"0.0.0.0/0"}),
        (tcp(5432, "::/0", "fc00::/7"), {"::/0"}),
        (tcp(5000, "0.0.0.0/0", to_port=6000), {"0.0.0.0/0"}),
        (tcp(5433, "0.0.0.0/0", to_port=6000), set()),
        (tcp(443, "0.0.0.0/0"), set()),
        (all_traffic("0.0.0.0/0", "192.168.0.0/16"), {"0.0.0.0/0"}),
        ({"IpProtocol": "udp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, set()),
        (tcp(5432, "203.0.113.0/24", "10.20.30.0/24"), {"203.0.113.0/24"}),
        (tcp(5432, "10.0.0.0/7"), {"10.0.0.0/7"}),  # wider than the allowed 10.0.0.0/8
    ],
    ids=[
        "world-v4",
        "world-v6",
        "range-spans",
        "range-misses",
        "other-port",
        "all-traffic",
        "udp",
        "public-cidr",
        "too-wide",
    ],
)
def test_offending_ranges(permission: dict[str, Any], offending: set[str]) -> None:
    assert {r.cidr for r in offending_ranges([permission], [5432], ALLOW)} == offending


def test_a_revoke_names_only_the_offending_range_of_its_permission() -> None:
    (found,) = offending_ranges([tcp(5432, "0.0.0.0/0", "10.0.0.0/8")], [5432], ALLOW)
    assert found.revoke_permission() == {
        "IpProtocol": "tcp",
        "FromPort": 5432,
        "ToPort": 5432,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
    }
    assert found.permission_after()["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
    (everything,) = offending_ranges([all_traffic("0.0.0.0/0")], [5432], ALLOW)
    assert everything.revoke_permission() == {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}


def test_merged_revokes_keep_one_entry_per_permission() -> None:
    merged = merge_revokes(
        [
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ]
    )
    assert merged == [
        {
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
        },
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ]


@pytest.mark.parametrize(
    ("value", "applies", "note"),
    [
        ("until=2027-01-31;reason=vendor migration", True, None),
        ("until=2026-12-03;reason=ends tonight", True, None),  # valid through that day
        ("until=2026-12-02;reason=yesterday", False, "expired on 2026-12-02"),
        ("until=2026-12-03T11:00:00Z;reason=an hour ago", False, "expired"),
        ("reason=forever", False, "no until"),
        ("until=2027-01-31", False, "no reason"),
        ("until=someday;reason=x y z", False, "not a date"),
        ("until=2027-01-31;reason=other rule only;rules=db-public-access", False, None),
    ],
)
def test_exemptions(value: str, applies: bool, note: str | None) -> None:
    exemption, why = exemption_for({"accessctl:exempt": value}, "accessctl:exempt", "sg-open-ingress", NOW)
    assert (exemption is not None) is applies
    assert (note is None and why is None) or (note is not None and why is not None and note in why)


@pytest.mark.parametrize(
    ("sample", "parameters", "expected"),
    [
        ("cloudtrail_authorize_sg_ingress.json", None, {"security_group_ids": {"sg-0123456789abcdef0"}}),
        ("cloudtrail_modify_sg_rules.json", None, {"security_group_ids": {"sg-0123456789abcdef0"}}),
        ("cloudtrail_modify_db_instance.json", None, {"db_instances": {"orders-db"}}),
        ("cloudtrail_modify_db_parameter_group.json", None, {"parameter_groups": {"orders-postgres16"}}),
        ("cloudtrail_modify_db_snapshot_attribute.json", None, {"snapshots": {"orders-db-before-migration"}}),
        ("cloudtrail_put_role_policy.json", None, {"inline_policies": {("role", "reporting-job", "db-access")}}),
        (
            "cloudtrail_attach_role_policy.json",
            None,
            {"managed_policies": {"arn:aws:iam::123456789012:policy/reporting-db-access"}},
        ),
    ],
)
def test_event_mapping(sample: str, parameters: dict[str, Any] | None, expected: dict[str, set[Any]]) -> None:
    affected = affected_by(CloudTrailEvent.model_validate(cloudtrail(sample, parameters=parameters)))
    for name, value in expected.items():
        assert set(getattr(affected.target, name)) == value


def test_the_remediators_own_changes_are_not_re_evaluated() -> None:
    event = cloudtrail(
        "cloudtrail_modify_db_instance.json",
        userIdentity={
            "type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/drift-role/accessctl-RemediateDrift",
        },
    )
    with pytest.raises(Ignored, match="own change"):
        affected_by(CloudTrailEvent.model_validate(event), "accessctl-RemediateDrift")


def _policy(statement: dict[str, Any], path: str = "/") -> IamPolicy:
    document = {"Version": "2012-10-17", "Statement": [statement]}
    return IamPolicy("managed", "arn:aws:iam::1:policy/p", "p", path, document, (Holder("role", "r", {}),))


@pytest.mark.parametrize(
    ("statement", "standing"),
    [
        ({"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": "rds-db:*", "Resource": "arn:aws:rds-db:*:*:dbuser:*/*"}, True),
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, True),
        (
            {
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": "arn:aws:rds-db:us-east-1:1:dbuser:db-ORDERS/app",
            },
            True,
        ),
        (
            {
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": "arn:aws:rds-db:us-east-1:1:dbuser:db-OTHER/app",
            },
            False,
        ),
        (
            {
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:CurrentTime": "2026-12-03T17:00:00Z"}},
            },
            False,
        ),
        ({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}, True),
        ({"Effect": "Deny", "Action": "rds-db:connect", "Resource": "*"}, False),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, False),
    ],
)
def test_standing_access(statement: dict[str, Any], standing: bool) -> None:
    orders = Database("instance", "orders", "arn", "postgres", 5432, (), {}, resource_id="db-ORDERS")
    estate = Estate(databases=[orders], policies=[_policy(statement)])
    findings = list(RULES_BY_ID["iam-standing-access"].evaluate(estate, SETTINGS))
    assert bool(findings) is standing


def test_policies_on_the_grants_path_are_never_judged() -> None:
    estate = Estate(
        policies=[_policy({"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}, path="/accessctl/grants/")]
    )
    assert list(RULES_BY_ID["iam-standing-access"].evaluate(estate, SETTINGS)) == []


def test_a_shared_group_reports_each_database_it_exposes() -> None:
    group = SecurityGroup("sg-1", "db", "vpc-1", {}, (tcp(3306, "0.0.0.0/0"), tcp(5432, "0.0.0.0/0")))
    pg = Database("instance", "pg", "arn", "postgres", 5432, ("sg-1",), {})
    mysql = Database("cluster", "my", "arn", "aurora-mysql", 3306, ("sg-1",), {})
    findings = list(
        RULES_BY_ID["sg-open-ingress"].evaluate(
            Estate(databases=[pg, mysql], security_groups={"sg-1": group}), SETTINGS
        )
    )
    assert sorted(f.databases[0] for f in findings) == ["cluster/my", "instance/pg"]


def test_every_rule_has_an_id_severity_description_and_fix_statement() -> None:
    assert len({rule.id for rule in RULES}) == len(RULES) == 7
    for rule in RULES:
        assert rule.description and rule.fix and rule.needs
    assert not RULES_BY_ID["db-storage-unencrypted"].auto_fix


def test_settings_from_the_environment() -> None:
    settings = RemediationSettings.model_validate(
        {
            "audit_table": "a",
            "remediation_rule_modes": '{"sg-open-ingress": "enforce", "db-storage-unencrypted": "off"}',
            "remediation_allowed_cidrs": "10.0.0.0/8, 2001:db8::/32",
            "remediation_protected_tag": "team",
        }
    )
    assert settings.mode_for("sg-open-ingress") == Mode.ENFORCE
    assert settings.mode_for("db-public-access") == Mode.REPORT  # the default for a new install
    assert settings.mode_for("db-storage-unencrypted") == Mode.OFF
    assert [str(n) for n in settings.remediation_allowed_cidrs] == ["10.0.0.0/8", "2001:db8::/32"]
    assert settings.is_protected({"team": "anything"}) and not settings.is_protected({})
