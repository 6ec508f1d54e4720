"""Device posture: the webhook's signature, window, replay and body checks; staleness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from accessctl.signals.posture import (
    DevicePosture,
    PostureStore,
    WebhookMalformedError,
    WebhookReplayError,
    WebhookSignatureError,
    WebhookStaleError,
    device_signal,
    handle_posture_webhook,
    sign_webhook,
)

NOW = datetime(2027, 3, 24, 9, 0, tzinfo=UTC)
SECRET = "posture-webhook-secret"
RECORD = {
    "device_id": "laptop-1",
    "owner": "alice",
    "managed": True,
    "compliant": True,
    "os_version": "14.5",
    "last_check_in": "2027-03-24T08:55:00Z",
}


@pytest.fixture
def store(aws_environment: None) -> Iterator[PostureStore]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        table = dynamodb.create_table(
            TableName="posture",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield PostureStore(table)


def delivery(
    body: dict[str, object] | bytes = RECORD, *, at: datetime = NOW, secret: str = SECRET
) -> tuple[dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = int(at.timestamp())
    return {"X-Accessctl-Timestamp": str(timestamp), "X-Accessctl-Signature": sign_webhook(secret, timestamp, raw)}, raw


def test_given_a_signed_delivery_when_handled_then_the_posture_is_stored(store: PostureStore) -> None:
    headers, raw = delivery()
    result = handle_posture_webhook(headers, raw, SECRET, store, NOW)
    assert (result.device_id, result.stored) == ("laptop-1", True)
    assert store.get("laptop-1") == DevicePosture.model_validate(RECORD)


def test_given_a_rotated_secret_when_the_sender_still_uses_the_old_one_then_it_is_accepted(store: PostureStore) -> None:
    headers, raw = delivery(secret="old-secret")
    assert handle_posture_webhook(headers, raw, ["new-secret", "old-secret"], store, NOW).stored


def test_given_the_same_delivery_twice_when_handled_then_the_second_is_a_replay(store: PostureStore) -> None:
    headers, raw = delivery()
    handle_posture_webhook(headers, raw, SECRET, store, NOW)
    with pytest.raises(WebhookReplayError, match="replay"):
        handle_posture_webhook(headers, raw, SECRET, store, NOW + timedelta(seconds=30))


def test_given_an_older_posture_when_it_arrives_late_then_the_newer_one_is_kept(store: PostureStore) -> None:
    handle_posture_webhook(*delivery(), SECRET, store, NOW)
    older = {**RECORD, "compliant": False, "last_check_in": "2027-03-24T08:00:00Z"}
    result = handle_posture_webhook(*delivery(older, at=NOW + timedelta(seconds=1)), SECRET, store, NOW)
    assert result.stored is False
    assert store.get("laptop-1").compliant is True  # type: ignore[union-attr]


def _tampered_body() -> tuple[dict[str, str], bytes]:
    headers, _ = delivery()
    return headers, json.dumps({**RECORD, "compliant": True, "owner": "mallory"}).encode()


def _wrong_secret() -> tuple[dict[str, str], bytes]:
    return delivery(secret="guessed")


def _no_signature() -> tuple[dict[str, str], bytes]:
    headers, raw = delivery()
    return {"X-Accessctl-Timestamp": headers["X-Accessctl-Timestamp"]}, raw


def _signature_for_another_timestamp() -> tuple[dict[str, str], bytes]:
    headers, raw = delivery()
    return {**headers, "X-Accessctl-Timestamp": str(int(NOW.timestamp()) + 1)}, raw


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (_tampered_body, WebhookSignatureError, "does not match"),
        (_wrong_secret, WebhookSignatureError, "does not match"),
        (_no_signature, WebhookSignatureError, "missing"),
        (_signature_for_another_timestamp, WebhookSignatureError, "does not match"),
        (lambda: delivery(at=NOW - timedelta(minutes=6)), WebhookStaleError, "outside the 5-minute window"),
        (lambda: delivery(at=NOW + timedelta(minutes=6)), WebhookStaleError, "outside the 5-minute window"),
        (
            lambda: ({"X-Accessctl-Timestamp": "yesterday", "X-Accessctl-Signature": "v1=00"}, b"{}"),
            WebhookMalformedError,
            "Unix seconds",
        ),
        (lambda: delivery(b"not json"), WebhookMalformedError, "not a device posture record"),
        (lambda: delivery({**RECORD, "managed": "maybe"}), WebhookMalformedError, "managed"),
        (lambda: delivery({**RECORD, "device_id": "../etc"}), WebhookMalformedError, "device_id"),
        (lambda: delivery({**RECORD, "last_check_in": "2027-03-24T08:55:00"}), WebhookMalformedError, "no time zone"),
        (lambda: delivery({**RECORD, "extra": 1}), WebhookMalformedError, "extra"),
    ],
)
def test_given_a_bad_delivery_when_handled_then_it_is_refused_with_a_clear_error(
    store: PostureStore, make: object, error: type[Exception], message: str
) -> None:
    headers, raw = make()  # type: ignore[operator]
    with pytest.raises(error, match=message):
        handle_posture_webhook(headers, raw, SECRET, store, NOW)
    assert store.get("laptop-1") is None


@pytest.mark.parametrize(
    ("age", "compliant"),
    [(timedelta(hours=1), True), (timedelta(hours=23, minutes=59), True), (timedelta(hours=25), False)],
)
def test_given_a_posture_of_some_age_when_read_as_a_signal_then_a_stale_one_is_non_compliant(
    store: PostureStore, age: timedelta, compliant: bool
) -> None:
    store.put(DevicePosture.model_validate({**RECORD, "last_check_in": NOW - age}))
    signal = device_signal(store, "laptop-1", owners={"alice"}, now=NOW, max_age=timedelta(hours=24))
    assert signal.value["compliant"] is compliant  # type: ignore[index]
    if not compliant:
        assert "treated as non-compliant" in (signal.note or "")


@pytest.mark.parametrize(
    ("device_id", "owners", "reason"),
    [
        (None, {"alice"}, "your ID token names no device"),
        ("laptop-9", {"alice"}, "has never reported its posture"),
        ("laptop-1", {"mallory"}, "registered to someone else"),
    ],
)
def test_given_an_unverifiable_device_when_read_as_a_signal_then_it_is_missing_with_the_reason(
    store: PostureStore, device_id: str | None, owners: set[str], reason: str
) -> None:
    store.put(DevicePosture.model_validate(RECORD))
    signal = device_signal(store, device_id, owners=owners, now=NOW)
    assert not signal.present
    assert reason in (signal.missing or "")
