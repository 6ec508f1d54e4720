"""Time windows such as ``Mon-Fri 08:00-18:00``, evaluated in a named zone, DST-correct.

A window's start and end are wall-clock times on the days named; ``24:00`` is the end of the
day, and an end at or before the start runs past midnight (the day named is the start's day).
On DST change days the window follows the wall clock: a start or end inside the spring-forward
gap falls at the same offset as just before the change (02:30 becomes 03:30 CEST); in the
repeated autumn hour the first occurrence counts. Durations are measured in real (UTC) time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from accessctl.signals.clock import require_aware

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{2}:\d{2})\s*-\s*(?P<end>\d{2}:\d{2})\s*$")


def _parse_days(text: str) -> frozenset[int]:
    lowered = text.lower()
    if lowered in ("daily", "any", "all"):
        return frozenset(range(1, 8))
    days: set[int] = set()
    for part in lowered.split(","):
        if "-" in part:
            first, last = part.split("-", 1)
            if first not in DAY_NAMES or last not in DAY_NAMES:
                raise ValueError(f"unknown day in {part!r} (use Mon..Sun)")
            start, end = DAY_NAMES.index(first), DAY_NAMES.index(last)
            span = range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)]
            days.update(index + 1 for index in span)
        elif part in DAY_NAMES:
            days.add(DAY_NAMES.index(part) + 1)
        else:
            raise ValueError(f"unknown day {part!r} (use Mon..Sun, ranges like Mon-Fri, or daily)")
    return frozenset(days)


def _parse_minutes(text: str, *, allow_24: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f"{text} is not a time of day")
    return hours * 60 + minutes


@dataclass(frozen=True)
class TimeWindow:
    spec: str
    weekdays: frozenset[int]  # ISO: 1 = Monday
    start_minute: int
    end_minute: int  # may be 1440 (24:00); <= start_minute means it ends the next day

    @classmethod
    def parse(cls, spec: str) -> TimeWindow:
        match = _WINDOW.match(spec)
        if not match:
            raise ValueError(f"window {spec!r} must look like 'Mon-Fri 08:00-18:00'")
        start = _parse_minutes(match["start"], allow_24=False)
        end = _parse_minutes(match["end"], allow_24=True)
        if start == end:
            raise ValueError(f"window {spec!r} is empty (start equals end); use 00:00-24:00 for a whole day")
        return cls(spec=spec.strip(), weekdays=_parse_days(match["days"]), start_minute=start, end_minute=end)

    @property
    def overnight(self) -> bool:
        return self.end_minute <= self.start_minute

    def _bounds(self, start_day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
        start = datetime.combine(start_day, time(self.start_minute // 60, self.start_minute % 60), tzinfo=tz)
        end_day = start_day + timedelta(days=1 if self.overnight or self.end_minute == 1440 else 0)
        end_minute = self.end_minute % 1440
        end = datetime.combine(end_day, time(end_minute // 60, end_minute % 60), tzinfo=tz)
        # Compare and subtract in UTC: arithmetic between datetimes of one ZoneInfo ignores DST.
        return start.astimezone(UTC), end.astimezone(UTC)

    def seconds_left(self, instant: datetime, tz: ZoneInfo) -> float | None:
        """Seconds until this window closes, if ``instant`` is inside it; None when closed."""
        now = require_aware(instant).astimezone(UTC)
        local_day = now.astimezone(tz).date()
        for start_day in (local_day - timedelta(days=1), local_day):
            if start_day.isoweekday() not in self.weekdays:
                continue
            start, end = self._bounds(start_day, tz)
            if start <= now < end:
                return (end - now).total_seconds()
        return None


@dataclass(frozen=True)
class WindowState:
    open: bool
    minutes_left: int  # whole minutes; 0 when closed or when less than a minute remains
    closes_at: datetime | None

    def cedar(self) -> dict[str, object]:
        return {"open": self.open, "minutes_left": self.minutes_left}


def window_state(windows: tuple[TimeWindow, ...], instant: datetime, tz: ZoneInfo) -> WindowState:
    """Open if any window contains ``instant``; minutes left until the latest of those closes."""
    left = [seconds for window in windows if (seconds := window.seconds_left(instant, tz)) is not None]
    if not left:
        return WindowState(open=False, minutes_left=0, closes_at=None)
    seconds = max(left)
    closes_at = require_aware(instant).astimezone(UTC) + timedelta(seconds=seconds)
    return WindowState(open=True, minutes_left=math.floor(seconds / 60), closes_at=closes_at)
