"""Notifications: one interface, with SNS as the channel every deployment has.

Chat channels (Slack, Teams) implement :class:`Notifier` too, and :class:`FanOutNotifier` sends
to all of them. A failed notification never fails a grant or a revocation (the workflow catches
it), but it is logged and counted (metric ``NotificationFailures``, dimension ``channel``).

The workflow's notification step may run again (its function timed out, Lambda failed to answer):
each channel is then given a request's event at most once (:class:`OnceNotifier`, claims in the
chat-ops table), so a retry sends only to the channels the earlier run did not reach.

Approvers are asked through an :class:`ApprovalChannel` (Slack: :class:`SlackApprovalChannel`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast, get_args

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from accessctl.aws import call, error_code, transient_errors_surface
from accessctl.chat import require_webhook_url
from accessctl.errors import ApprovalChannelError, ChatError, TransientError
from accessctl.models import AccessRequest, Approval, MessageRef, NotifyEvent, to_iso, utc_now
from accessctl.observability import SERVICE, logger, metrics

if TYPE_CHECKING:
    # Imported where used instead: slack_sdk costs ~0.2 s of cold start, and the grant and sweep
    # functions import this module for SNS alone.
    from accessctl.chat.slack import SlackApi
    from accessctl.config import Settings

NOTIFY_EVENTS = ("GRANTED", "EXTENDED", "DENIED", "REVOKED", "FAILED")
# The events a requester is told about in chat (the workflow's NotifyEvent); others (BREAK_GLASS,
# TAMPERED, ORPHAN_REMOVED) are for the operators' channels only.
REQUESTER_EVENTS: frozenset[str] = frozenset(get_args(NotifyEvent))
TEAMS_TIMEOUT_SECONDS = 10


class Notifier(Protocol):
    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None: ...


def summary(event: str, request: AccessRequest) -> str:
    # A chat request names the person it is for; a signed one, the role and the signer.
    who = request.requested_by if request.requester else f"{request.role_name} ({request.principal_arn})"
    where = f"{request.database} as {request.db_user}"
    if event == "GRANTED" and request.grant is not None:
        return f"Access granted to {who} on {where} until {request.grant.expires_at}."
    if event == "EXTENDED" and request.grant is not None:
        return f"Access for {who} on {where} extended until {request.grant.expires_at} (grant {request.extends})."
    if event == "BREAK_GLASS":
        return f"BREAK-GLASS: {who} was granted {where} outside the normal rules ({request.reason})."
    if event == "DENIED":
        reason = request.decision.reason if request.decision else "no decision recorded"
        return f"Access denied to {who} on {where}: {reason}."
    if event == "REVOKED":
        return f"Access revoked for {who} on {where}."
    if event == "TAMPERED":
        return f"Grant {request.request_id} for {who} on {where} was changed after issue and has been removed."
    if event == "ORPHAN_REMOVED":
        return f"A leftover grant policy for {who} on {where} was found and removed."
    if event == "EXPIRED":
        return f"Access request {request.request_id} for {who} on {where} expired: the approvals did not come in time."
    if event == "EXPIRING" and request.grant is not None:
        return f"Access for {who} on {where} expires at {request.grant.expires_at}."
    return f"Access request {request.request_id} for {who} on {where} failed: {request.failure or 'see audit'}."


class SnsNotifier:
    channel = "sns"

    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        call(
            self._sns.publish,
            TopicArn=self._topic_arn,
            Subject=f"accessctl: {event.lower()} {request.database}"[:100],
            Message=json.dumps({"event": event, "summary": summary(event, request), "request_id": request.request_id}),
            MessageAttributes={
                "event": {"DataType": "String", "StringValue": event},
                "severity": {"DataType": "String", "StringValue": severity},
            },
        )

    def notice(self, event: str, subject: str, text: str, severity: str = "info") -> None:
        """An operators' notice about something no request record describes (e.g. an orphaned grant policy)."""
        call(
            self._sns.publish,
            TopicArn=self._topic_arn,
            Subject=f"accessctl: {event.lower()}"[:100],
            Message=json.dumps({"event": event, "summary": text, "subject": subject}),
            MessageAttributes={
                "event": {"DataType": "String", "StringValue": event},
                "severity": {"DataType": "String", "StringValue": severity},
            },
        )


