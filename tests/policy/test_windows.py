"""Time windows and local time: DST-correct, with the 17:59:59 edge."""

from __future__ import annotations

from datetime import datetime

import pytest

from accessctl.policy.windows import TimeWindow, window_state
from accessctl.signals.clock import FixedClock, local_time, zone

BERLIN = zone("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("instant", "weekday", "minute_of_day"),
    [
        ("2027-03-28T00:59:00Z", 7, 1 * 60 + 59),  # 01:59 CET, just before the spring change
        ("2027-03-28T01:00:00Z", 7, 3 * 60),  # 03:00 CEST: 02:xx never happens
        ("2027-10-31T00:30:00Z", 7, 2 * 60 + 30),  # 02:30 CEST, first pass
        ("2027-10-31T01:30:00Z", 7, 2 * 60 + 30),  # 02:30 CET, second pass
    ],
)
def test_given_a_dst_change_day_when_computing_local_time_then_it_follows_the_zone(
    instant: str, weekday: int, minute_of_day: int
) -> None:
    local = local_time(utc(instant), "Europe/Berlin")
    assert (local.weekday, local.minute_of_day) == (weekday, minute_of_day)


def test_given_a_window_across_the_spring_change_when_measuring_then_real_minutes_are_counted() -> None:
    # Sunday 00:00-04:00 local lasts 3 real hours on the day clocks jump from 02:00 to 03:00.
    window = TimeWindow.parse("Sun 00:00-04:00")
    state = window_state((window,), utc("2027-03-28T00:00:00Z"), BERLIN)  # 01:00 CET
    assert state.open
    assert state.minutes_left == 120  # until 04:00 CEST = 02:00 UTC, not 180


def test_given_a_window_across_the_autumn_change_when_measuring_then_the_repeated_hour_counts() -> None:
    window = TimeWindow.parse("Sun 00:00-04:00")
    state = window_state((window,), utc("2027-10-30T23:00:00Z"), BERLIN)  # 01:00 CEST
    assert state.minutes_left == 240  # until 04:00 CET = 03:00 UTC


@pytest.mark.parametrize(
    ("instant", "expected_open", "expected_minutes"),
    [
        ("2027-03-24T16:59:59Z", True, 0),  # 17:59:59 CET: open, but not one whole minute left
        ("2027-03-24T16:59:00Z", True, 1),
        ("2027-03-24T17:00:00Z", False, 0),  # 18:00 CET: end is exclusive
        ("2027-03-24T07:00:00Z", True, 600),  # 08:00 CET: start is inclusive
        ("2027-03-29T15:59:00Z", True, 1),  # 17:59 CEST after the change
    ],
)
def test_given_the_dba_window_when_near_its_edges_then_open_and_minutes_left_are_exact(
    instant: str, expected_open: bool, expected_minutes: int
) -> None:
    state = window_state((TimeWindow.parse("Mon-Fri 08:00-18:00"),), utc(instant), BERLIN)
    assert (state.open, state.minutes_left) == (expected_open, expected_minutes)


def test_given_an_overnight_window_when_after_midnight_then_it_belongs_to_the_start_day() -> None:
    window = TimeWindow.parse("Fri 22:00-06:00")
    assert window_state((window,), utc("2027-03-27T04:00:00Z"), BERLIN).minutes_left == 60  # Sat 05:00 CET
    assert not window_state((window,), utc("2027-03-28T03:00:00Z"), BERLIN).open  # Sun 05:00 CEST


@pytest.mark.parametrize(
    "spec",
    ["Mon-Fri 8:00-18:00", "Funday 08:00-18:00", "Mon-Fri 08:00-08:00", "Mon 25:00-26:00", "Mon 08:60-09:00", ""],
)
def test_given_a_malformed_window_when_parsing_then_it_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        TimeWindow.parse(spec)


def test_given_a_naive_datetime_when_used_as_a_clock_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        FixedClock(datetime(2027, 3, 24, 10, 0))
