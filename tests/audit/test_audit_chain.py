"""The hash chain: append, verify, and find an edited or deleted record at its position."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.conftest import Estate


@pytest.fixture
def audit(estate: Estate) -> Any:
    return estate.deps.audit


def _append(audit: Any, count: int, subject: str = "req-1") -> list[Any]:
    from accessctl.models import AuditEventType

    return [
        audit.append(AuditEventType.REQUEST_SUBMITTED, subject=subject, actor="tester", details={"n": n})
        for n in range(count)
    ]


def _today(events: list[Any]) -> str:
    return str(events[0].at)


def test_given_appended_records_when_verified_then_the_chain_holds(audit: Any) -> None:
    from accessctl.audit import verify

    events = _append(audit, 5) + _append(audit, 3, subject="req-2")

    assert [event.sequence for event in events[:5]] == [1, 2, 3, 4, 5]
    assert events[1].previous_hash == events[0].record_hash
    report = verify(audit.table, _today(events), _today(events))
    assert report.ok and report.records == 8 and report.first_break is None


def test_given_a_hand_edited_record_when_verified_then_it_is_found_at_its_position(audit: Any) -> None:
    from accessctl.audit import verify

    events = _append(audit, 5)
    target = events[2]
    audit.table.update_item(
        Key={"subject": target.subject, "event_key": f"{target.at}#{target.event_id}"},
        UpdateExpression="SET reason = :r",
        ExpressionAttributeValues={":r": "nothing to see here"},
    )

    report = verify(audit.table, _today(events), _today(events))

    assert not report.ok and report.first_break is not None
    assert (report.first_break.stream, report.first_break.sequence) == (target.stream, 3)
    assert report.first_break.kind == "edited"


def test_given_an_edited_and_rehashed_record_when_verified_then_the_next_one_breaks(audit: Any) -> None:
    from accessctl.audit import record_hash, verify

    events = _append(audit, 4)
    target = events[1]
    key = {"subject": target.subject, "event_key": f"{target.at}#{target.event_id}"}
    item = audit.table.get_item(Key=key)["Item"]
    item["details"] = json.dumps({"n": 99})
    item["record_hash"] = record_hash(item)
    audit.table.put_item(Item=item)

    report = verify(audit.table, _today(events), _today(events))

    assert report.first_break is not None
    assert (report.first_break.sequence, report.first_break.kind) == (3, "previous_hash")


def test_given_a_deleted_record_when_verified_then_it_is_reported_missing_at_its_position(audit: Any) -> None:
    from accessctl.audit import verify

    events = _append(audit, 5)
    target = events[3]
    audit.table.delete_item(Key={"subject": target.subject, "event_key": f"{target.at}#{target.event_id}"})

    report = verify(audit.table, _today(events), _today(events))

    assert report.first_break is not None
    assert (report.first_break.sequence, report.first_break.kind) == (4, "missing")
    assert report.first_break.event_key == f"{target.at}#{target.event_id}"


def test_given_the_last_record_deleted_when_verified_then_the_tail_is_missed(audit: Any) -> None:
    from accessctl.audit import verify

    events = _append(audit, 3)
    target = events[-1]
    audit.table.delete_item(Key={"subject": target.subject, "event_key": f"{target.at}#{target.event_id}"})

    report = verify(audit.table, _today(events), _today(events))

    assert report.first_break is not None and report.first_break.sequence == 3


class _Serialised:
    """moto's DynamoDB is not thread-safe: one call at a time, yet writers still race between reading
    the head and committing (the window the optimistic retry is for)."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self._client, name)

        def locked(**kwargs: Any) -> Any:
            with self._lock:
                return operation(**kwargs)

        return locked


def test_given_concurrent_writers_when_appending_then_every_record_is_chained_once(estate: Estate) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.remediation.audit_table import AuditTable

    audit = AuditLog(AuditTable(_Serialised(estate.session.client("dynamodb")), "audit"))
    written: list[Any] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        events = _append(audit, 10, subject="shared-subject")
        with lock:
            written.extend(events)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(event.sequence for event in written) == list(range(1, 41))
    report = verify(estate.deps.audit.table, _today(written), _today(written))
    assert report.ok and report.records == 40


def test_given_a_remediation_batch_when_written_then_its_records_are_in_the_chain(estate: Estate) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.models import AuditEventType
    from accessctl.remediation.audit_table import AuditTable

    table = AuditTable(estate.session.client("dynamodb"), "audit")
    log = AuditLog(table)
    with table.batched():
        for n in range(60):
            log.append(
                AuditEventType.REMEDIATION_APPLIED, subject="security-group/sg-1", actor="remediator", details={"n": n}
            )
    records = estate.deps.audit.for_subject("security-group/sg-1")

    assert sorted(record.sequence or 0 for record in records) == list(range(1, 61))
    report = verify(estate.deps.audit.table, records[0].at, records[-1].at)
    assert report.ok and report.records == 60


