"""The Slack edge in isolation: signature checks, command parsing and identity rules."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from accessctl.errors import BadRequestError, ForbiddenError, NotAuthenticatedError
from accessctl.identity import PeopleDirectory, SlackUser, requester_from_slack, slack_identity
from accessctl.slack_requests import (
    check_response_url,
    parse_command,
    parse_duration,
    parse_interaction,
    submission_from_command,
    verify_signature,
)

SECRET = "edge-test-signing-secret"


def signed_headers(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body) or ""
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def test_given_a_correctly_signed_body_when_verified_then_the_signature_is_returned() -> None:
    now = int(time.time())
    headers = signed_headers(b"a=1", now)
    assert verify_signature(headers, b"a=1", SECRET, now) == headers["X-Slack-Signature"]


@pytest.mark.parametrize(
    ("headers", "offset", "message"),
    [
        ({}, 0, "missing"),
        ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, 0, "malformed"),
        (None, 301, "stale"),
        (None, -301, "stale"),
    ],
)
def test_given_a_bad_envelope_when_verified_then_it_is_refused(
    headers: dict[str, str] | None, offset: int, message: str
) -> None:
    now = int(time.time())
    sent = headers if headers is not None else signed_headers(b"a=1", now + offset)
    with pytest.raises(NotAuthenticatedError, match=message):
        verify_signature(sent, b"a=1", SECRET, now)


def test_given_a_body_changed_after_signing_when_verified_then_it_is_refused() -> None:
    now = int(time.time())
    headers = signed_headers(b"user=U1", now)
    with pytest.raises(NotAuthenticatedError, match="invalid"):
        verify_signature(headers, b"user=U2", SECRET, now)


@pytest.mark.parametrize(("text", "minutes"), [("30m", 30), ("45", 45), ("2h", 120), ("1 hr", 60), ("90min", 90)])
def test_given_a_duration_when_parsed_then_it_is_minutes(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["0m", "13h", "forever", "-5m", "5d"])
def test_given_a_bad_duration_when_parsed_then_it_is_refused(text: str) -> None:
    with pytest.raises(BadRequestError):
        parse_duration(text)


def command(text: str, **overrides: str) -> bytes:
    fields = {
        "team_id": "T0ACME01",
        "api_app_id": "A0ACCESS1",
        "user_id": "U0ALICE",
        "channel_id": "C0GENERAL",
        "command": "/access",
        "text": text,
        "response_url": "https://hooks.slack.com/commands/T0ACME01/1/abc",
        "trigger_id": "1.2.abc",
        **overrides,
    }
    return urlencode(fields).encode()


def test_given_the_documented_command_when_parsed_then_it_is_a_validated_submission() -> None:
    submission = submission_from_command(parse_command(command("orders-prod app_ro 30m investigating INC-1234")))
    assert (submission.database, submission.db_user, submission.duration_minutes) == ("orders-prod", "app_ro", 30)
    assert submission.reason == "investigating INC-1234"
    assert submission.idempotency_key == "slack-1.2.abc"


@pytest.mark.parametrize(
    "text", ["", "orders-prod", "orders-prod app* 5m x y", "arn:aws:rds app_ro 5m why", "db ../u 5m why"]
)
def test_given_a_bad_command_when_parsed_then_usage_is_explained(text: str) -> None:
    with pytest.raises(BadRequestError):
        submission_from_command(parse_command(command(text)))


def test_given_a_response_url_elsewhere_when_checked_then_it_is_refused() -> None:
    check_response_url("https://hooks.slack.com/actions/T/1/x", "https://hooks.slack.com/")
    with pytest.raises(ForbiddenError):
        check_response_url("https://evil.example/hooks.slack.com/", "https://hooks.slack.com/")


def test_given_a_click_naming_something_other_than_a_request_id_when_parsed_then_it_is_refused() -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0ACME01"},
        "api_app_id": "A0ACCESS1",
        "user": {"id": "U0BOB"},
        "actions": [{"action_id": "approve", "value": "../../grants", "action_ts": "1.2"}],
        "response_url": "https://hooks.slack.com/actions/T/1/x",
    }
    with pytest.raises(BadRequestError):
        parse_interaction(urlencode({"payload": json.dumps(payload)}).encode())


DIRECTORY = PeopleDirectory.model_validate(
    {"people": {"Alice@Example.com": {"role": "analyst", "groups": ["analysts"]}}}
)


def member(**overrides: object) -> SlackUser:
    fields: dict[str, object] = {
        "id": "U0ALICE",
        "team_id": "T0ACME01",
        "email": "alice@example.com",
        "email_confirmed": True,
        **overrides,
    }
    return SlackUser.model_validate(fields)


def test_given_a_confirmed_member_in_the_directory_when_mapped_then_role_and_groups_come_from_the_directory() -> None:
    requester, entry = requester_from_slack(member(), "C0GENERAL", "T0ACME01", DIRECTORY)
    assert requester.identity == "alice@example.com" and requester.groups == ["analysts"]
    assert entry.role == "analyst" and requester.slack is not None and requester.slack.user_id == "U0ALICE"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"team_id": "T0OTHER1"}, "workspace"),
        ({"email_confirmed": False}, "confirmed email"),
        ({"email_confirmed": None}, "confirmed email"),
        ({"email": None}, "confirmed email"),
        ({"deleted": True}, "full members"),
        ({"is_bot": True}, "full members"),
        ({"is_restricted": True}, "full members"),
        ({"is_ultra_restricted": True}, "full members"),
    ],
)
def test_given_a_member_who_cannot_be_vouched_for_when_mapped_then_they_are_refused(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ForbiddenError, match=message):
        slack_identity(member(**overrides), "T0ACME01")


def test_given_a_member_missing_from_the_directory_when_mapped_then_they_are_refused() -> None:
    with pytest.raises(ForbiddenError, match="people directory"):
        requester_from_slack(member(email="mallory@example.com"), None, "T0ACME01", DIRECTORY)
