"""Notifiers: the requester's Slack DM, the Teams webhook, and the fan-out that isolates channels."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from accessctl.chat.slack import SlackApi
from accessctl.config import Settings
from accessctl.errors import ChatError, TransientError
from accessctl.models import AccessRequest, ApprovalStatus
from accessctl.notify import (
    DeliveryClaims,
    FanOutNotifier,
    LogNotifier,
    Notifier,
    OnceNotifier,
    SlackNotifier,
    SnsNotifier,
    TeamsWebhookNotifier,
    build_notifier,
    summary,
)
from accessctl_local import FakeSlack
from tests.chat.conftest import REQUESTER_SLACK_ID, TOKEN, granted, pending_approval, slack_request
from tests.support.template import create_table


class Recording:
    channel = "recording"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        self.sent.append((event, request.request_id))


class Failing:
    def __init__(self, channel: str, error: Exception) -> None:
        self.channel = channel
        self._error = error

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        raise self._error


def failure_metrics(output: str) -> list[str]:
    """The channels of the NotificationFailures data points printed as EMF."""
    channels = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("NotificationFailures") == [1.0]:
            channels.append(record["channel"])
    return channels


# ------------------------------------------------------------------ Slack DMs


def test_given_a_slack_request_when_granted_then_the_requester_gets_a_dm(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    SlackNotifier(slack_api).send("GRANTED", granted(slack_request()))

    [dm] = fake_slack.dm_messages(REQUESTER_SLACK_ID)
    assert dm["text"].startswith("Access granted to orders-prod as app_ro until 2026-12-03 15:35 UTC")


def test_given_an_api_request_when_granted_then_no_slack_message_is_sent(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    SlackNotifier(slack_api).send("GRANTED", granted(slack_request(requester=None)))

    assert fake_slack.calls() == []


def test_given_an_operator_event_when_notified_then_the_requester_gets_no_dm(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    SlackNotifier(slack_api).send("TAMPERED", granted(slack_request()), severity="high")

    assert fake_slack.calls() == []


def test_given_an_approvals_lookup_when_denied_then_the_dm_names_who_denied(
    fake_slack: FakeSlack, slack_api: SlackApi
) -> None:
    approval = pending_approval(
        status=ApprovalStatus.DENIED, decided_at="2026-12-03T15:11:00Z", decided_by=["dave@example.com"]
    )

    SlackNotifier(slack_api, approval_of=lambda request_id: approval).send("DENIED", slack_request())

    [dm] = fake_slack.dm_messages(REQUESTER_SLACK_ID)
    assert "denied by dave@example.com" in dm["text"]


# ------------------------------------------------------------------ Teams


@pytest.fixture
def teams_webhook() -> Iterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A loopback webhook: (url, bodies received, statuses to answer next — 200 when empty)."""
    received: list[dict[str, Any]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(json.loads(self.rfile.read(length)))
            status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"1")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhookb2/secret-key", received, statuses
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_given_a_teams_webhook_when_notified_then_an_adaptive_card_with_the_summary_is_posted(
    teams_webhook: tuple[str, list[dict[str, Any]], list[int]],
) -> None:
    url, received, _ = teams_webhook
    request = granted(slack_request())

    TeamsWebhookNotifier(url).send("GRANTED", request)

    [body] = received
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    shown = [block["text"] for block in attachment["content"]["body"]]
    assert summary("GRANTED", request) in shown


TEAMS_ANSWERS = {
    "throttled": (429, TransientError),
    "server error": (502, TransientError),
    "bad request": (400, ChatError),
}


@pytest.mark.parametrize(("status", "raised"), TEAMS_ANSWERS.values(), ids=TEAMS_ANSWERS.keys())
def test_given_teams_refuses_when_notified_then_the_error_says_whether_to_retry_and_hides_the_url(
    teams_webhook: tuple[str, list[dict[str, Any]], list[int]], status: int, raised: type[Exception]
) -> None:
    url, _, statuses = teams_webhook
    statuses.append(status)

    with pytest.raises(raised) as error:
        TeamsWebhookNotifier(url).send("GRANTED", granted(slack_request()))
    assert "secret-key" not in str(error.value)