def test_given_a_batch_of_many_chunks_when_written_then_each_stream_head_is_read_once(estate: Estate) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.models import AuditEventType
    from accessctl.remediation.audit_table import AuditTable

    # Given 120 records of one subject (one stream): three transactions
    dynamodb = estate.session.client("dynamodb")
    reads: list[str] = []
    dynamodb.meta.events.register("before-call.dynamodb.Query", lambda **_: reads.append("Query"))
    table = AuditTable(dynamodb, "audit")
    log = AuditLog(table)
    # When they are written as one batch
    with table.batched():
        for n in range(120):
            log.append(
                AuditEventType.REMEDIATION_APPLIED, subject="security-group/sg-1", actor="remediator", details={"n": n}
            )

    # Then the stream's head was read once, not once per transaction, and the chain holds
    assert reads == ["Query"]
    records = estate.deps.audit.for_subject("security-group/sg-1")
    assert sorted(record.sequence or 0 for record in records) == list(range(1, 121))
    assert verify(estate.deps.audit.table, records[0].at, records[-1].at).ok


def test_given_another_writer_between_two_chunks_when_appending_then_the_batch_rereads_and_chains_after_it(
    estate: Estate,
) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.models import AuditEventType
    from accessctl.remediation.audit_table import AuditTable

    # Given a batch of 100 records in one stream, and another writer that appends one record to the
    # same stream right after the batch's first transaction commits
    dynamodb = estate.session.client("dynamodb")
    other = AuditLog(AuditTable(estate.session.client("dynamodb"), "audit"))
    interleaved: list[Any] = []

    def other_writer(**_: Any) -> None:
        if not interleaved:
            interleaved.append(
                other.append(AuditEventType.REMEDIATION_FINDING, subject="security-group/sg-1", actor="someone-else")
            )

    dynamodb.meta.events.register("after-call.dynamodb.TransactWriteItems", other_writer)
    table = AuditTable(dynamodb, "audit")
    log = AuditLog(table)
    # When the batch is written
    with table.batched():
        for n in range(100):
            log.append(
                AuditEventType.REMEDIATION_APPLIED, subject="security-group/sg-1", actor="remediator", details={"n": n}
            )

    # Then every record is in the chain once, the other writer's at sequence 51, and the chain holds
    records = estate.deps.audit.for_subject("security-group/sg-1")
    assert sorted(record.sequence or 0 for record in records) == list(range(1, 102))
    assert interleaved[0].sequence == 51
    assert verify(estate.deps.audit.table, records[0].at, records[-1].at).ok


def test_given_a_batch_open_when_fifty_records_are_collected_then_they_are_written_before_the_block_ends(
    estate: Estate,
) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.models import AuditEventType
    from accessctl.remediation.audit_table import AuditTable

    # Given a batch, and a note of each transaction the batch commits
    dynamodb = estate.session.client("dynamodb")
    committed: list[int] = []
    second_written = threading.Event()

    sizes: list[int] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["TransactItems"]) // 2)

    def done(**_: Any) -> None:
        committed.append(sizes[len(committed)])
        if len(committed) == 2:
            second_written.set()

    dynamodb.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", note)
    dynamodb.meta.events.register("after-call.dynamodb.TransactWriteItems", done)
    table = AuditTable(dynamodb, "audit")
    log = AuditLog(table)
    with table.batched():
        # When 120 records are collected
        for n in range(120):
            log.append(AuditEventType.REMEDIATION_APPLIED, subject=f"security-group/sg-{n % 9}", actor="remediator")
        # Then the first two fifties are written while the block is still open
        assert second_written.wait(timeout=60)
        assert committed == [50, 50]

    # And the last twenty when it ends: every record once, in a chain that holds
    assert committed == [50, 50, 20]
    records = [r for n in range(9) for r in estate.deps.audit.for_subject(f"security-group/sg-{n}")]
    assert len(records) == 120
    assert verify(estate.deps.audit.table, min(r.at for r in records), max(r.at for r in records)).ok


class _CancelsFirstTransaction:
    """Cancels the first TransactWriteItems it sees, as contention that outlasted every retry would."""

    def __init__(self, client: Any) -> None:
        self._client, self._cancelled = client, False

    def __getattr__(self, name: str) -> Any:
        if name != "transact_write_items" or self._cancelled:
            return getattr(self._client, name)

        def cancel(**_: Any) -> Any:
            from botocore.exceptions import ClientError

            self._cancelled = True
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}}
            raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]

        return cancel


def test_given_one_chunk_of_a_batch_failing_then_the_others_are_written_and_the_loss_is_reported(
    estate: Estate,
) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.models import AuditEventType
    from accessctl.remediation.audit_table import AuditBatchError, AuditTable

    # Given a batch whose first transaction is cancelled (one attempt allowed)
    table = AuditTable(_CancelsFirstTransaction(estate.session.client("dynamodb")), "audit", max_attempts=1)
    log = AuditLog(table)
    # When 120 records are written
    with pytest.raises(AuditBatchError, match="50 of 120 records not written"), table.batched():
        for _ in range(120):
            log.append(AuditEventType.REMEDIATION_APPLIED, subject="security-group/sg-1", actor="remediator")

    # Then the other 70 are in the chain, which holds
    records = estate.deps.audit.for_subject("security-group/sg-1")
    assert sorted(record.sequence or 0 for record in records) == list(range(1, 71))
    assert verify(estate.deps.audit.table, records[0].at, records[-1].at).ok
