"""Device posture: records pushed by the MDM's webhook, stored in DynamoDB, read as a signal.

Table layout (one table, partition key ``pk`` (S), TTL attribute ``expires_at_epoch``):
``DEVICE#<device id>`` holds a device's latest posture; ``DELIVERY#<signature>`` remembers a
webhook delivery until its timestamp leaves the acceptance window (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from accessctl.aws import error_code, transient_errors_surface
from accessctl.errors import BadRequestError, ConflictError, NotAuthenticatedError
from accessctl.models import to_iso
from accessctl.signals.clock import require_aware
from accessctl.signals.model import Signal

TIMESTAMP_HEADER = "x-accessctl-timestamp"
SIGNATURE_HEADER = "x-accessctl-signature"
SIGNATURE_VERSION = "v1"
WEBHOOK_WINDOW = timedelta(minutes=5)
DEFAULT_MAX_POSTURE_AGE = timedelta(hours=24)
MAX_BODY_BYTES = 64 * 1024

DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


class WebhookSignatureError(NotAuthenticatedError):
    """Missing or wrong signature."""


class WebhookStaleError(NotAuthenticatedError):
    """The signed timestamp is outside the acceptance window."""


class WebhookReplayError(ConflictError):
    """This exact signed delivery was already accepted."""


class WebhookMalformedError(BadRequestError):
    """Signed correctly, but not a posture record."""


class DevicePosture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    device_id: DeviceId
    owner: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    managed: bool
    compliant: bool
    os_version: Annotated[str, StringConstraints(max_length=64)]
    last_check_in: datetime

    @field_validator("last_check_in")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return require_aware(value).astimezone(UTC)


class PostureStore:
    def __init__(self, table: Any) -> None:
        self._table = table

    def put(self, posture: DevicePosture) -> bool:
        """Store a posture; False if a newer one is already stored (deliveries may arrive out of order)."""
        item = {
            "pk": f"DEVICE#{posture.device_id}",
            "kind": "device",
            **posture.model_dump(mode="json", exclude={"last_check_in"}),
            "last_check_in": to_iso(posture.last_check_in),
        }
        try:
            with transient_errors_surface():
                self._table.put_item(
                    Item=item,
                    ConditionExpression=Attr("pk").not_exists() | Attr("last_check_in").lt(item["last_check_in"]),
                )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, device_id: str) -> DevicePosture | None:
        with transient_errors_surface():
            item = self._table.get_item(Key={"pk": f"DEVICE#{device_id}"}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        fields = {key: item[key] for key in DevicePosture.model_fields if key in item}
        return DevicePosture.model_validate(fields)

    def remember_delivery(self, delivery_key: str, *, now: datetime, keep_until: datetime) -> None:
        """Record a delivery once; a second time raises :class:`WebhookReplayError`.

        The condition also accepts an expired record that DynamoDB's TTL has not deleted yet.
        """
        try:
            with transient_errors_surface():
                self._table.put_item(
                    Item={
                        "pk": f"DELIVERY#{delivery_key}",
                        "kind": "delivery",
                        "expires_at_epoch": int(keep_until.timestamp()),
                    },
                    ConditionExpression=Attr("pk").not_exists() | Attr("expires_at_epoch").lt(int(now.timestamp())),
                )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise WebhookReplayError("this webhook delivery was already accepted (replay)") from error
            raise


# ------------------------------------------------------------------ the signal


def device_signal(
    store: PostureStore,
    device_id: str | None,
    *,
    owners: Collection[str],
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_POSTURE_AGE,
) -> Signal:
    """The device's posture for policies. A stale record counts as non-compliant.

    ``device_id`` must come from a verified source (the ID token's device claim), and the record's
    owner must be the verified human (``owners``: their subject and email), so nobody can borrow
    someone else's compliant device by naming it.
    """
    if not device_id:
        return Signal.absent("your ID token names no device: device posture unknown")
    posture = store.get(device_id)
    if posture is None:
        return Signal.absent(f"device {device_id} has never reported its posture: device posture unknown")
    if posture.owner not in owners:
        return Signal.absent(f"device {device_id} is registered to someone else: device posture unknown")
    age = max(0, int((require_aware(now) - posture.last_check_in).total_seconds()))
    stale = age > max_age.total_seconds()
    compliant = posture.compliant and not stale
    if stale:
        note = (
            f"device {device_id} last reported its posture {age // 3600} h ago "
            f"(at most {int(max_age.total_seconds()) // 3600} h allowed): treated as non-compliant"
        )
    else:
        state = ", ".join(
            ["managed" if posture.managed else "not managed", "compliant" if posture.compliant else "not compliant"]
        )
        note = f"device {device_id}: {state} (reported {age // 60} min ago)"
    return Signal.of(
        {
            "managed": posture.managed,
            "compliant": compliant,
            "os_version": posture.os_version,
            "last_check_in_age_seconds": age,
        },
        f"posture store (MDM webhook, last check-in {to_iso(posture.last_check_in)})",
        note=note,
    )


# ------------------------------------------------------------------ the webhook


class WebhookResult(BaseModel):
    device_id: str
    stored: bool
    detail: str


def sign_webhook(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The signature header value the sender computes: ``v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _verify_signature(headers: Mapping[str, str], raw_body: bytes, secrets: Sequence[str], now: datetime) -> str:
    """The delivery's signature digest, once timestamp and signature check out."""
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    signature_text = _header(headers, SIGNATURE_HEADER)
    if not timestamp_text or not signature_text:
        raise WebhookSignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not timestamp_text.isdigit() or len(timestamp_text) > 12:
        raise WebhookMalformedError(f"{TIMESTAMP_HEADER} must be Unix seconds")
    timestamp = int(timestamp_text)
    if abs(now.timestamp() - timestamp) > WEBHOOK_WINDOW.total_seconds():
        raise WebhookStaleError(
            f"webhook timestamp is outside the {int(WEBHOOK_WINDOW.total_seconds() // 60)}-minute window (stale or clock skew)"
        )
    offered = [part.strip() for part in signature_text.split(",")]
    for secret in secrets:  # more than one while a secret is being rotated
        expected = sign_webhook(secret, timestamp, raw_body)
        for candidate in offered:
            # Constant-time: the comparison time does not tell an attacker how much matched.
            if hmac.compare_digest(candidate.encode(), expected.encode()):
                return expected.removeprefix(f"{SIGNATURE_VERSION}=")
    raise WebhookSignatureError("webhook signature does not match")


def handle_posture_webhook(
    headers: Mapping[str, str],
    raw_body: bytes,
    secret: str | Sequence[str],
    store: PostureStore,
    now: datetime,
) -> WebhookResult:
    """Verify, de-duplicate and store one posture delivery (JSON: a :class:`DevicePosture`).

    Raises :class:`WebhookSignatureError` / :class:`WebhookStaleError` (401),
    :class:`WebhookReplayError` (409) or :class:`WebhookMalformedError` (400).
    """
    require_aware(now)
    if len(raw_body) > MAX_BODY_BYTES:
        raise WebhookMalformedError("webhook body is too large")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets or not all(secrets):
        raise ValueError("a webhook secret is required")
    digest = _verify_signature(headers, raw_body, secrets, now)
    # Authenticated; now make sure this exact delivery is used once.
    store.remember_delivery(digest, now=now, keep_until=now + 2 * WEBHOOK_WINDOW)
    try:
        payload = json.loads(raw_body)
        posture = DevicePosture.model_validate(payload)
    except (ValueError, ValidationError) as error:
        raise WebhookMalformedError(f"webhook body is not a device posture record: {_short(error)}") from error
    stored = store.put(posture)
    detail = "stored" if stored else "ignored: a newer posture is already stored"
    return WebhookResult(device_id=posture.device_id, stored=stored, detail=detail)


def _short(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:3])
    return str(error)[:200]
