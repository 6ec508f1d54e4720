"""The audit outbox: records whose chained append failed go to the template's outbox queue and are
appended later, once, by the outbox's consumer (the real handler, in the emulated account)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Estate
from tests.support.handlers import FakeLambdaContext, load_handler
from tests.support.template import resources

SUBJECT = "security-group/sg-0outbox"


def _dynamodb_unavailable(operation: str) -> ClientError:
    error = {
        "Error": {"Code": "InternalServerError", "Message": "injected"},
        "ResponseMetadata": {"HTTPStatusCode": 500},
    }
    return ClientError(error, operation)  # type: ignore[arg-type]


class FailingTransactions:
    """A DynamoDB client whose TransactWriteItems calls number ``failing`` (1-based) fail.

    ``after_commit``: the call is made first and its answer is lost (the chunk did commit).
    """

    def __init__(self, client: Any, failing: set[int], *, after_commit: bool = False) -> None:
        self._client, self._failing, self._after_commit = client, failing, after_commit
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        if name != "transact_write_items":
            return getattr(self._client, name)

        def maybe_fail(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls not in self._failing:
                return self._client.transact_write_items(**kwargs)
            if self._after_commit:
                self._client.transact_write_items(**kwargs)
            raise _dynamodb_unavailable("TransactWriteItems")

        return maybe_fail


@pytest.fixture
def outbox_url(estate: Estate) -> str:
    """The template's outbox queue (its attributes as deployed), with its dead-letter queue."""
    sqs = estate.session.client("sqs")
    queues = resources("AWS::SQS::Queue")
    dead = sqs.create_queue(QueueName="audit-outbox-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    properties = queues["AuditOutboxQueue"]["Properties"]
    attributes = {
        "VisibilityTimeout": str(properties["VisibilityTimeout"]),
        "MessageRetentionPeriod": str(properties["MessageRetentionPeriod"]),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dead_arn, "maxReceiveCount": properties["RedrivePolicy"]["maxReceiveCount"]}
        ),
    }
    return str(sqs.create_queue(QueueName="audit-outbox", Attributes=attributes)["QueueUrl"])


@pytest.fixture
def consumer(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real ReplayAuditOutboxFunction handler, on the emulated audit table."""
    monkeypatch.setenv("AUDIT_TABLE", "audit")
    from accessctl.audit_outbox import default_replayer

    default_replayer.cache_clear()
    yield load_handler("replay_audit_outbox")
    default_replayer.cache_clear()


def _table(estate: Estate, client: Any, outbox_url: str | None, max_attempts: int = 2) -> Any:
    from accessctl.audit_outbox import AuditOutbox
    from accessctl.remediation.audit_table import AuditTable

    outbox = AuditOutbox(estate.session.client("sqs"), outbox_url) if outbox_url else None
    return AuditTable(client, "audit", max_attempts=max_attempts, outbox=outbox)


def _write_batch(table: Any, count: int, subject: str = SUBJECT) -> None:
    from accessctl.audit import AuditLog
    from accessctl.models import AuditEventType

    log = AuditLog(table)
    with table.batched():
        for n in range(count):
            log.append(AuditEventType.REMEDIATION_APPLIED, subject=subject, actor="remediator", details={"n": n})


def _receive(estate: Estate, outbox_url: str) -> list[dict[str, Any]]:
    """Every message now in the queue, as Lambda's SQS event source hands them over (one batch)."""
    sqs = estate.session.client("sqs")
    records: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=outbox_url, MaxNumberOfMessages=10).get("Messages", []):
        records += [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:audit-outbox",
                "awsRegion": "us-east-1",
            }
            for message in batch
        ]
    return records


def _consume(consumer: Any, records: list[dict[str, Any]]) -> list[str]:
    """Invoke the consumer with one batch; the message ids it reports as failed."""
    answer = consumer.lambda_handler({"Records": records}, FakeLambdaContext())
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def _stored(estate: Estate, subject: str = SUBJECT) -> list[Any]:
    return estate.deps.audit.for_subject(subject)


