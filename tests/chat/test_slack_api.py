"""SlackApi against the fake Slack Web API over real loopback HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accessctl.chat.blocks import acknowledgement, approval_request
from accessctl.chat.slack import SlackApi, SlackCredentials, slack_credentials
from accessctl.errors import ChatError, TransientError
from accessctl.models import MessageRef
from accessctl_local import FakeSlack
from tests.chat.conftest import REQUESTER_SLACK_ID, TOKEN, pending_approval, slack_request


def test_given_a_channel_when_a_message_is_posted_then_it_is_there_with_its_blocks_and_the_ref_names_it(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    message = approval_request(slack_request(), pending_approval())

    ref = slack_api.post("C0APPROVE", message)

    [posted] = fake_slack.messages_in("C0APPROVE")
    assert ref == MessageRef(channel="C0APPROVE", ts=posted["ts"])
    assert (posted["text"], posted["blocks"]) == (message.text, message.blocks)
    [call] = fake_slack.calls("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"


def test_given_a_posted_message_when_updated_then_everyone_sees_the_new_version(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    ref = slack_api.post("C0APPROVE", approval_request(slack_request(), pending_approval()))
    decided = acknowledgement(slack_request())

    slack_api.update(ref, decided)

    [shown] = fake_slack.messages_in("C0APPROVE")
    assert (shown["ts"], shown["text"], shown["blocks"]) == (ref.ts, decided.text, decided.blocks)


def test_given_an_unknown_message_when_updated_then_a_chat_error_names_slacks_error(slack_api: SlackApi) -> None:
    with pytest.raises(ChatError, match=r"chat\.update failed: message_not_found") as raised:
        slack_api.update(MessageRef(channel="C0APPROVE", ts="1.000001"), acknowledgement(slack_request()))
    assert raised.value.code == "message_not_found"


def test_given_a_member_when_an_ephemeral_message_is_posted_then_only_they_get_it(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    slack_api.post_ephemeral("C0REQUEST", REQUESTER_SLACK_ID, acknowledgement(slack_request()))

    [ephemeral] = fake_slack.ephemeral_messages(REQUESTER_SLACK_ID)
    assert ephemeral["channel"] == "C0REQUEST"
    assert fake_slack.messages_in("C0REQUEST") == []


def test_given_a_member_when_messaged_directly_then_the_bot_opens_the_dm_and_posts_there(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    ref = slack_api.direct_message(REQUESTER_SLACK_ID, acknowledgement(slack_request()))

    assert [call.method for call in fake_slack.calls()] == ["conversations.open", "chat.postMessage"]
    assert ref.channel == fake_slack.dm_channel(REQUESTER_SLACK_ID)
    assert len(fake_slack.dm_messages(REQUESTER_SLACK_ID)) == 1


def test_given_a_member_when_looked_up_then_identity_fields_come_back(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    fake_slack.add_user(
        "U0GUEST01", team_id="T0OTHER01", email="guest@partner.example", confirmed=False, restricted=True
    )

    user = slack_api.user("U0GUEST01")

    assert (user.id, user.team_id, user.email, user.email_confirmed) == (
        "U0GUEST01",
        "T0OTHER01",
        "guest@partner.example",
        False,
    )
    assert user.is_guest and not user.deleted and not user.is_bot


def test_given_an_unknown_member_when_looked_up_then_user_not_found(slack_api: SlackApi) -> None:
    with pytest.raises(ChatError) as raised:
        slack_api.user("U0NOBODY1")
    assert raised.value.code == "user_not_found"


def test_given_a_response_url_when_answered_then_the_message_lands_there_with_its_options(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    url = fake_slack.response_url()
    message = acknowledgement(slack_request())

    slack_api.respond(url, message, replace_original=True, ephemeral=False)

    [body] = fake_slack.responses(url)
    assert body == {
        "text": message.text,
        "blocks": message.blocks,
        "response_type": "in_channel",
        "replace_original": True,
    }


def test_given_a_used_up_response_url_when_answered_then_a_chat_error_says_so(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    url = fake_slack.response_url()
    for _ in range(5):
        slack_api.respond(url, acknowledgement(slack_request()))

    with pytest.raises(ChatError, match="used_url"):
        slack_api.respond(url, acknowledgement(slack_request()))


@pytest.mark.parametrize("url", ["http://hooks.slack.example/commands/1", "file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_given_a_response_url_that_is_not_https_when_answered_then_nothing_is_sent(
    slack_api: SlackApi, url: str
) -> None:
    with pytest.raises(ChatError, match="https is required"):
        slack_api.respond(url, acknowledgement(slack_request()))


def test_given_a_wrong_token_when_calling_then_invalid_auth_is_a_chat_error(fake_slack: FakeSlack) -> None:
    api = SlackApi("xoxb-not-the-token", base_url=fake_slack.api_url)

    with pytest.raises(ChatError, match="invalid_auth"):
        api.post("C0APPROVE", acknowledgement(slack_request()))
    assert fake_slack.messages_in("C0APPROVE") == []


def test_given_a_short_rate_limit_when_posting_then_the_client_retries_once_and_succeeds(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=0)

    slack_api.post("C0APPROVE", acknowledgement(slack_request()))

    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert len(fake_slack.messages_in("C0APPROVE")) == 1


def test_given_a_lasting_rate_limit_when_posting_then_a_transient_error_follows_the_one_retry(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    fake_slack.rate_limit("chat.postMessage", times=5, retry_after=0)

    with pytest.raises(TransientError, match="rate limited"):
        slack_api.post("C0APPROVE", acknowledgement(slack_request()))
    assert len(fake_slack.calls("chat.postMessage")) == 2


def test_given_a_long_retry_after_when_posting_then_no_wait_happens_here_and_the_error_is_transient(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=60)

    with pytest.raises(TransientError, match="retry after 60 s"):
        slack_api.post("C0APPROVE", acknowledgement(slack_request()))
    assert len(fake_slack.calls("chat.postMessage")) == 1


SLACK_FAULTS = {
    "HTTP 503": ("internal_error", 503, TransientError),
    "fatal_error": ("fatal_error", 200, TransientError),
    "channel_not_found": ("channel_not_found", 200, ChatError),
    "not_in_channel": ("not_in_channel", 200, ChatError),
}


@pytest.mark.parametrize(("error", "status", "raised"), SLACK_FAULTS.values(), ids=SLACK_FAULTS.keys())
def test_given_slack_refuses_when_posting_then_the_error_says_whether_to_retry(
    fake_slack: FakeSlack, slack_api: SlackApi, error: str, status: int, raised: type[Exception]
) -> None:
    fake_slack.fail("chat.postMessage", error, times=3, status=status)

    with pytest.raises(raised, match=error if status == 200 else "internal_error"):
        slack_api.post("C0APPROVE", acknowledgement(slack_request()))


def test_given_slack_is_not_reachable_when_posting_then_the_error_is_transient() -> None:
    with FakeSlack(token=TOKEN) as gone:
        url = gone.api_url
    api = SlackApi(TOKEN, base_url=url)

    with pytest.raises(TransientError, match="not reachable"):
        api.post("C0APPROVE", acknowledgement(slack_request()))


def test_given_a_form_body_with_the_token_field_when_the_fake_is_called_then_it_answers_like_slack(
    fake_slack: FakeSlack,
) -> None:
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"token": TOKEN, "channel": "C0FORM", "text": "hello", "blocks": json.dumps([])})
    with urllib.request.urlopen(f"{fake_slack.api_url}chat.postMessage", data=body.encode(), timeout=10) as answer:
        reply: dict[str, Any] = json.loads(answer.read())

    assert reply["ok"] is True and reply["channel"] == "C0FORM" and reply["ts"]
    [call] = fake_slack.calls("chat.postMessage")
    assert "token" not in call.args and call.args["text"] == "hello"


# ------------------------------------------------------------------ credentials


def test_given_the_slack_secret_when_read_then_both_values_are_there_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = {"signing_secret": "8f742231b10e8888abcd99yyyzzz85a5", "bot_token": "xoxb-1-2-abc"}
    monkeypatch.setattr("accessctl.chat.slack.parameters.get_secret", lambda name, **_: dict(secret))

    credentials = slack_credentials("accessctl/slack")

    assert credentials.bot_token.get_secret_value() == "xoxb-1-2-abc"
    assert credentials.signing_secret.get_secret_value() == secret["signing_secret"]
    assert "xoxb-1-2-abc" not in repr(credentials) and secret["signing_secret"] not in str(credentials)


BAD_SECRETS = {
    "no bot token": {"signing_secret": "s3cr3t-value"},
    "user token": {"signing_secret": "s3cr3t-value", "bot_token": "xoxp-user-token-value"},
    "empty signing secret": {"signing_secret": "", "bot_token": "xoxb-1-2-abc"},
}


@pytest.mark.parametrize("secret", BAD_SECRETS.values(), ids=BAD_SECRETS.keys())
def test_given_a_malformed_slack_secret_when_read_then_the_error_names_fields_not_values(
    monkeypatch: pytest.MonkeyPatch, secret: dict[str, str]
) -> None:
    monkeypatch.setattr("accessctl.chat.slack.parameters.get_secret", lambda name, **_: dict(secret))

    with pytest.raises(ChatError, match="secret accessctl/slack is malformed") as raised:
        slack_credentials("accessctl/slack")
    assert all(value not in str(raised.value) for value in secret.values() if value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_given_credentials_when_built_then_the_model_is_frozen() -> None:
    credentials = SlackCredentials.model_validate({"signing_secret": "abc", "bot_token": "xoxb-x"})
    with pytest.raises(ValueError):
        credentials.bot_token = credentials.signing_secret  # type: ignore[misc]
