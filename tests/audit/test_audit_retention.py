"""Retention: records leave by DynamoDB's TTL, and verification tells that from a deletion."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from accessctl.audit import verify
from tests.audit.support import at, delete_link, delete_record, write
from tests.conftest import Estate

DAY = "2026-06-01"
# Four records of one stream, two hours apart; 30 days' retention.
TIMES = [f"{DAY}T{hour:02d}:00:00.000000Z" for hour in (10, 12, 14, 16)]


@pytest.fixture
def table(estate: Estate) -> Any:
    return estate.deps.audit.table


@pytest.fixture
def records(table: Any) -> list[dict[str, Any]]:
    return [write(table, instant) for instant in TIMES]


def _expiry(item: dict[str, Any]) -> int:
    return int(item["retain_until"])


def test_given_retention_when_written_then_record_and_link_carry_the_same_retain_until(
    table: Any, records: list[dict[str, Any]]
) -> None:
    first = records[0]
    link = table.get_item(Key={"subject": f"CHAIN#{first['stream']}", "event_key": "000000000001"})["Item"]

    assert _expiry(first) == int((at(TIMES[0]) + timedelta(days=30)).timestamp())
    assert int(link["retain_until"]) == _expiry(first)


def test_given_no_retention_when_written_then_no_ttl_attribute_and_every_gap_is_a_deletion(table: Any) -> None:
    kept = [write(table, instant, retention_days=0) for instant in TIMES]
    delete_record(table, kept[1])
    delete_link(table, kept[1])

    report = verify(table, DAY, DAY, now=at(TIMES[0]) + timedelta(days=3650))

    assert "retain_until" not in kept[0]
    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("missing", 2)


def test_given_records_inside_retention_when_one_is_deleted_then_it_is_still_found(
    table: Any, records: list[dict[str, Any]]
) -> None:
    delete_record(table, records[1])
    delete_link(table, records[1])

    report = verify(table, DAY, DAY, now=at(TIMES[-1]) + timedelta(days=29))

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("missing", 2)


def test_given_expired_records_removed_by_ttl_in_any_order_when_verified_then_no_break(
    table: Any, records: list[dict[str, Any]]
) -> None:
    # Given the day past retention; TTL took records 1-3, link 1 and link 3, but not yet link 2 or record 4
    now = at(TIMES[2]) + timedelta(days=30, minutes=1)
    for item in records[:3]:
        delete_record(table, item)
    delete_link(table, records[0])
    delete_link(table, records[2])

    # When verified
    report = verify(table, DAY, DAY, now=now)

    # Then the gaps count as expiry, and what is left still verifies
    assert report.ok, report.first_break
    assert (report.expired, report.records) == (3, 1)


def test_given_a_day_wholly_expired_and_removed_when_verified_then_nothing_is_reported(
    table: Any, records: list[dict[str, Any]]
) -> None:
    for item in records:
        delete_record(table, item)
        delete_link(table, item)

    assert verify(table, DAY, DAY, now=at(TIMES[-1]) + timedelta(days=31)).ok


def test_given_an_expiring_day_when_an_unexpired_record_and_its_link_are_deleted_then_it_is_found(
    table: Any, records: list[dict[str, Any]]
) -> None:
    # Given record 1 expired and removed; record 3 (14:00) is hours from expiry, but someone deletes it
    now = at(TIMES[0]) + timedelta(days=30, minutes=30)
    delete_record(table, records[0])
    delete_link(table, records[0])
    delete_record(table, records[2])
    delete_link(table, records[2])

    report = verify(table, DAY, DAY, now=now)

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("missing", 3)


def test_given_an_expiring_day_when_a_record_is_deleted_but_its_link_says_it_is_unexpired_then_it_is_found(
    table: Any, records: list[dict[str, Any]]
) -> None:
    now = at(TIMES[1]) + timedelta(days=30, minutes=30)  # records 1 and 2 expired
    delete_record(table, records[3])

    report = verify(table, DAY, DAY, now=now)

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("missing", 4)


def test_given_an_expiring_day_when_a_surviving_record_is_edited_then_it_is_found(
    table: Any, records: list[dict[str, Any]]
) -> None:
    now = at(TIMES[0]) + timedelta(days=30, minutes=30)
    delete_record(table, records[0])
    target = records[2]
    table.update_item(
        Key={"subject": target["subject"], "event_key": target["event_key"]},
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": "someone else"},
    )

    report = verify(table, DAY, DAY, now=now)

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("edited", 3)


def test_given_a_shortened_retention_when_verified_then_it_is_an_edit(
    table: Any, records: list[dict[str, Any]]
) -> None:
    # retain_until is hashed: making a record expire early (to have TTL delete it) breaks its hash
    target = records[1]
    table.update_item(
        Key={"subject": target["subject"], "event_key": target["event_key"]},
        UpdateExpression="SET retain_until = :r",
        ExpressionAttributeValues={":r": 1},
    )

    report = verify(table, DAY, DAY, now=at(TIMES[-1]))

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("edited", 2)


# Six records of one stream under one day's retention: two early in the day, four later.
SHORT_TIMES = [f"{DAY}T{hour:02d}:00:00.000000Z" for hour in (1, 2, 10, 12, 20, 22)]


@pytest.fixture
def short_lived(table: Any) -> list[dict[str, Any]]:
    return [write(table, instant, retention_days=1) for instant in SHORT_TIMES]


def _expire(table: Any, item: dict[str, Any]) -> None:
    """DynamoDB's TTL: the record and its link both carry retain_until, and both go."""
    delete_record(table, item)
    delete_link(table, item)


