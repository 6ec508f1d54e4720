"""Time: an injectable clock, and local time in a named zone (DST-correct, through zoneinfo)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class FixedClock:
    """A clock that always says the same instant (tests, policy test tables)."""

    instant: datetime

    def __post_init__(self) -> None:
        require_aware(self.instant)

    def now(self) -> datetime:
        return self.instant


def require_aware(instant: datetime) -> datetime:
    """Refuse naive datetimes: a naive time has no defined instant, so no defined local time."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant.isoformat()} has no time zone; give an aware datetime")
    return instant


@cache
def zone(name: str) -> ZoneInfo:
    """The IANA zone, or ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


@dataclass(frozen=True)
class LocalTime:
    timezone: str
    weekday: int  # 1 = Monday ... 7 = Sunday (ISO)
    minute_of_day: int
    date: str
    wall: datetime  # the aware local datetime

    def cedar(self) -> dict[str, object]:
        return {
            "timezone": self.timezone,
            "weekday": self.weekday,
            "minute_of_day": self.minute_of_day,
            "date": self.date,
        }

    def describe(self) -> str:
        return f"{self.wall.strftime('%a %Y-%m-%d %H:%M')} {self.timezone} (UTC{self.wall.strftime('%z')})"


def local_time(instant: datetime, zone_name: str) -> LocalTime:
    """The wall-clock time in ``zone_name`` at ``instant`` (conversion from UTC is always unambiguous)."""
    wall = require_aware(instant).astimezone(zone(zone_name))
    return LocalTime(
        timezone=zone_name,
        weekday=wall.isoweekday(),
        minute_of_day=wall.hour * 60 + wall.minute,
        date=wall.date().isoformat(),
        wall=wall,
    )
