"""The benchmarks' own helpers: statistics, tables and the report (no stack, no timing assertions)."""

from __future__ import annotations

import json

import pytest

from bench.calls import ApiCalls, Phase, Window
from bench.common import epoch_of, percentile, render_table, summarize
from bench.imports import BASELINE, HandlerImport, handler_dirs
from bench.latency import RequestLatency, SweeperRevocation, WorkflowRevocation
from bench.report import Results, render, to_json


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 21)]  # 1..20

    assert percentile(samples, 95) == 19.0
    assert percentile(samples, 50) == 10.0
    assert percentile([3.0, 1.0, 2.0], 95) == 3.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    with pytest.raises(ValueError):
        percentile([], 95)


def test_summarize_orders_the_samples_and_is_none_without_any() -> None:
    summary = summarize([0.3, -0.1, 0.2])

    assert summary is not None
    assert (summary.n, summary.median, summary.min, summary.max, summary.p95, summary.p99) == (
        3,
        0.2,
        -0.1,
        0.3,
        0.3,
        0.3,
    )
    assert summarize([]) is None


def test_epoch_of_reads_the_grant_expiry_form() -> None:
    assert epoch_of("1970-01-01T00:01:00Z") == 60.0
    assert epoch_of("1970-01-01T00:01:00.250Z") == 60.25


def test_render_table_aligns_columns() -> None:
    lines = render_table(["name", "n"], [["a", "1"], ["long name", "100"]], "lr")

    assert lines == ["name         n", "---------  ---", "a            1", "long name  100"]


def test_every_handler_directory_is_found() -> None:
    names = {path.name for path in handler_dirs()}

    assert {"api", "evaluate_request", "issue_grant", "notify", "revoke_grant", "sweep_grants"} <= names


def test_window_reports_where_the_emulator_and_the_attribution_disagree() -> None:
    phase = Phase("submit", {("ApiFunction", "iam", "GetRole"): 1, ("ApiFunction", "dynamodb", "PutItem"): 2}, {})
    agreeing = Window("w", {("iam", "GetRole"): 1, ("dynamodb", "PutItem"): 2}, [phase])
    disagreeing = Window("w", {("iam", "GetRole"): 1, ("dynamodb", "PutItem"): 3}, [phase])

    assert agreeing.mismatches() == []
    assert disagreeing.mismatches() == ["w: dynamodb:PutItem served 3, attributed 2"]


def _results() -> Results:
    summary = summarize([0.1, 0.2, 0.3])
    assert summary is not None
    phase = Phase("submit (API function)", {("ApiFunction", "iam", "GetRole"): 1}, {"ApiFunction": 1})
    return Results(
        machine={
            "date": "2026-01-01 00:00:00 UTC",
            "commit": "abc1234",
            "cpus": 2,
            "cpus_usable": 2,
            "load_1min_at_start": 0.5,
            "platform": "Linux",
            "python": "CPython 3.11.7",
            "moto": "5.2.5",
            "boto3": "1",
            "aws_lambda_powertools": "3",
        },
        config={"mode": "quick", "runs": 3, "import_runs": 3, "spacing": 1.0, "sweep_interval": 5.0},
        request_latency=RequestLatency(0.05, summary, summary, summary, summary, [0.1, 0.2, 0.3]),
        workflow_revocation=WorkflowRevocation(
            0.1, summary, summary, summary, summary, summary, summary, 0, 0, [0.1, 0.2, 0.3]
        ),
        sweeper_revocation=SweeperRevocation(5.0, summary, summary, summary, 4, 1, 0, [0.1, 0.2, 0.3]),
        api_calls=ApiCalls([Window("submission", {("iam", "GetRole"): 1}, [phase])]),
        imports=[
            HandlerImport(BASELINE, None, summary, 0.0, 0, []),
            HandlerImport("api", summary, summary, 0.5, 700, [("botocore", 0.1)]),
        ],
    )


def test_the_report_has_every_section_and_the_json_round_trips() -> None:
    results = _results()

    text = render(results)
    decoded = json.loads(to_json(results))

    for heading in ("1. Request -> active grant", "2. Revocation lag", "3. AWS API calls", "4. Cold import"):
        assert heading in text
    assert "GetRole" in text and "FAILED" not in text
    assert decoded["api_calls"]["windows"][0]["emulator"] == [{"key": ["iam", "GetRole"], "count": 1}]
    assert decoded["request_latency"]["active"]["n"] == 3


def _remediation_run(name: str, wall: float, ops: dict[tuple[str, str], tuple[int, float]]) -> object:
    from bench.remediation_bench import Run

    return Run(name, wall, 70.0, {key: n for key, (n, _) in ops.items()}, emulator_ops=ops, emulator_cpu=wall / 2)


def test_the_remediation_bench_takes_each_operations_median_emulator_cpu_over_the_rounds() -> None:
    from bench.remediation_bench import median_run

    # Given three rounds of one contender, one of them without the index write
    revoke, index = ("ec2", "RevokeSecurityGroupIngress"), ("dynamodb", "BatchWriteItem")
    rounds = [
        _remediation_run("scan", 3.0, {revoke: (334, 0.50), index: (1, 0.004)}),
        _remediation_run("scan", 2.0, {revoke: (334, 0.40)}),
        _remediation_run("scan", 4.0, {revoke: (334, 0.90), index: (1, 0.006)}),
    ]
    # When they are summarised
    row = median_run(rounds)  # type: ignore[arg-type]
    # Then each operation has its count and the median of its CPU seconds (a round without it counts 0)
    assert row.emulator_ops == {revoke: (334, 0.50), index: (1, 0.004)}
    assert row.note == "calls differ between runs"