def test_given_the_first_records_and_their_links_expired_when_verified_days_later_then_no_break(
    table: Any, short_lived: list[dict[str, Any]]
) -> None:
    # Given records 1, 2 and 4 removed with their links by TTL, and the day long past retention
    for item in (short_lived[0], short_lived[1], short_lived[3]):
        _expire(table, item)

    # When verified several days later
    report = verify(table, DAY, DAY, now=at(SHORT_TIMES[-1]) + timedelta(days=5))

    # Then the expired prefix and the expired record inside it are accepted, the rest verifies
    assert report.ok, report.first_break
    assert (report.expired, report.records) == (3, 3)


def test_given_an_expired_prefix_when_an_unexpired_record_and_its_link_are_deleted_then_it_is_found_at_its_position(
    table: Any, short_lived: list[dict[str, Any]]
) -> None:
    # Given records 1 and 2 expired and removed with their links; record 4 (12:00) has hours left
    now = at(SHORT_TIMES[1]) + timedelta(days=1, minutes=30)
    for item in short_lived[:2]:
        _expire(table, item)
    # When someone deletes record 4 and its link
    _expire(table, short_lived[3])

    report = verify(table, DAY, DAY, now=now)

    # Then the deletion is reported at 4, not the expired prefix
    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("missing", 4)
    assert report.expired == 2


def test_given_an_expired_prefix_when_an_unexpired_record_is_edited_then_it_is_found_at_its_position(
    table: Any, short_lived: list[dict[str, Any]]
) -> None:
    now = at(SHORT_TIMES[1]) + timedelta(days=1, minutes=30)
    for item in short_lived[:2]:
        _expire(table, item)
    target = short_lived[4]
    table.update_item(
        Key={"subject": target["subject"], "event_key": target["event_key"]},
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": "someone else"},
    )

    report = verify(table, DAY, DAY, now=now)

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("edited", 5)


def test_given_an_expired_prefix_when_the_last_record_is_deleted_then_the_tail_is_found(
    table: Any, short_lived: list[dict[str, Any]]
) -> None:
    # Given the expired prefix gone; the last record (22:00, unexpired) deleted by hand, its link left
    now = at(SHORT_TIMES[1]) + timedelta(days=1, minutes=30)
    for item in short_lived[:2]:
        _expire(table, item)
    delete_record(table, short_lived[-1])

    report = verify(table, DAY, DAY, now=now)

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("missing", 6)


def test_given_an_expired_prefix_when_the_last_record_and_its_link_are_deleted_then_the_tail_is_found(
    table: Any, short_lived: list[dict[str, Any]]
) -> None:
    # Given the expired prefix gone; the last record and its link deleted by hand: the link before it
    # no longer ends the chain, and the record before it must still match that link
    now = at(SHORT_TIMES[1]) + timedelta(days=1, minutes=30)
    for item in short_lived[:2]:
        _expire(table, item)
    _expire(table, short_lived[-1])
    penultimate = short_lived[-2]
    table.update_item(
        Key={"subject": penultimate["subject"], "event_key": penultimate["event_key"]},
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": "someone else"},
    )

    report = verify(table, DAY, DAY, now=now)

    assert report.first_break is not None and (report.first_break.kind, report.first_break.sequence) == ("edited", 5)


def test_given_a_record_appended_hours_after_its_time_when_the_records_before_it_expire_then_no_break(
    table: Any, records: list[dict[str, Any]]
) -> None:
    # Given a record of the day before, 09:00, whose write failed then, appended (replayed) at 17:00
    # after the 16:00 one: the next in this day's stream
    late = write(table, "2026-05-31T09:00:00.000000Z", chained_at=f"{DAY}T17:00:00.000000Z")
    assert (late["stream"], int(late["sequence"])) == (records[-1]["stream"], 5)

    # When the day's retention has passed for every record but the late one: TTL took records 1-4 and
    # their links (the late one's retention counts from its append, so it outlives them)
    now = at(TIMES[-1]) + timedelta(days=30, minutes=1)
    for item in records:
        delete_record(table, item)
        delete_link(table, item)
    report = verify(table, DAY, DAY, now=now)

    # Then the gaps are expiry (bounded from when the late record was chained, not from its time), the
    # late record verifies, and it expires last
    assert report.ok, report.first_break
    assert (report.expired, report.records) == (4, 1)
    assert _expiry(late) == int((at(f"{DAY}T17:00:00.000000Z") + timedelta(days=30)).timestamp())
    assert (late["at"], late["chained_at"]) == ("2026-05-31T09:00:00.000000Z", f"{DAY}T17:00:00.000000Z")