def test_given_a_chunk_that_fails_after_the_fixes_when_the_outbox_is_consumed_then_every_record_is_in_the_chain_once(
    estate: Estate, outbox_url: str, consumer: Any
) -> None:
    from accessctl.audit import verify
    from accessctl.audit_query import AuditFilter, query_all

    # Given a scan's batch of 120 records whose first transaction fails (DynamoDB unavailable past the retries)
    dynamodb = FailingTransactions(estate.session.client("dynamodb"), failing={1})
    table = _table(estate, dynamodb, outbox_url)

    # When the batch is written: no error, the other 70 are in the chain, the 50 wait in the outbox
    _write_batch(table, 120)
    assert len(_stored(estate)) == 70
    messages = _receive(estate, outbox_url)
    assert sum(len(json.loads(m["body"])["records"]) for m in messages) == 50

    # When the outbox is consumed
    assert _consume(consumer, messages) == []

    # Then every record is in the table once, the chain holds, and the query by group finds all 120
    stored = _stored(estate)
    assert sorted(record.details["n"] for record in stored) == list(range(120))
    assert sorted(record.sequence or 0 for record in stored) == list(range(1, 121))
    since, until = min(r.at for r in stored), max(r.at for r in stored)
    report = verify(estate.deps.audit.table, since, until)
    assert report.ok and report.records == 120, report
    found = query_all(estate.deps.audit.table, AuditFilter(subject=SUBJECT, since=since, until=until, limit=1000))
    assert len(found) == 120
    # and the replayed 50 kept their original times: they were made before the 70 written first
    replayed = sorted((r for r in stored if r.details["n"] < 50), key=lambda r: r.details["n"])
    assert [r.at for r in replayed] == sorted(r.at for r in replayed)
    assert max(r.at for r in replayed) < min(r.at for r in stored if r.details["n"] >= 50)
    assert min(r.sequence or 0 for r in replayed) == 71  # chained after the others, at the head


def test_given_a_chunk_that_committed_but_whose_answer_was_lost_when_replayed_then_nothing_is_written_twice(
    estate: Estate, outbox_url: str, consumer: Any
) -> None:
    from accessctl.audit import verify

    # Given a batch whose first transaction commits but whose answer never arrives
    dynamodb = FailingTransactions(estate.session.client("dynamodb"), failing={1}, after_commit=True)
    _write_batch(_table(estate, dynamodb, outbox_url), 60)
    assert len(_stored(estate)) == 60
    messages = _receive(estate, outbox_url)
    assert len(messages) == 1

    # When the outbox is consumed, and the same message is delivered again
    assert _consume(consumer, messages) == []
    assert _consume(consumer, messages) == []

    # Then each record is in the table once, and the chain holds
    stored = _stored(estate)
    assert sorted(record.details["n"] for record in stored) == list(range(60))
    assert verify(estate.deps.audit.table, stored[0].at, stored[-1].at).ok


def test_given_a_record_written_at_once_that_fails_when_the_outbox_is_consumed_then_it_is_in_the_chain(
    estate: Estate, outbox_url: str, consumer: Any
) -> None:
    from accessctl.audit import AuditLog, verify
    from accessctl.models import AuditEventType

    # Given the event path's single write failing
    table = _table(estate, FailingTransactions(estate.session.client("dynamodb"), failing={1}), outbox_url)
    event = AuditLog(table).append(AuditEventType.REMEDIATION_APPLIED, subject=SUBJECT, actor="remediator")
    assert event.record_hash is None and _stored(estate) == []  # not chained: deferred

    # When the outbox is consumed
    assert _consume(consumer, _receive(estate, outbox_url)) == []

    # Then it is in the chain, with its own id and time
    (stored,) = _stored(estate)
    assert (stored.event_id, stored.at) == (event.event_id, event.at)
    assert verify(estate.deps.audit.table, stored.at, stored.at).ok


def test_given_the_outbox_unreachable_too_when_a_chunk_fails_then_the_loss_is_reported_with_its_count(
    estate: Estate,
) -> None:
    from accessctl.remediation.audit_table import AuditBatchError

    # Given an outbox queue that does not exist (SQS refuses every send), and a failing first transaction
    dynamodb = FailingTransactions(estate.session.client("dynamodb"), failing={1})
    table = _table(estate, dynamodb, "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue")

    # When 120 records are written, then the 50 neither written nor deferred are reported
    with pytest.raises(AuditBatchError, match="50 of 120 records not written") as raised:
        _write_batch(table, 120)
    assert raised.value.lost == 50
    assert len(_stored(estate)) == 70


def test_given_the_outbox_unreachable_when_a_single_record_fails_then_it_is_reported_lost(estate: Estate) -> None:
    from accessctl.audit import AuditLog
    from accessctl.models import AuditEventType
    from accessctl.remediation.audit_table import AuditNotWritten

    table = _table(
        estate,
        FailingTransactions(estate.session.client("dynamodb"), failing={1}),
        "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue",
    )
    with pytest.raises(AuditNotWritten, match="1 records not written") as raised:
        AuditLog(table).append(AuditEventType.REMEDIATION_APPLIED, subject=SUBJECT, actor="remediator")
    assert raised.value.lost == 1


def _valid_body(estate: Estate, outbox_url: str) -> str:
    table = _table(estate, FailingTransactions(estate.session.client("dynamodb"), failing={1}), outbox_url)
    _write_batch(table, 2)
    (message,) = _receive(estate, outbox_url)
    return str(message["body"])


def _edited(body: str, change: Any) -> str:
    message = json.loads(body)
    change(message)
    return json.dumps(message)