@pytest.mark.parametrize("url", ["http://outlook.example/webhookb2/x", "not a url", "ftp://localhost/x"])
def test_given_a_webhook_url_that_is_not_https_when_configured_then_it_is_refused(url: str) -> None:
    with pytest.raises(ChatError, match="https is required"):
        TeamsWebhookNotifier(url)


# ------------------------------------------------------------------ fan-out


def test_given_a_failing_channel_when_fanning_out_then_the_others_still_get_it_and_the_failure_is_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, last = Recording(), Recording()
    notifier = FanOutNotifier([first, Failing("slack", ChatError("channel_not_found")), last])

    notifier.send("GRANTED", granted(slack_request()))

    assert first.sent == last.sent == [("GRANTED", slack_request().request_id)]
    assert failure_metrics(capsys.readouterr().out) == ["slack"]


def test_given_every_channel_fails_for_now_when_fanning_out_then_a_transient_error_asks_for_a_retry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    notifier = FanOutNotifier([Failing("sns", TransientError("throttled")), Failing("slack", ChatError("no"))])

    with pytest.raises(TransientError, match="every notification channel failed"):
        notifier.send("REVOKED", granted(slack_request()))
    assert failure_metrics(capsys.readouterr().out) == ["sns", "slack"]


def test_given_every_channel_refuses_for_good_when_fanning_out_then_nothing_is_raised() -> None:
    notifier = FanOutNotifier([Failing("teams", ChatError("gone")), Failing("slack", ChatError("no"))])

    notifier.send("REVOKED", granted(slack_request()))


# ------------------------------------------------------------------ what the notify function builds


def settings(**values: Any) -> Settings:
    return Settings.model_validate({"grants_table": "grants", "audit_table": "audit", **values})


class FakeSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        self.published.append(kwargs)
        return {"MessageId": "1"}


def test_given_no_channel_configured_when_building_then_notifications_go_to_the_logs() -> None:
    assert isinstance(build_notifier(settings(), sns=None), LogNotifier)


def test_given_only_a_topic_when_building_then_sns_alone_is_used() -> None:
    assert isinstance(build_notifier(settings(notify_topic_arn="arn:aws:sns:us-east-1:1:t"), sns=object()), SnsNotifier)


def test_given_slack_and_teams_secrets_when_notifying_then_sns_slack_and_teams_all_get_it(
    monkeypatch: pytest.MonkeyPatch,
    fake_slack: FakeSlack,
    teams_webhook: tuple[str, list[dict[str, Any]], list[int]],
) -> None:
    teams_url, teams_received, _ = teams_webhook
    secrets = {"accessctl/slack": {"signing_secret": "s3cr3t", "bot_token": TOKEN}, "accessctl/teams": teams_url}
    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.get_secret", lambda name, **_: secrets[name])
    sns = FakeSns()
    configured = settings(
        notify_topic_arn="arn:aws:sns:us-east-1:1:t",
        slack_secret_name="accessctl/slack",
        slack_api_url=fake_slack.api_url,
        teams_webhook_secret_name="accessctl/teams",
    )

    build_notifier(configured, sns=sns).send("GRANTED", granted(slack_request()))

    assert len(sns.published) == 1
    assert len(fake_slack.dm_messages(REQUESTER_SLACK_ID)) == 1
    assert len(teams_received) == 1


def test_given_an_unreadable_slack_secret_when_notifying_then_the_other_channels_still_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreadable(name: str, **_: Any) -> Any:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.get_secret", unreadable)
    sns = FakeSns()

    notifier = build_notifier(
        settings(notify_topic_arn="arn:aws:sns:us-east-1:1:t", slack_secret_name="accessctl/slack"), sns=sns
    )
    notifier.send("GRANTED", granted(slack_request()))

    assert len(sns.published) == 1
    assert failure_metrics(capsys.readouterr().out) == ["slack"]


SUMMARIES = {
    "expired": ("EXPIRED", "expired: the approvals did not come in time"),
    "expiring": ("EXPIRING", "expires at 2026-12-03T15:35:00Z"),
    "granted": ("GRANTED", "Access granted to alice@example.com on orders-prod as app_ro until 2026-12-03T15:35:00Z"),
}