class LogNotifier:
    """Used when no channel is configured: the notification still lands in the logs."""

    channel = "log"

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        log = logger.warning if severity == "high" else logger.info
        log(summary(event, request), extra={"request_id": request.request_id, "event": event, "severity": severity})

    def notice(self, event: str, subject: str, text: str, severity: str = "info") -> None:
        log = logger.warning if severity == "high" else logger.info
        log(text, extra={"subject": subject, "event": event, "severity": severity})


class OperatorNotifier(Notifier, Protocol):
    """The operators' channel (SNS, else the logs): request events, and notices about things no
    request record describes."""

    def notice(self, event: str, subject: str, text: str, severity: str = "info") -> None: ...


# ------------------------------------------------------------------ chat channels


class SlackNotifier:
    """Tells the requester in Slack (a DM from the bot) what happened to a request made from Slack.

    Requests made otherwise (the API, a chat-ops bot) are left to the other channels.
    ``approval_of`` (optional: the approvals store's lookup) lets a denial name who denied and an
    expiry name the deadline.
    """

    channel = "slack"

    def __init__(self, api: SlackApi, approval_of: Callable[[str], Approval | None] | None = None) -> None:
        self._api = api
        self._approval_of = approval_of

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        from accessctl.chat.blocks import requester_update

        slack = request.requester.slack if request.requester else None
        if slack is None:
            logger.debug("not a Slack request: no Slack message", extra={"request_id": request.request_id})
            return
        if event not in REQUESTER_EVENTS:
            logger.debug("not a requester event: no Slack message", extra={"event": event})
            return
        approval = (
            self._approval_of(request.request_id) if self._approval_of and event in ("DENIED", "EXPIRED") else None
        )
        message = requester_update(cast(NotifyEvent, event), request, approval)
        self._api.direct_message(slack.user_id, message)