BAD_MESSAGES = {
    "not JSON": lambda body: body[:-5],
    "another format": lambda body: _edited(body, lambda m: m.update(format="something/1")),
    "no records": lambda body: _edited(body, lambda m: m.update(records=[])),
    "chain attributes": lambda body: _edited(body, lambda m: m["records"][1].update(sequence=1, record_hash="0" * 64)),
    "an event key not of its time and id": lambda body: _edited(body, lambda m: m["records"][0].update(event_key="x")),
    "not an audit record": lambda body: _edited(body, lambda m: m["records"][0].pop("event_type")),
    "unknown encoding": lambda body: _edited(body, lambda m: m.update(encoding="zip")),
}


@pytest.mark.parametrize("bad", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_given_a_message_that_is_not_an_outbox_message_then_it_fails_alone_and_nothing_is_written(
    estate: Estate, outbox_url: str, consumer: Any, bad: Any
) -> None:
    from accessctl.audit_outbox import OutboxMessageError, OutboxReplayer

    # Given a valid outbox message of 2 records, and a bad one made from it
    body = _valid_body(estate, outbox_url)
    replayer = OutboxReplayer(estate.session.client("dynamodb"), "audit")

    # When the bad one is replayed, then it is refused with the reason and nothing is written
    with pytest.raises(OutboxMessageError):
        replayer.replay(bad(body))
    assert _stored(estate) == []

    # And in a batch with the valid one, only the bad one fails (it comes back, then dead-letters)
    good = {"messageId": "good", "body": body, "receiptHandle": "r1", "attributes": {}, "eventSource": "aws:sqs"}
    wrong = {**good, "messageId": "bad", "body": bad(body), "receiptHandle": "r2"}
    assert _consume(consumer, [good, wrong]) == ["bad"]
    assert len(_stored(estate)) == 2


def test_given_records_too_large_for_one_message_then_they_are_split_and_a_huge_one_travels_compressed() -> None:
    from accessctl.audit import event_item
    from accessctl.audit_outbox import GZIP, MAX_MESSAGE_BYTES, encode_messages, parse_message
    from accessctl.models import AuditEvent, AuditEventType

    def record(n: int, size: int) -> dict[str, Any]:
        at = f"2026-12-04T10:00:00.{n:06d}Z"
        event = AuditEvent(
            event_id=f"id-{n}", event_type=AuditEventType.REMEDIATION_APPLIED, at=at, subject=SUBJECT,
            actor="remediator", details={"before": "x" * size},
        )  # fmt: skip
        return event_item(event)

    # Given 50 records of 20 kB and one of 300 kB (larger than any SQS message)
    records = [record(n, 20_000) for n in range(50)] + [record(50, 300_000)]

    # When they are encoded
    messages = encode_messages(records, "InternalServerError: injected")

    # Then every message fits, the records come back in order, and the huge one is compressed
    assert all(len(body.encode()) <= MAX_MESSAGE_BYTES for body, _ in messages)
    decoded = [item for body, _ in messages for item in parse_message(body)]
    assert decoded == records
    assert sum(count for _, count in messages) == 51
    assert json.loads(messages[-1][0])["encoding"] == GZIP


def test_given_a_record_deferred_yesterday_when_replayed_today_then_it_verifies_and_is_found_at_its_time(
    estate: Estate,
) -> None:
    """Replayed records are chained in the day they are appended in: yesterday's chain (which may
    have been exported and anchored already) is left as it was."""
    from datetime import UTC, datetime, timedelta

    from accessctl.audit import AuditLog, event_item, verify
    from accessctl.audit_outbox import OutboxReplayer, encode_messages
    from accessctl.audit_query import AuditFilter, query_all
    from accessctl.models import AuditEvent, AuditEventType

    # Given a record of a fix made yesterday (its write failed then), and a record of today for the same group
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    yesterdays_chain = verify(estate.deps.audit.table, yesterday, yesterday)
    deferred = event_item(
        AuditEvent(
            event_id="0b5e2d1c-0000-4000-8000-000000000001",
            event_type=AuditEventType.REMEDIATION_APPLIED,
            at=yesterday,
            subject=SUBJECT,
            actor="remediator",
        )
    )
    today = AuditLog(estate.deps.audit.table).append(AuditEventType.REMEDIATION_FINDING, subject=SUBJECT, actor="x")
    ((body, _),) = encode_messages([deferred], "InternalServerError: injected")

    # When it is replayed today
    result = OutboxReplayer(estate.session.client("dynamodb"), "audit").replay(body)

    # Then it is chained after today's record, in today's stream, which verifies; yesterday's chain is
    # unchanged; and the query for yesterday finds it at its own time, not today's record
    assert (result.replayed, result.already_written) == (1, 0)
    report = verify(estate.deps.audit.table, yesterday, today.at)
    assert report.ok and report.records == 2, report
    assert verify(estate.deps.audit.table, yesterday, yesterday).records == yesterdays_chain.records == 0
    found = query_all(estate.deps.audit.table, AuditFilter(subject=SUBJECT, since=yesterday, until=yesterday))
    assert [(event.event_id, event.at, event.stream, event.sequence) for event in found] == [
        (deferred["event_id"], yesterday, today.stream, (today.sequence or 0) + 1)
    ]
