"""Local schedules: rate expressions, overridable cadence, synchronous fire."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from accessctl_local import LocalStack
from accessctl_local.provision import ScheduleSpec
from accessctl_local.runtime import FunctionSpec, LambdaRuntime
from accessctl_local.schedules import LocalScheduler, UnsupportedSchedule, rate_seconds

ARN = "arn:aws:lambda:us-east-1:123456789012:function:sweeper"


def test_rate_expressions() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(2 hours)") == 7200
    with pytest.raises(UnsupportedSchedule):
        rate_seconds("cron(0 12 * * ? *)")


def test_fire_schedule_runs_the_target_once_now(stack: LocalStack) -> None:
    # Given the template's ScheduleV2 on the sweep function
    before = stack.invocation_counts().get("SweepFunction", 0)
    # When fired by the function's logical id, then by the schedule's
    first = stack.fire_schedule("SweepFunction")
    second = stack.fire_schedule("SweepFunctionSweep")
    # Then the sweep handler ran twice, synchronously
    assert not first.errored and not second.errored
    assert second.payload["swept"] == first.payload["swept"] + 1
    assert stack.invocation_counts()["SweepFunction"] == before + 2


def _runtime(tmp_path: Path, calls: list[Any], ran: threading.Event) -> LambdaRuntime:
    (tmp_path / "app.py").write_text("def lambda_handler(event, context):\n    return 'ok'\n")
    runtime = LambdaRuntime()
    runtime.register(FunctionSpec("Sweeper", "sweeper", ARN, tmp_path, "app.lambda_handler"))

    def record(event: Any, context: Any) -> None:
        calls.append(event)
        if len(calls) >= 3:
            ran.set()

    runtime.inject_failure("Sweeper", before=record, times=1000)
    return runtime


def test_the_background_thread_keeps_the_overridden_cadence_until_stopped(tmp_path: Path) -> None:
    # Given a one-minute schedule overridden to run every 10 ms
    calls: list[Any] = []
    ran = threading.Event()
    scheduler = LocalScheduler(
        [ScheduleSpec("Sweep", "rate(1 minute)", ARN)],
        _runtime(tmp_path, calls, ran),
        "us-east-1",
        "123456789012",
        0.01,
    )
    # When started
    scheduler.start()
    try:
        assert ran.wait(30)
    finally:
        scheduler.stop()
    # Then it ran repeatedly with the Scheduler's empty payload, and stops for good
    count = len(calls)
    assert count >= 3 and all(c == {} for c in calls)
    assert scheduler._thread is None
    assert len(calls) == count


def test_cron_schedules_only_run_when_fired(tmp_path: Path) -> None:
    calls: list[Any] = []
    schedule = ScheduleSpec("Nightly", "cron(0 3 * * ? *)", ARN, input='{"mode": "full"}')
    scheduler = LocalScheduler([schedule], _runtime(tmp_path, calls, threading.Event()), "us-east-1", "123456789012")
    scheduler.start()
    assert scheduler._thread is None
    scheduler.fire("Nightly")
    assert calls == [{"mode": "full"}]


def test_eventbridge_rule_targets_get_a_scheduled_event(tmp_path: Path) -> None:
    calls: list[Any] = []
    schedule = ScheduleSpec("Rule", "rate(5 minutes)", ARN, source="events", arn="arn:aws:events:us-east-1:1:rule/r")
    LocalScheduler([schedule], _runtime(tmp_path, calls, threading.Event()), "us-east-1", "123456789012").fire(
        "sweeper"
    )
    assert calls[0]["detail-type"] == "Scheduled Event" and calls[0]["resources"] == [
        "arn:aws:events:us-east-1:1:rule/r"
    ]