@pytest.mark.parametrize(("event", "expected"), SUMMARIES.values(), ids=SUMMARIES.keys())
def test_given_a_chat_request_when_summarised_then_it_names_the_person_and_the_event(event: str, expected: str) -> None:
    assert expected in summary(event, granted(slack_request()))


# ------------------------------------------------------------------ the workflow's step run again


class Flaky:
    """A channel that fails as told (an Exception: it reports not delivering; a BaseException: the
    function was stopped mid-send, as a Lambda timeout stops it), then records what it is given."""

    def __init__(self, channel: str, *failures: BaseException) -> None:
        self.channel = channel
        self.sent: list[tuple[str, str]] = []
        self._failures = list(failures)

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        if self._failures:
            raise self._failures.pop(0)
        self.sent.append((event, request.request_id))


class StoppedMidSend(BaseException):
    """The step's function stopped while a channel was sending (nothing in the step catches it)."""


@pytest.fixture
def claims(aws_environment: None) -> Iterator[DeliveryClaims]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "ChatOpsTable", "chatops")
        yield DeliveryClaims(boto3.resource("dynamodb", region_name="us-east-1").Table("chatops"))


def once(claims: DeliveryClaims, *channels: Flaky) -> Notifier:
    """What the workflow's notification step sends through: each channel at most once per event."""
    return FanOutNotifier([OnceNotifier(channel, claims) for channel in channels])


def test_given_a_step_stopped_after_sns_delivered_when_run_again_then_sns_is_not_sent_twice_and_teams_gets_it(
    claims: DeliveryClaims,
) -> None:
    # Given SNS delivered, then the function was stopped before Teams was called
    request = granted(slack_request())
    sns = Flaky("sns")
    teams = Flaky("teams")
    with pytest.raises(StoppedMidSend):
        FanOutNotifier([OnceNotifier(sns, claims), Flaky("the function stopping", StoppedMidSend())]).send(
            "GRANTED", request
        )

    # When the step runs again over both channels
    once(claims, sns, teams).send("GRANTED", request)

    # Then SNS had it once, and Teams, never reached before, has it now
    assert sns.sent == [("GRANTED", request.request_id)]
    assert teams.sent == [("GRANTED", request.request_id)]


def test_given_a_channel_stopped_mid_send_when_the_step_runs_again_then_it_is_not_sent_again(
    claims: DeliveryClaims,
) -> None:
    # Given the function was stopped while Teams was sending (it may have been delivered)
    request = granted(slack_request())
    teams = Flaky("teams", StoppedMidSend())
    with pytest.raises(StoppedMidSend):
        once(claims, teams).send("REVOKED", request)

    # When the step runs again
    once(claims, teams).send("REVOKED", request)

    # Then it is not sent a second time (a possibly missing message rather than a duplicate)
    assert teams.sent == []


def test_given_every_channel_failed_to_deliver_when_the_step_is_retried_then_each_sends_once(
    claims: DeliveryClaims,
) -> None:
    # Given both channels report that they did not deliver (the step fails: a retry may help)
    request = granted(slack_request())
    sns = Flaky("sns", TransientError("throttled"))
    teams = Flaky("teams", TransientError("HTTP 503"))
    with pytest.raises(TransientError):
        once(claims, sns, teams).send("DENIED", request)

    # When the workflow retries the step, twice
    once(claims, sns, teams).send("DENIED", request)
    once(claims, sns, teams).send("DENIED", request)

    # Then each channel delivered exactly once
    assert sns.sent == teams.sent == [("DENIED", request.request_id)]


def test_given_a_warning_sent_when_the_grant_is_extended_then_the_new_expiry_is_warned_of_once(
    claims: DeliveryClaims,
) -> None:
    # Given the holder was warned of the first expiry
    sns = Flaky("sns")
    first = granted(slack_request())
    once(claims, sns).send("EXPIRING", first)
    assert first.grant is not None

    # When the grant is extended and the workflow warns (and a retried step warns again)
    extended = granted(slack_request(), expires_at="2026-12-03T16:35:00Z")
    once(claims, sns).send("EXPIRING", extended)
    once(claims, sns).send("EXPIRING", extended)
    once(claims, sns).send("EXPIRING", first)

    # Then one warning per expiry
    assert sns.sent == [("EXPIRING", first.request_id)] * 2
