"""Slack's slash command and buttons: verified at the edge, worked on asynchronously.

The edge (``functions/slack``) checks Slack's signature over the raw body (slack-sdk's verifier:
HMAC-SHA256, constant-time compare, 5-minute window), refuses a delivery it has seen before,
accepts only the configured workspace and app, validates the command, acknowledges within
Slack's 3 seconds and hands a :class:`SlackWork` item to the worker function. The worker looks
the member up (users.info -> confirmed email -> people directory), then submits the request or
counts the vote. Nothing in a payload is trusted beyond which request a button names: the
clicker's identity comes from Slack's signed envelope and the directory, and the workflow's
task token never leaves the server.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from slack_sdk.signature import Clock, SignatureVerifier

from accessctl.aws import error_code, transient_errors_surface
from accessctl.errors import BadRequestError, ForbiddenError, NotAuthenticatedError
from accessctl.models import (
    MAX_REQUEST_MINUTES,
    REQUEST_ID_PATTERN,
    AccessRequestSubmission,
    utc_now,
)

SIGNATURE_WINDOW_SECONDS = 300
DELIVERY_PREFIX = "slack-delivery#"
SLACK_ID = r"^[A-Z0-9]{2,32}$"
# A response_url is called back by the worker: its shape here, its host by check_response_url.
RESPONSE_URL = r"^https?://[A-Za-z0-9.:_-]{1,255}/[A-Za-z0-9/_.-]{1,400}$"
TRIGGER_ID = r"^[A-Za-z0-9_.:-]{1,128}$"

SlackId = Annotated[str, StringConstraints(pattern=SLACK_ID)]

USAGE = "usage: /access <database> <db user> <duration, e.g. 30m or 2h> <reason>"


# ------------------------------------------------------------------ the edge: signature, replay, allow-list


def verify_signature(headers: dict[str, str], raw_body: bytes, signing_secret: str, now: float) -> str:
    """Check Slack's v0 signature; return it (the delivery's identity, for replay protection)."""
    normalized = {name.lower(): value for name, value in headers.items()}
    timestamp = normalized.get("x-slack-request-timestamp")
    signature = normalized.get("x-slack-signature")
    if not timestamp or not signature:
        raise NotAuthenticatedError("missing Slack signature")
    if not timestamp.isdigit():
        raise NotAuthenticatedError("malformed Slack request timestamp")
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        raise NotAuthenticatedError("stale Slack request (outside the 5-minute window)")
    verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now))
    if not verifier.is_valid(body=raw_body, timestamp=timestamp, signature=signature):
        raise NotAuthenticatedError("invalid Slack signature")
    return signature


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def refuse_replay(table: Any, signature: str) -> None:
    """Each signed delivery is accepted once (a conditional put; TTL clears it after the window)."""
    key = DELIVERY_PREFIX + hashlib.sha256(signature.encode()).hexdigest()
    expires = int((utc_now() + timedelta(seconds=2 * SIGNATURE_WINDOW_SECONDS)).timestamp())
    try:
        with transient_errors_surface():
            table.put_item(Item={"pk": key, "expires_at_epoch": expires}, ConditionExpression=Attr("pk").not_exists())
    except ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            raise NotAuthenticatedError("replayed Slack request") from error
        raise


def check_response_url(url: str, allowed_prefix: str) -> None:
    """Only Slack's own callback host is ever called back (the payload is signed, but be sure)."""
    if not url.startswith(allowed_prefix):
        raise ForbiddenError("the response_url is not Slack's")


def check_origin(team_id: str, app_id: str | None, allowed_team: str | None, allowed_app: str | None) -> None:
    if not allowed_team or team_id != allowed_team:
        raise ForbiddenError("this Slack workspace is not allowed to use accessctl")
    if not allowed_app or app_id != allowed_app:
        raise ForbiddenError("this Slack app is not allowed to use accessctl")


# ------------------------------------------------------------------ what Slack sends


