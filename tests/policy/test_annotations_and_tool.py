"""Loading fails on bad annotations; validate() and run_tests() as the CLI uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from accessctl.policy import PolicyLoadError, load_policies
from accessctl.policy.tool import main, run_tests, validate
from tests.policy.conftest import POLICIES_DIR, PolicyWriter

_SCOPE = 'permit (principal, action == Action::"connect", resource);'
_CONTEXT_RULE = 'permit (principal, action == Action::"connect", resource) when { context has mfa && context.mfa };'


@pytest.mark.parametrize(
    ("policy", "expected_problem"),
    [
        (f'@outcome("auto") @max_minutes("15") {_SCOPE}', "id"),
        (f'@id("Bad_Id") @outcome("auto") @max_minutes("15") {_SCOPE}', "@id"),
        (f'@id("r") @outcome("sometimes") @max_minutes("15") {_SCOPE}', "@outcome"),
        (f'@id("r") @outcome("auto") @max_minutes("sixty") {_SCOPE}', "@max_minutes"),
        (f'@id("r") @outcome("auto") @max_minutes("0") {_SCOPE}', "@max_minutes"),
        (f'@id("r") @outcome("auto") @max_minutes("721") {_SCOPE}', "@max_minutes"),
        (f'@id("r") @outcome("auto") {_SCOPE}', "needs @outcome"),
        (f'@id("r") @outcome("approval") @max_minutes("15") {_SCOPE}', "needs @approver_group"),
        (f'@id("r") @outcome("auto") @approvals("1") @max_minutes("15") {_SCOPE}', 'need @outcome("approval")'),
        (f'@id("r") @outcome("auto") @max_minutes("15") @break_glass("yes") {_SCOPE}', "@break_glass"),
        (f'@id("r") @outcome("auto") @max_minutes("15") @timezone("Mars/Olympus") {_SCOPE}', "unknown time zone"),
        (f'@id("r") @outcome("auto") @max_minutes("15") @window("Mon-Fri 9-17") {_SCOPE}', "must look like"),
        (f'@id("r") @outcome("auto") @max_minutes("15") @max_minute("15") {_SCOPE}', "@max_minute"),
        (f'@id("r") @outcome("auto") @max_minutes("15") @signals("mfa,retina") {_SCOPE}', "unknown signal"),
        (f'@id("r") @outcome("auto") @max_minutes("15") {_CONTEXT_RULE}', "@requires has 0 label(s)"),
        (
            f'@id("r") @outcome("auto") @max_minutes("15") @requires("MFA") @signals("device") {_CONTEXT_RULE}',
            "@signals declares",
        ),
        (
            f'@id("r") @outcome("auto") @max_minutes("15") @window("Mon 08:00-09:00") {_SCOPE}',
            "no condition checks context.window",
        ),
        ('@id("f") forbid (principal, action, resource);', "needs @reason"),
        ('@id("f") @reason("No.") @max_minutes("5") forbid (principal, action, resource);', "a forbid cannot have"),
        (
            f'@id("r") @outcome("approval") @approver_group("x") @break_glass("true") @max_minutes("5") {_SCOPE}',
            "break-glass",
        ),
    ],
)
def test_given_an_invalid_annotation_when_loading_then_loading_fails_naming_it(
    policy_dir: PolicyWriter, policy: str, expected_problem: str
) -> None:
    with pytest.raises(PolicyLoadError) as raised:
        load_policies(policy_dir(rules=policy))
    assert expected_problem in str(raised.value)


def test_given_two_rules_with_one_id_when_loading_then_the_duplicate_is_named(policy_dir: PolicyWriter) -> None:
    rule = f'@id("same") @outcome("auto") @max_minutes("5") {_SCOPE}'
    with pytest.raises(PolicyLoadError, match=r"@id same is also used in a\.cedar"):
        load_policies(policy_dir(a=rule, b=rule))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("context.vip", "vip"),  # Cedar's schema validation
        ("context has vip && context.vip", "never provides"),  # Cedar accepts it as always false; accessctl does not
        ('resource.database.owner == "me"', "attribute `owner` on entity type `Database` not found"),
        ('principal.nickname == "x"', "attribute `nickname` on entity type `Role` not found"),
    ],
)
def test_given_a_policy_reading_a_non_existent_attribute_when_validating_then_it_is_a_problem(
    policy_dir: PolicyWriter, condition: str, expected: str
) -> None:
    label = '@requires("VIP")' if "context" in condition else ""
    rule = (
        f'@id("r") @outcome("auto") @max_minutes("5") {label} '
        f'permit (principal, action == Action::"connect", resource) when {{ {condition} }};'
    )
    problems = validate(policy_dir(rules=rule))
    assert any(expected in problem.message and problem.rule_id == "r" for problem in problems), problems


def test_given_a_policy_with_a_syntax_error_when_validating_then_the_file_is_named(policy_dir: PolicyWriter) -> None:
    (problem,) = validate(policy_dir(broken="permit (principal, action, resource"))
    assert problem.file == "broken.cedar"


def test_given_the_shipped_policies_when_validating_then_there_are_no_problems() -> None:
    assert validate(POLICIES_DIR) == []


def test_given_the_shipped_test_table_when_running_it_then_every_case_passes() -> None:
    results = run_tests(POLICIES_DIR, POLICIES_DIR / "tests.yaml")
    assert len(results) >= 30
    assert [result.name for result in results if not result.passed] == []


def test_given_a_wrong_expectation_when_running_tests_then_the_case_fails_with_the_difference(tmp_path: Path) -> None:
    table = tmp_path / "tests.yaml"
    table.write_text(
        """
cases:
  - name: orders service wrongly expected to need approval
    principal: {role: orders-service}
    database: orders-demo
    db_user: app_rw
    minutes: 15
    at: "2027-03-24T10:00:00Z"
    expect: {outcome: NEEDS_APPROVAL}
"""
    )
    (result,) = run_tests(POLICIES_DIR, table)
    assert not result.passed
    assert result.failures == [
        "outcome: expected <PolicyOutcome.NEEDS_APPROVAL: 'NEEDS_APPROVAL'>, got <PolicyOutcome.ALLOW: 'ALLOW'>"
    ]


def test_given_the_cli_when_validating_and_testing_the_shipped_policies_then_both_succeed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(POLICIES_DIR)]) == 0
    assert main(["test", str(POLICIES_DIR)]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_given_the_cli_when_validating_a_broken_folder_then_it_exits_1(
    policy_dir: PolicyWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(policy_dir(broken="permit ("))]) == 1
    assert "broken.cedar" in capsys.readouterr().out
