"""Local stand-in for EventBridge Scheduler / scheduled EventBridge rules.

``rate(N minute|minutes|hour|hours|day|days)`` expressions run on a background thread; ``cron(...)``
and ``at(...)`` are reported as unsupported and only run through ``fire``. The interval can be
overridden (tests and demos rarely want to wait a minute) and ``fire`` runs one invocation
synchronously.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .provision import ScheduleSpec
from .runtime import Invocation, LambdaRuntime

log = logging.getLogger(__name__)

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class UnsupportedSchedule(ValueError):
    pass


def rate_seconds(expression: str) -> float:
    """Seconds between runs for a ``rate(...)`` expression."""
    found = _RATE.fullmatch(expression.strip())
    if not found:
        raise UnsupportedSchedule(f"only rate(...) expressions run locally, not {expression!r}")
    count, unit = int(found.group(1)), found.group(2).rstrip("s")
    return float(count * _UNIT_SECONDS[unit])


class LocalScheduler:
    """Fires the stack's schedules at their rate (or an overridden interval) on one background thread."""

    def __init__(
        self,
        schedules: list[ScheduleSpec],
        runtime: LambdaRuntime,
        region: str,
        account_id: str,
        interval_override: float | dict[str, float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schedules = schedules
        self.runtime = runtime
        self.region = region
        self.account_id = account_id
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.intervals: dict[str, float] = {}
        for schedule in schedules:
            override = (
                interval_override.get(schedule.logical_id) if isinstance(interval_override, dict) else interval_override
            )
            if override is not None:
                self.intervals[schedule.logical_id] = float(override)
                continue
            try:
                self.intervals[schedule.logical_id] = rate_seconds(schedule.expression)
            except UnsupportedSchedule as unsupported:
                log.warning("%s: %s; it runs only through fire_schedule()", schedule.logical_id, unsupported)

    def start(self) -> None:
        if self._thread is None and any(s.enabled and s.logical_id in self.intervals for s in self.schedules):
            self._thread = threading.Thread(target=self._loop, name="accessctl-local-schedules", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def find(self, name: str) -> ScheduleSpec:
        """A schedule by its own logical id, or by the target function's logical id, name or ARN."""
        for schedule in self.schedules:
            if schedule.logical_id == name:
                return schedule
        try:
            target_arn = self.runtime.spec(name).function_arn
        except KeyError:
            target_arn = name
        matches = [s for s in self.schedules if s.target_arn == target_arn]
        if len(matches) != 1:
            raise KeyError(f"{name!r} matches {len(matches)} schedules; name the schedule's logical id")
        return matches[0]

    def fire(self, name: str) -> Invocation:
        """Run one scheduled invocation now, in the caller's thread."""
        schedule = self.find(name)
        return self.runtime.invoke(schedule.target_arn, self._event(schedule))

    def _event(self, schedule: ScheduleSpec) -> Any:
        if schedule.input is not None:
            return json.loads(schedule.input) if isinstance(schedule.input, str) else schedule.input
        if schedule.source == "scheduler":
            return {}
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [schedule.arn],
            "detail": {},
        }

    def _loop(self) -> None:
        due = {
            s.logical_id: self._monotonic() + self.intervals[s.logical_id]
            for s in self.schedules
            if s.enabled and s.logical_id in self.intervals
        }
        while not self._stop.is_set():
            now = self._monotonic()
            for logical_id, at in list(due.items()):
                if at <= now:
                    due[logical_id] = now + self.intervals[logical_id]
                    try:
                        result = self.fire(logical_id)
                        if result.errored:
                            log.warning("scheduled %s failed: %s", logical_id, result.payload)
                    except Exception:
                        log.exception("scheduled %s failed", logical_id)
            wait = max(0.0, min(due.values()) - self._monotonic()) if due else 1.0
            self._stop.wait(min(wait, 1.0))
