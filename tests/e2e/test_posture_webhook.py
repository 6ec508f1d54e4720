"""The MDM/EDR's view: signed posture deliveries over HTTP to the local stack."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from accessctl.signals.posture import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from accessctl_local import LocalStack
from tests.support.template import PROJECT_ROOT

pytestmark = [pytest.mark.e2e]
SECRET = "posture-webhook-test-key"  # not a secret: the emulator's


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.start(project_root=PROJECT_ROOT, run_schedules=False) as running:
        running.client("secretsmanager").create_secret(Name="accessctl/posture-webhook", SecretString=SECRET)
        yield running


def deliver(stack: LocalStack, body: bytes, *, timestamp: int | None = None, secret: str = SECRET) -> tuple[int, dict]:  # type: ignore[type-arg]
    timestamp = int(time.time()) if timestamp is None else timestamp
    request = urllib.request.Request(
        f"{stack.api_url}/posture",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_webhook(secret, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def posture(device_id: str = "laptop-1", **fields: object) -> bytes:
    record = {
        "device_id": device_id,
        "owner": "alice@example.com",
        "managed": True,
        "compliant": True,
        "os_version": "14.6",
        "last_check_in": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    }
    return json.dumps(record).encode()


def stored(stack: LocalStack, device_id: str) -> dict | None:  # type: ignore[type-arg]
    table = stack.resources["PostureTable"]
    item = stack.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"DEVICE#{device_id}"}}).get("Item")
    return item


def test_given_a_signed_delivery_when_posted_then_the_posture_is_stored(stack: LocalStack) -> None:
    status, answer = deliver(stack, posture())

    assert status == 202, answer
    item = stored(stack, "laptop-1")
    assert item is not None and item["compliant"] == {"BOOL": True}


def test_given_the_same_delivery_twice_when_posted_then_the_replay_is_refused(stack: LocalStack) -> None:
    body = posture("laptop-2")
    timestamp = int(time.time())
    first, _ = deliver(stack, body, timestamp=timestamp)

    second, answer = deliver(stack, body, timestamp=timestamp)

    assert (first, second) == (202, 409)
    assert "replay" in answer["message"].lower() or "already" in answer["message"].lower()


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"secret": "wrong-key"}, 401),
        ({"timestamp": int(time.time()) - 3600}, 401),
    ],
    ids=["bad signature", "stale timestamp"],
)
def test_given_a_forged_or_stale_delivery_when_posted_then_refused_and_nothing_stored(
    stack: LocalStack,
    change: dict,
    status: int,  # type: ignore[type-arg]
) -> None:
    got, _ = deliver(stack, posture("laptop-3"), **change)

    assert got == status
    assert stored(stack, "laptop-3") is None


def test_given_a_signed_body_that_is_not_a_posture_record_then_400(stack: LocalStack) -> None:
    status, answer = deliver(stack, b'{"device_id": "x"}')

    assert status == 400, answer