class SlashCommand(BaseModel):
    """The form fields of a slash command (the ones accessctl uses)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    team_id: SlackId
    api_app_id: SlackId
    user_id: SlackId
    channel_id: SlackId
    command: Annotated[str, StringConstraints(pattern=r"^/[a-z0-9_-]{1,32}$")]
    text: Annotated[str, StringConstraints(max_length=1000)] = ""
    response_url: Annotated[str, StringConstraints(pattern=RESPONSE_URL)]
    trigger_id: Annotated[str, StringConstraints(pattern=TRIGGER_ID)]


def parse_form(raw_body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as error:
        raise BadRequestError("the body is not UTF-8 form data") from error
    return {name: values[0] for name, values in fields.items() if values}


def parse_command(raw_body: bytes) -> SlashCommand:
    try:
        return SlashCommand.model_validate(parse_form(raw_body))
    except ValidationError as error:
        raise BadRequestError(f"not a valid slash command: {_fields(error)}") from error


_DURATION = re.compile(r"^(?P<amount>\d{1,4})\s*(?P<unit>m|min|mins|minutes|h|hr|hrs|hours)?$")


def parse_duration(text: str) -> int:
    """``30m``, ``45``, ``2h`` -> minutes."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise BadRequestError(f"{text!r} is not a duration (say 30m or 2h). {USAGE}")
    amount = int(match["amount"])
    minutes = amount * 60 if (match["unit"] or "m").startswith("h") else amount
    if not 1 <= minutes <= MAX_REQUEST_MINUTES:
        raise BadRequestError(f"the duration must be between 1 minute and {MAX_REQUEST_MINUTES // 60} hours")
    return minutes


def submission_from_command(command: SlashCommand) -> AccessRequestSubmission:
    """``orders-prod app_ro 30m investigating INC-1234`` -> a validated submission (same rules as the API)."""
    parts = command.text.split(maxsplit=3)
    if len(parts) < 4:
        raise BadRequestError(USAGE)
    database, db_user, duration, reason = parts
    try:
        return AccessRequestSubmission(
            database=database,
            db_user=db_user,
            duration_minutes=parse_duration(duration),
            reason=reason,
            # The trigger id is unique per invocation: a redelivered work item submits once.
            idempotency_key=f"slack-{command.trigger_id}"[:128],
        )
    except ValidationError as error:
        raise BadRequestError(f"{_fields(error)}. {USAGE}") from error


ActionId = Literal["approve", "deny", "extend"]


class ButtonClick(BaseModel):
    """One click on an accessctl button, from a signed ``block_actions`` payload."""

    model_config = ConfigDict(frozen=True)

    team_id: SlackId
    api_app_id: SlackId
    user_id: SlackId
    action: ActionId
    request_id: Annotated[str, StringConstraints(pattern=REQUEST_ID_PATTERN)]
    action_ts: Annotated[str, StringConstraints(pattern=r"^[0-9.]{1,32}$")]
    response_url: Annotated[str, StringConstraints(pattern=RESPONSE_URL)]


def parse_interaction(raw_body: bytes) -> ButtonClick:
    form = parse_form(raw_body)
    try:
        payload = json.loads(form.get("payload", ""))
    except ValueError as error:
        raise BadRequestError("the interaction has no JSON payload") from error
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise BadRequestError("only button clicks (block_actions) are handled")
    actions = payload.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], dict):
        raise BadRequestError("exactly one action per click is expected")
    action = actions[0]
    try:
        return ButtonClick(
            team_id=(payload.get("team") or {}).get("id", ""),
            api_app_id=payload.get("api_app_id", ""),
            user_id=(payload.get("user") or {}).get("id", ""),
            action=action.get("action_id", ""),
            request_id=action.get("value", ""),
            action_ts=action.get("action_ts", ""),
            response_url=payload.get("response_url", ""),
        )
    except ValidationError as error:
        raise BadRequestError(f"not a valid accessctl action: {_fields(error)}") from error


def _fields(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in item['loc']) or 'value'}: {item['msg']}" for item in error.errors())


# ------------------------------------------------------------------ the hand-over to the worker


class SlackWork(BaseModel):
    """What the edge hands to the worker: already verified, validated and allow-listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["command", "click"]
    command: SlashCommand | None = None
    submission: AccessRequestSubmission | None = None
    click: ButtonClick | None = None
    received_at: str = Field(default_factory=lambda: utc_now().isoformat())
