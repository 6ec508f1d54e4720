"""Chat-ops end to end: Slack (a fake Web API on loopback) -> the local stack's signed Slack routes
-> the worker -> the real workflow (approval step with a task token) -> grant -> warning -> revoke.

Slack's side is the only fake: requests are signed like Slack signs them and posted over real HTTP
to the deployed API; the worker answers through slack-sdk pointed at the fake.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from moto.core.exceptions import AWSError
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from slack_sdk.signature import SignatureVerifier

from accessctl_local import LocalStack
from accessctl_local.estate import (
    assume,
    audit_trail,
    create_role,
    grant_policies,
    signed_client,
)
from accessctl_local.slack_fake import FakeSlack
from tests.support.stacks import demo_stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e]

SIGNING_SECRET = "slack-signing-secret-for-the-emulator"  # not a secret: the emulator's
BOT_TOKEN = "xoxb-local-emulator-token"
TEAM = "T0ACME01"
APP = "A0ACCESS1"
APPROVERS_CHANNEL = "C0DBOWNERS"
ALICE, BOB, DAVE, CAROL, MALLORY = "U0ALICE", "U0BOB", "U0DAVE", "U0CAROL", "U0MALLORY"

DIRECTORY = {
    "people": {
        "alice@example.com": {"role": "analyst", "groups": ["analysts"]},
        "bob@example.com": {"role": "analyst", "groups": ["db-owners"]},
        "dave@example.com": {"role": "analyst", "groups": ["db-owners"]},
        "carol@example.com": {"role": "analyst", "groups": ["support"]},
    }
}
_triggers = itertools.count(1)


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=BOT_TOKEN, team_id=TEAM) as fake:
        for user, email in [
            (ALICE, "alice@example.com"),
            (BOB, "bob@example.com"),
            (DAVE, "dave@example.com"),
            (CAROL, "carol@example.com"),
            (MALLORY, "mallory@example.com"),  # a member the directory does not know
        ]:
            fake.add_user(user, team_id=TEAM, email=email)
        yield fake


@pytest.fixture(scope="module")
def stack(slack: FakeSlack) -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as env:
        # Where slack-sdk and the response_url callbacks go: the fake, on loopback.
        env.setenv("SLACK_API_URL", slack.api_url)
        env.setenv("SLACK_RESPONSE_URL_PREFIX", f"{slack.base_url}/response/")
        overrides = {
            "SlackSecretName": "accessctl/slack",
            "SlackTeamId": TEAM,
            "SlackAppId": APP,
            "SlackApprovalChannels": f"db-owners={APPROVERS_CHANNEL}",
            "SlackWorkspaceEnforcesMfa": "true",
            "PeopleDirectoryParameter": "accessctl/people",
            "ExpiryWarningMinutes": "1",
            "ChatOpsBotRoleArns": "arn:aws:iam::123456789012:role/bots/hubot",
        }
        with demo_stack(overrides) as running:
            create_role(running, "analyst", path="/people/")
            create_role(running, "hubot", path="/bots/", opted_in=False)
            running.client("secretsmanager").create_secret(
                Name="accessctl/slack",
                SecretString=json.dumps({"signing_secret": SIGNING_SECRET, "bot_token": BOT_TOKEN}),
            )
            running.client("ssm").put_parameter(Name="accessctl/people", Type="String", Value=json.dumps(DIRECTORY))
            yield running


# ------------------------------------------------------------------ Slack's side


def post_signed(
    stack: LocalStack,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    secret: str = SIGNING_SECRET,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    if signature is None:
        signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body) or ""
    sent = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }
    request = urllib.request.Request(f"{stack.api_url}{path}", data=body, method="POST", headers=headers or sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def command_body(slack: FakeSlack, user: str, text: str, *, team: str = TEAM, app: str = APP) -> tuple[bytes, str]:
    response_url = slack.response_url()
    n = next(_triggers)
    fields = {
        "token": "deprecated-verification-token",
        "team_id": team,
        "api_app_id": app,
        "user_id": user,
        "channel_id": "C0GENERAL",
        "command": "/access",
        "text": text,
        "response_url": response_url,
        "trigger_id": f"{n}.{n}.0a1b2c",
    }
    return urlencode(fields).encode(), response_url


def click_body(slack: FakeSlack, user: str, action: str, request_id: str, *, team: str = TEAM) -> tuple[bytes, str]:
    response_url = slack.response_url()
    payload = {
        "type": "block_actions",
        "team": {"id": team},
        "api_app_id": APP,
        "user": {"id": user, "team_id": team},
        "actions": [{"type": "button", "action_id": action, "value": request_id, "action_ts": f"{time.time():.6f}"}],
        "response_url": response_url,
        "container": {"type": "message", "channel_id": APPROVERS_CHANNEL},
    }
    return urlencode({"payload": json.dumps(payload)}).encode(), response_url


def slash(stack: LocalStack, slack: FakeSlack, user: str, text: str) -> tuple[int, dict[str, Any], str]:
    body, response_url = command_body(slack, user, text)
    status, answer = post_signed(stack, "/slack/commands", body)
    return status, answer, response_url


def click(stack: LocalStack, slack: FakeSlack, user: str, action: str, request_id: str) -> str:
    """Click a button; returns what the clicker was told privately."""
    body, response_url = click_body(slack, user, action, request_id)
    status, answer = post_signed(stack, "/slack/interactions", body)
    assert status == 200, answer
    return str(slack.wait_for(lambda: slack.responses(response_url), timeout=30)[-1]["text"])


# ------------------------------------------------------------------ what happened


def request_record(stack: LocalStack, request_id: str) -> dict[str, Any]:
    table = stack.session().resource("dynamodb").Table(stack.resources["GrantsTable"])
    return dict(table.get_item(Key={"request_id": request_id}, ConsistentRead=True).get("Item") or {})


def status_of(stack: LocalStack, request_id: str) -> str:
    return str(request_record(stack, request_id).get("status"))


def wait_for_status(stack: LocalStack, request_id: str, status: str, timeout: float) -> None:
    try:
        wait_for(lambda: status_of(stack, request_id) == status, timeout=timeout)
    except AssertionError:
        record = request_record(stack, request_id)
        raise AssertionError(f"{request_id} is {record.get('status')}, not {status}: {record.get('failure')}") from None


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """action_id -> value of every button in a message."""
    found = {}
    for block in message.get("blocks", []):
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            found[element["action_id"]] = element.get("value", "")
    return found


def approval_message_for(slack: FakeSlack, requester_mention: str, db_user: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for message in slack.messages_in(APPROVERS_CHANNEL):
            text = json.dumps(message)
            if requester_mention in text and db_user in text and "approve" in buttons(message):
                return message
        return None

    return dict(slack.wait_for(find, timeout=60))


def dm_texts(slack: FakeSlack, user: str) -> list[str]:
    return [str(message.get("text", "")) for message in slack.dm_messages(user)]


# ------------------------------------------------------------------ the flows


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_given_a_slash_command_when_an_approver_clicks_then_access_is_granted_warned_and_revoked(
    stack: LocalStack, slack: FakeSlack
) -> None:
    # Given alice asks from Slack for read access that needs one db-owners approval
    status, ack, _ = slash(stack, slack, ALICE, "orders-demo app_ro 2m investigating INC-1234")
    assert status == 200 and ack["response_type"] == "ephemeral", ack
    assert "orders-demo" in ack["text"]

    # Then the approvers' channel gets the question with the evaluated context and two buttons
    message = approval_message_for(slack, f"<@{ALICE}>", "app_ro")
    request_id = buttons(message)["approve"]
    assert buttons(message) == {"approve": request_id, "deny": request_id}
    shown = json.dumps(message["blocks"])
    assert "mfa" in shown.lower() and "source" in shown.lower()  # the signals, with what is missing
    assert status_of(stack, request_id) == "NEEDS_APPROVAL"

    # When alice tries to approve her own request, and carol (not a db-owner) tries too
    assert "own request" in click(stack, slack, ALICE, "approve", request_id)
    assert "db-owners" in click(stack, slack, CAROL, "approve", request_id)
    assert status_of(stack, request_id) == "NEEDS_APPROVAL"
    assert grant_policies(stack) == []

    # When bob (db-owners) approves
    assert "approved" in click(stack, slack, BOB, "approve", request_id)

    # Then the grant is made, alice is told, and the approvers' message now says who decided
    wait_for_status(stack, request_id, "ACTIVE", timeout=60)
    record = request_record(stack, request_id)
    assert [p["Arn"] for p in grant_policies(stack)] == [record["grant"]["policy_arn"]]
    slack.wait_for(lambda: any("granted" in text.lower() for text in dm_texts(slack, ALICE)), timeout=30)
    decided = slack.wait_for(
        lambda: [m for m in slack.messages_in(APPROVERS_CHANNEL) if m.get("ts") == message["ts"] and not buttons(m)],
        timeout=30,
    )[0]
    assert "bob@example.com" in json.dumps(decided)

    # When bob clicks again: already decided, and still exactly one grant
    assert "already decided" in click(stack, slack, BOB, "approve", request_id).lower()
    assert len(grant_policies(stack)) == 1

    # Then the audit names the approver on the grant and the Slack member on the request
    trail = audit_trail(stack, request_id)
    issued = [event for event in trail if event["event_type"] == "GRANT_ISSUED"]
    assert len(issued) == 1 and issued[0]["details"]["approved_by"] == ["bob@example.com"]
    submitted = next(event for event in trail if event["event_type"] == "REQUEST_SUBMITTED")
    assert submitted["actor"] == f"slack:{TEAM}/{ALICE}"
    assert submitted["details"]["requested_for"] == "alice@example.com"
    refused = [event for event in trail if event["event_type"] == "APPROVAL_REFUSED"]
    assert {event["outcome"] for event in refused} == {"SELF_APPROVAL", "NOT_AN_APPROVER", "ALREADY_DECIDED"}

    # Then a minute before expiry alice is warned, with an Extend button
    warning = slack.wait_for(
        lambda: [m for m in slack.dm_messages(ALICE) if buttons(m).get("extend") == request_id], timeout=120
    )
    assert warning

    # And at expiry the grant is revoked and alice is told
    wait_for_status(stack, request_id, "REVOKED", timeout=120)
    assert grant_policies(stack) == []
    slack.wait_for(lambda: any("has ended" in text for text in dm_texts(slack, ALICE)), timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_given_a_rule_needing_two_approvals_when_only_one_comes_then_the_request_expires(
    stack: LocalStack, slack: FakeSlack
) -> None:
    # Given alice asks for write access (two db-owners, one minute to decide)
    status, _, _ = slash(stack, slack, ALICE, "orders-demo app_rw 10m schema fix INC-77")
    assert status == 200
    message = approval_message_for(slack, f"<@{ALICE}>", "app_rw")
    request_id = buttons(message)["approve"]

    # When bob approves (one of two), and bob's second click does not count twice
    assert "1 more" in click(stack, slack, BOB, "approve", request_id)
    assert "already approved" in click(stack, slack, BOB, "approve", request_id)
    assert status_of(stack, request_id) == "NEEDS_APPROVAL"

    # Then when the rule's one minute passes the request expires: nothing granted, alice told
    wait_for_status(stack, request_id, "EXPIRED", timeout=120)
    assert grant_policies(stack) == []
    slack.wait_for(lambda: any("expired" in text.lower() for text in dm_texts(slack, ALICE)), timeout=30)
    updated = next(m for m in slack.messages_in(APPROVERS_CHANNEL) if m.get("ts") == message["ts"])
    assert not buttons(updated)
    # And a late click changes nothing
    late = click(stack, slack, DAVE, "approve", request_id).lower()
    assert "already decided" in late or "expired" in late
    assert grant_policies(stack) == []
    assert [e["event_type"] for e in audit_trail(stack, request_id)].count("REQUEST_EXPIRED") == 1
    assert [e["event_type"] for e in audit_trail(stack, request_id)].count("APPROVAL_APPLIED_AT_TIMEOUT") == 0


def test_given_two_distinct_approvers_when_both_approve_then_one_grant_is_made(
    stack: LocalStack, slack: FakeSlack
) -> None:
    status, _, _ = slash(stack, slack, ALICE, "orders-demo app_rw 5m data repair INC-78")
    assert status == 200
    request_id = buttons(approval_message_for(slack, f"<@{ALICE}>", "app_rw"))["approve"]
    assert "1 more" in click(stack, slack, BOB, "approve", request_id)
    assert "approved" in click(stack, slack, DAVE, "approve", request_id)
    wait_for_status(stack, request_id, "ACTIVE", timeout=60)
    issued = [e for e in audit_trail(stack, request_id) if e["event_type"] == "GRANT_ISSUED"]
    assert sorted(issued[0]["details"]["approved_by"]) == ["bob@example.com", "dave@example.com"]
    stack.invoke("RevokeGrantFunction", {"request_id": request_id, "reason": "EARLY", "actor": "test-cleanup"})


def test_given_a_deny_click_when_received_then_the_request_is_denied_and_the_requester_told_who(
    stack: LocalStack, slack: FakeSlack
) -> None:
    status, _, _ = slash(stack, slack, ALICE, "orders-demo app_ro 5m reading INC-79")
    assert status == 200
    request_id = buttons(approval_message_for(slack, "INC-79", "app_ro"))["deny"]
    assert "denied" in click(stack, slack, DAVE, "deny", request_id)
    wait_for_status(stack, request_id, "DENIED", timeout=60)
    assert "dave@example.com" in str(request_record(stack, request_id).get("failure"))
    assert grant_policies(stack) == []


# ------------------------------------------------------------------ bad input changes nothing


def requests_count(stack: LocalStack) -> int:
    table = stack.session().resource("dynamodb").Table(stack.resources["GrantsTable"])
    return int(table.scan(Select="COUNT")["Count"])


@pytest.mark.parametrize(
    ("case", "expected"),
    [("missing", 401), ("wrong", 401), ("stale", 401), ("other-secret", 401)],
)
def test_given_a_badly_signed_command_when_posted_then_it_is_refused(
    stack: LocalStack, slack: FakeSlack, case: str, expected: int
) -> None:
    before = requests_count(stack)
    body, _ = command_body(slack, ALICE, "orders-demo app_ro 5m bad signature")
    if case == "missing":
        status, _ = post_signed(
            stack, "/slack/commands", body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    elif case == "wrong":
        status, _ = post_signed(stack, "/slack/commands", body, signature="v0=" + "0" * 64)
    elif case == "stale":
        status, _ = post_signed(stack, "/slack/commands", body, timestamp=int(time.time()) - 301)
    else:
        status, _ = post_signed(stack, "/slack/commands", body, secret="someone-elses-secret")
    assert status == expected
    time.sleep(0.5)
    assert requests_count(stack) == before


def test_given_a_replayed_command_when_posted_again_then_it_is_refused(stack: LocalStack, slack: FakeSlack) -> None:
    body, _ = command_body(slack, MALLORY, "orders-demo app_ro 5m replay me")
    timestamp = int(time.time())
    first, _ = post_signed(stack, "/slack/commands", body, timestamp=timestamp)
    second, answer = post_signed(stack, "/slack/commands", body, timestamp=timestamp)
    assert (first, second) == (200, 401)
    assert "replayed" in answer["message"]


def test_given_another_workspace_when_it_posts_then_it_is_refused(stack: LocalStack, slack: FakeSlack) -> None:
    body, _ = command_body(slack, ALICE, "orders-demo app_ro 5m from elsewhere", team="T0OTHER1")
    status, answer = post_signed(stack, "/slack/commands", body)
    assert status == 403 and "workspace" in answer["message"]


def test_given_a_member_the_directory_does_not_know_when_they_ask_then_they_are_told_and_nothing_is_filed(
    stack: LocalStack, slack: FakeSlack
) -> None:
    before = requests_count(stack)
    status, _, response_url = slash(stack, slack, MALLORY, "orders-demo app_ro 5m who am i")
    assert status == 200
    told = slack.wait_for(lambda: slack.responses(response_url), timeout=30)
    assert "not in the people directory" in told[-1]["text"]
    assert requests_count(stack) == before


def test_given_a_malformed_command_when_posted_then_usage_is_shown_and_nothing_is_filed(
    stack: LocalStack, slack: FakeSlack
) -> None:
    before = requests_count(stack)
    for text in ["orders-demo", "orders-demo app_ro forever because", "orders-demo app* 5m widen", "../x app_ro 5m hi"]:
        status, answer, _ = slash(stack, slack, ALICE, text)
        assert status == 200 and answer["response_type"] == "ephemeral", answer
        assert answer["text"].startswith(":warning:"), answer
    time.sleep(0.5)
    assert requests_count(stack) == before


def test_given_a_signed_click_when_its_user_field_is_forged_then_the_signature_fails(
    stack: LocalStack, slack: FakeSlack
) -> None:
    # Given a click signed for carol, with the user changed to bob afterwards (a forged user field)
    body, _ = click_body(slack, CAROL, "approve", "00000000-0000-4000-8000-000000000000")
    timestamp = int(time.time())
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=str(timestamp), body=body) or ""
    forged = body.replace(CAROL.encode(), BOB.encode())
    status, answer = post_signed(stack, "/slack/interactions", forged, timestamp=timestamp, signature=signature)
    assert status == 401 and "signature" in answer["message"]


def test_given_a_click_on_an_unknown_request_when_received_then_nothing_happens(
    stack: LocalStack, slack: FakeSlack
) -> None:
    told = click(stack, slack, BOB, "approve", "00000000-0000-4000-8000-000000000000")
    assert "not waiting for approval" in told or "not found" in told


# ------------------------------------------------------------------ other chat-ops bots


def test_given_an_allow_listed_bot_when_it_asks_for_a_person_then_the_person_is_decided_and_both_are_audited(
    stack: LocalStack,
) -> None:
    # Given hubot is on the allow-list; it relays alice's ask (a bot cannot vouch for MFA)
    bot = signed_client(stack, assume(stack, f"arn:aws:iam::{stack.account_id}:role/bots/hubot", "hubot"))
    answer = bot.submit(
        database="orders-demo",
        db_user="app_ro",
        duration_minutes=5,
        reason="asked in #ops by alice",
        on_behalf_of="alice@example.com",
    )
    # Then alice is decided as herself (her directory role and groups), and without MFA proof the
    # production guardrail denies: the missing signal fails closed
    wait_for_status(stack, answer.request_id, "DENIED", timeout=60)
    record = request_record(stack, answer.request_id)
    assert record["role_name"] == "analyst" and record["origin"] == "chatops-bot"
    assert "MFA" in record["decision"]["reason"]
    submitted = next(e for e in audit_trail(stack, answer.request_id) if e["event_type"] == "REQUEST_SUBMITTED")
    assert submitted["actor"].endswith(":assumed-role/hubot/hubot")
    assert submitted["details"]["requested_for"] == "alice@example.com"
    assert submitted["details"]["relayed_by"] == submitted["actor"]


def test_given_a_bot_not_on_the_allow_list_when_it_asks_for_someone_then_it_is_refused(stack: LocalStack) -> None:
    create_role(stack, "rogue-bot", path="/bots/", opted_in=True)
    rogue = signed_client(stack, assume(stack, f"arn:aws:iam::{stack.account_id}:role/bots/rogue-bot", "rogue"))
    before = requests_count(stack)
    with pytest.raises(Exception, match="not an allowed chat-ops bot"):
        rogue.submit(
            database="orders-demo",
            db_user="app_ro",
            duration_minutes=5,
            reason="let me in",
            on_behalf_of="alice@example.com",
        )
    assert requests_count(stack) == before


# ------------------------------------------------------------------ a decision that did not reach the workflow


class StepFunctionsThrottling(AWSError):
    TYPE = "ThrottlingException"
    STATUS = 400


@pytest.fixture
def resume_throttled(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The emulator's Step Functions throttles every SendTaskSuccess while ``["on"]`` is true (it runs
    in this process, so the worker gets real throttling answers); the SDK's backoff sleeps are skipped."""
    state = {"on": True}
    original = StepFunctionsParserBackend.send_task_success

    def maybe_throttled(self: StepFunctionsParserBackend, *args: Any, **kwargs: Any) -> Any:
        if state["on"]:
            raise StepFunctionsThrottling("Rate exceeded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StepFunctionsParserBackend, "send_task_success", maybe_throttled)
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    monkeypatch.setattr("botocore.retries.adaptive.ClientRateLimiter.on_sending_request", lambda self, **kwargs: None)
    return state


def approval_item(stack: LocalStack, request_id: str) -> dict[str, Any]:
    table = stack.session().resource("dynamodb").Table(stack.resources["ChatOpsTable"])
    return dict(table.get_item(Key={"pk": f"approval#{request_id}"}, ConsistentRead=True).get("Item") or {})


def worker_events(stack: LocalStack) -> list[Any]:
    """Record each event the Slack worker is invoked with (what Lambda hands a retry of it again)."""
    seen: list[Any] = []
    stack.runtime.inject_failure("SlackWorkerFunction", before=lambda event, context: seen.append(event), times=1000)
    return seen


def counted(trail: list[dict[str, Any]], event_type: str) -> int:
    return [event["event_type"] for event in trail].count(event_type)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_given_an_approval_whose_resume_is_throttled_when_lambda_retries_the_worker_then_access_is_granted(
    stack: LocalStack, slack: FakeSlack, resume_throttled: dict[str, bool]
) -> None:
    # Given alice's request, and Step Functions throttling the resume of bob's approval past the SDK's retries
    status, _, _ = slash(stack, slack, ALICE, "orders-demo app_ro 2m resume throttled INC-81")
    assert status == 200
    request_id = buttons(approval_message_for(slack, "INC-81", "app_ro"))["approve"]
    events = worker_events(stack)
    try:
        told = click(stack, slack, BOB, "approve", request_id)

        # Then bob is told it is not finished yet, and the store holds his approval, not delivered
        assert "retrying" in told
        (clicked,) = [event for event in events if event.get("kind") == "click"]
        approval = approval_item(stack, request_id)
        assert (approval["status"], approval.get("delivered_at")) == ("APPROVED", None)
        assert status_of(stack, request_id) == "APPROVED" and grant_policies(stack) == []

        # When Step Functions answers again and Lambda retries the failed invocation with the same event
        resume_throttled["on"] = False
        retried = stack.invoke("SlackWorkerFunction", clicked)
    finally:
        stack.runtime.clear_failures("SlackWorkerFunction")

    # Then the workflow resumes and grants, with bob's vote and the grant audited once each
    assert not retried.errored and retried.payload["vote"] == "APPROVED", retried.payload
    wait_for_status(stack, request_id, "ACTIVE", timeout=60)
    assert approval_item(stack, request_id)["delivered_via"] == "task_token"
    trail = audit_trail(stack, request_id)
    assert counted(trail, "APPROVAL_VOTE") == counted(trail, "GRANT_ISSUED") == 1
    assert counted(trail, "APPROVAL_REFUSED") == counted(trail, "APPROVAL_APPLIED_AT_TIMEOUT") == 0
    stack.invoke("RevokeGrantFunction", {"request_id": request_id, "reason": "EARLY", "actor": "test-cleanup"})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_given_decisions_that_never_reach_the_workflow_when_its_wait_times_out_then_it_grants_or_denies_them(
    stack: LocalStack, slack: FakeSlack, resume_throttled: dict[str, bool]
) -> None:
    # Given two requests with a one-minute approval window, and Step Functions refusing every resume
    assert slash(stack, slack, ALICE, "orders-demo app_rw 5m approved in time INC-82")[0] == 200
    approved = buttons(approval_message_for(slack, "INC-82", "app_rw"))["approve"]
    assert slash(stack, slack, ALICE, "orders-demo app_rw 5m denied in time INC-83")[0] == 200
    denied = buttons(approval_message_for(slack, "INC-83", "app_rw"))["deny"]

    # When bob and dave approve the first in time, and dave denies the second (none of it delivered)
    assert "1 more" in click(stack, slack, BOB, "approve", approved)
    assert "retrying" in click(stack, slack, DAVE, "approve", approved)
    assert "retrying" in click(stack, slack, DAVE, "deny", denied)
    assert approval_item(stack, approved)["status"] == "APPROVED"
    assert approval_item(stack, denied)["status"] == "DENIED"

    # Then at the timeout the workflow grants the approved one and denies the other; nothing expires
    wait_for_status(stack, approved, "ACTIVE", timeout=150)
    wait_for_status(stack, denied, "DENIED", timeout=60)
    assert "dave@example.com" in str(request_record(stack, denied).get("failure"))
    record = request_record(stack, approved)
    assert [p["Arn"] for p in grant_policies(stack)] == [record["grant"]["policy_arn"]]

    # And the trail says who decided and that it was acted on at the timeout, once each
    for request_id, outcome in ((approved, "APPROVED"), (denied, "DENIED")):
        trail = audit_trail(stack, request_id)
        (applied,) = [e for e in trail if e["event_type"] == "APPROVAL_APPLIED_AT_TIMEOUT"]
        assert applied["outcome"] == outcome and "timed out" in applied["reason"]
        assert counted(trail, "REQUEST_EXPIRED") == 0
    granted = audit_trail(stack, approved)
    (issued,) = [e for e in granted if e["event_type"] == "GRANT_ISSUED"]
    assert sorted(issued["details"]["approved_by"]) == ["bob@example.com", "dave@example.com"]
    assert counted(granted, "APPROVAL_VOTE") == 2
    slack.wait_for(lambda: any("granted" in text.lower() for text in dm_texts(slack, ALICE)), timeout=30)
    stack.invoke("RevokeGrantFunction", {"request_id": approved, "reason": "EARLY", "actor": "test-cleanup"})