class TeamsWebhookNotifier:
    """Posts the summary as an Adaptive Card to a Microsoft Teams incoming webhook (or a Workflows webhook).

    The URL is a credential (it carries the webhook's key): it is never logged.
    """

    channel = "teams"

    def __init__(self, webhook_url: str, timeout: int = TEAMS_TIMEOUT_SECONDS) -> None:
        self._url = require_webhook_url(webhook_url.strip())
        self._timeout = timeout

    @staticmethod
    def card(event: str, request: AccessRequest, severity: str = "info") -> dict[str, Any]:
        """The message body: one Adaptive Card with a title and the summary."""
        title = f"accessctl: {event.lower().replace('_', ' ')} on {request.database}"
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {
                                "type": "TextBlock",
                                "text": title,
                                "weight": "Bolder",
                                "size": "Medium",
                                "color": "Attention" if severity == "high" else "Default",
                                "wrap": True,
                            },
                            {"type": "TextBlock", "text": summary(event, request), "wrap": True},
                            {
                                "type": "TextBlock",
                                "text": f"Request {request.request_id}",
                                "isSubtle": True,
                                "wrap": True,
                            },
                        ],
                    },
                }
            ],
        }

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        body = json.dumps(self.card(event, request, severity)).encode()
        http_request = urllib.request.Request(
            self._url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self._timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            status = int(error.code)
        except OSError as error:  # URLError, timeouts
            raise TransientError(f"Teams webhook not reachable: {type(error).__name__}") from error
        if status == 429 or status >= 500:
            raise TransientError(f"Teams webhook failed for now: HTTP {status}")
        if not 200 <= status < 300:
            raise ChatError(f"Teams webhook refused the message: HTTP {status}")


def _channel_name(notifier: Notifier) -> str:
    return str(getattr(notifier, "channel", type(notifier).__name__))


def count_notification_failure(channel: str) -> None:
    """One ``NotificationFailures`` data point for ``channel`` (its own EMF record, so the
    dimension does not attach to the function's other metrics)."""
    with single_metric(
        name="NotificationFailures",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="channel", value=channel)


class FanOutNotifier:
    """Sends to every channel; one failing never stops the others.

    Each failure is logged and counted. It raises only when *every* channel failed and at least
    one failure is transient: then a retry of the whole step duplicates nothing and may succeed.
    Once any channel delivered, it never raises (a retry would send that channel's message twice).
    """

    channel = "fan-out"

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self._notifiers = list(notifiers)

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        failures: list[Exception] = []
        for notifier in self._notifiers:
            channel = _channel_name(notifier)
            try:
                notifier.send(event, request, severity)
            except Exception as error:  # isolate each channel
                failures.append(error)
                logger.exception(
                    "notification failed",
                    extra={"channel": channel, "event": event, "request_id": request.request_id},
                )
                count_notification_failure(channel)
        if failures and len(failures) == len(self._notifiers):
            transient = [error for error in failures if isinstance(error, TransientError)]
            if transient:
                raise TransientError(f"every notification channel failed ({len(failures)}); retrying may help")


# ------------------------------------------------------------------ at most once per channel

NOTIFICATION_PREFIX = "notification#"
NOTIFICATION_ITEM_DAYS = 30  # longer than any grant, approval wait and workflow retry; TTL removes the claim


def notification_key(event: str, request: AccessRequest, channel: str) -> str:
    """One delivery: a request's event on one channel.

    A warning names the expiry it warns of: an extended grant is warned again, about its new expiry.
    """
    parts = [request.request_id, event]
    if event == "EXPIRING" and request.grant is not None:
        parts.append(request.grant.expires_at)
    parts.append(channel)
    return NOTIFICATION_PREFIX + "#".join(parts)


class DeliveryClaims:
    """Which notifications were handed to a channel: one item each in the chat-ops table (key ``pk``).

    A claim is taken (conditional put) before the channel is called and released only when the
    channel reports that it did not deliver. A run stopped while sending (its function timed out)
    leaves its claim: the step run again does not send that notification a second time.
    """

    def __init__(self, table: Any) -> None:
        self._table = table

    def claim(self, key: str) -> bool:
        """True if this call now holds ``key``; False if an earlier run took it."""
        item = {
            "pk": key,
            "claimed_at": to_iso(utc_now()),
            "expires_at_epoch": int((utc_now() + timedelta(days=NOTIFICATION_ITEM_DAYS)).timestamp()),
        }
        try:
            with transient_errors_surface():
                self._table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, key: str) -> None:
        with transient_errors_surface():
            self._table.delete_item(Key={"pk": key})


class OnceNotifier:
    """Hands each (request, event) to the wrapped channel at most once, across retries of the step.

    Claimed before sending, so a send cut short by a timeout is never repeated (a possibly missing
    message is preferred to a duplicate); released when the channel raised, which means it did not
    deliver, so a retry of the step sends it then.
    """

    def __init__(self, notifier: Notifier, claims: DeliveryClaims) -> None:
        self._notifier = notifier
        self._claims = claims
        self.channel = _channel_name(notifier)

    def send(self, event: str, request: AccessRequest, severity: str = "info") -> None:
        key = notification_key(event, request, self.channel)
        if not self._claims.claim(key):
            logger.info(
                "notification already handed to this channel; not sent again",
                extra={"channel": self.channel, "event": event, "request_id": request.request_id},
            )
            return
        try:
            self._notifier.send(event, request, severity)
        except Exception:
            try:
                self._claims.release(key)
            except Exception:  # the claim stays: a retry will not send this one (logged, not raised over the cause)
                logger.exception(
                    "notification claim not released; a retry will not send it",
                    extra={"channel": self.channel, "event": event, "request_id": request.request_id},
                )
            raise


def build_notifier(settings: Settings, sns: Any, claims: DeliveryClaims | None = None) -> Notifier:
    """The deployment's notifier: SNS (if a topic), Slack DMs (if a Slack app), Teams (if a webhook).

    With none of them, notifications go to the logs. A chat channel whose secret cannot be read
    is left out (logged and counted), so the others still work. With ``claims`` (the workflow's
    notification step), each channel sends a request's event at most once (:class:`OnceNotifier`).
    """
    notifiers: list[Notifier] = []
    if settings.notify_topic_arn:
        notifiers.append(SnsNotifier(sns, settings.notify_topic_arn))
    if settings.slack_secret_name:
        try:
            from accessctl.chat.slack import SlackApi

            notifiers.append(SlackNotifier(SlackApi.from_settings(settings)))
        except Exception:
            logger.exception("Slack notifications are off: the Slack app could not be set up")
            count_notification_failure(SlackNotifier.channel)
    if settings.teams_webhook_secret_name:
        try:
            notifiers.append(TeamsWebhookNotifier(teams_webhook_url(settings.teams_webhook_secret_name)))
        except Exception:
            logger.exception("Teams notifications are off: the webhook URL could not be read")
            count_notification_failure(TeamsWebhookNotifier.channel)
    if not notifiers:
        return LogNotifier()
    if claims is not None:
        notifiers = [OnceNotifier(notifier, claims) for notifier in notifiers]
    return notifiers[0] if len(notifiers) == 1 else FanOutNotifier(notifiers)


def deployment_notifier(settings: Settings, sns: Any) -> Notifier:
    """The deployment's notifier for a request's events, each channel sending an event of a request at
    most once, whoever sends it: the workflow's notification step (retried or not) and the sweeper
    share the claims in the chat-ops table."""
    from accessctl.aws import resource

    table = settings.approvals_table
    return build_notifier(settings, sns, DeliveryClaims(resource("dynamodb").Table(table)) if table else None)


def teams_webhook_url(secret_name: str) -> str:
    """The Teams webhook URL, stored as the whole secret string (cached 5 minutes)."""
    from aws_lambda_powertools.utilities import parameters

    return require_webhook_url(str(parameters.get_secret(secret_name, max_age=300)).strip())


# ------------------------------------------------------------------ approvers


class SlackApprovalChannel:
    """Asks the approver group in its Slack channel; updates every posted message once decided.

    ``channels`` maps an approver group to a channel id (``Settings.approval_channels``).
    """

    def __init__(self, api: SlackApi, channels: dict[str, str]) -> None:
        self._api = api
        self._channels = dict(channels)

    def channel_for(self, approver_group: str) -> str:
        channel = self._channels.get(approver_group)
        if not channel:
            raise ApprovalChannelError(
                f"no Slack channel for approver group {approver_group!r}: "
                f"add {approver_group}=<channel id> to the SlackApprovalChannels parameter"
            )
        return channel

    def ask(self, request: AccessRequest, approval: Approval) -> list[MessageRef]:
        """Post the approval request; the refs returned belong in ``approval.messages``."""
        from accessctl.chat.blocks import approval_request

        channel = self.channel_for(approval.approver_group)
        return [self._api.post(channel, approval_request(request, approval))]

    def show_decision(self, request: AccessRequest, approval: Approval) -> None:
        """Update every message in ``approval.messages``; one failing never stops the others.

        Raises the first failure once all were tried (the caller logs it; nothing is undone).
        """
        from accessctl.chat.blocks import approval_decided

        message = approval_decided(request, approval)
        failures: list[Exception] = []
        for ref in approval.messages:
            try:
                self._api.update(ref, message)
            except Exception as error:
                failures.append(error)
                logger.exception(
                    "approval message not updated",
                    extra={"request_id": request.request_id, "channel": ref.channel, "ts": ref.ts},
                )
                count_notification_failure("slack-approval")
        if failures:
            raise failures[0]
