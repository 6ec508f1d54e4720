"""A thin Slack Web API client: the few methods accessctl uses, with Slack's errors mapped onto ours.

- rate limiting (HTTP 429, ``ratelimited``), Slack's 5xx and its documented passing faults, and an
  unreachable Slack become :class:`TransientError`, which the state machine retries with backoff;
- every other refusal becomes :class:`ChatError` carrying Slack's error code.

A rate-limited call is retried here once, and only when Slack asks for a short wait
(``Retry-After`` of at most ``rate_limit_wait_seconds``): a Lambda should not sleep through a long
pause that Step Functions' own retry spends for free.

The bot token and the signing secret are never logged: the SDK gets a logger of its own that
does not emit debug records (those hold message bodies and response URLs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import TransformParameterError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from accessctl.chat import require_webhook_url
from accessctl.chat.blocks import ChatMessage
from accessctl.config import Settings
from accessctl.errors import ChatError, TransientError
from accessctl.identity import SlackUser
from accessctl.models import MessageRef

DEFAULT_API_URL = "https://slack.com/api/"
SECRET_MAX_AGE_SECONDS = 300
# Slack's documented errors that say "try again later", whatever the HTTP status.
TRANSIENT_SLACK_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

# The SDK's own logger: INFO and up only (its debug records carry message bodies and URLs).
_SDK_LOGGER = logging.getLogger("accessctl.chat.slack_sdk")
_SDK_LOGGER.setLevel(logging.INFO)


class SlackCredentials(BaseModel):
    """The Slack app's secrets, as stored in one Secrets Manager secret (JSON)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    signing_secret: SecretStr = Field(min_length=1)
    bot_token: SecretStr

    @field_validator("bot_token")
    @classmethod
    def _is_a_bot_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token (xoxb-...)")
        return value


def slack_credentials(secret_name: str) -> SlackCredentials:
    """Read and check the Slack secret (``{"signing_secret": ..., "bot_token": ...}``), cached 5 minutes."""
    try:
        value = parameters.get_secret(secret_name, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except TransformParameterError as error:
        raise ChatError(f"secret {secret_name} is not JSON") from error
    try:
        return SlackCredentials.model_validate(value)
    except ValidationError as error:
        # Name the fields only: pydantic's message would quote the values.
        problems = sorted(
            {f"{'.'.join(str(part) for part in item['loc']) or 'secret'}: {item['msg']}" for item in error.errors()}
        )
        raise ChatError(f"secret {secret_name} is malformed ({'; '.join(problems)})") from None


class ShortRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Retry a rate-limited call only when Slack asks for a wait of at most ``max_wait_seconds``."""

    def __init__(self, max_wait_seconds: int, max_retry_count: int = 1) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is not None and wait <= self.max_wait_seconds


def _retry_after(headers: dict[str, Any]) -> int | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            first = value[0] if isinstance(value, list) and value else value
            try:
                return int(str(first))
            except ValueError:
                return None
    return None


@contextmanager
def slack_errors(method: str) -> Iterator[None]:
    """Map what the SDK raises onto :class:`TransientError` (retry) or :class:`ChatError` (don't)."""
    try:
        yield
    except SlackApiError as error:
        status = int(error.response.status_code)
        data = error.response.data
        code = str(data.get("error") or "") if isinstance(data, dict) else ""
        if status == 429 or code == "ratelimited":
            wait = _retry_after(dict(error.response.headers))
            after = f"; retry after {wait} s" if wait is not None else ""
            raise TransientError(f"Slack {method} is rate limited{after}") from error
        if status >= 500 or code in TRANSIENT_SLACK_ERRORS:
            raise TransientError(f"Slack {method} failed for now: {code or f'HTTP {status}'}") from error
        raise ChatError(f"Slack {method} failed: {code or f'HTTP {status}'}", code=code or None) from error
    except SlackClientError as error:
        raise ChatError(f"Slack {method} could not be called: {type(error).__name__}") from error
    except OSError as error:  # URLError, timeouts, connection resets (after the SDK's own retry)
        raise TransientError(f"Slack not reachable for {method}: {type(error).__name__}") from error


class SlackApi:
    """The Slack Web API methods accessctl uses, for one bot token."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        timeout: int = 10,
        rate_limit_wait_seconds: int = 3,
    ) -> None:
        url = base_url or DEFAULT_API_URL
        self._timeout = timeout
        self._retry_handlers: list[RetryHandler] = [
            ConnectionErrorRetryHandler(max_retry_count=1),
            ShortRateLimitRetryHandler(max_wait_seconds=rate_limit_wait_seconds),
        ]
        self._client = WebClient(
            token=token,
            base_url=url if url.endswith("/") else url + "/",
            timeout=timeout,
            logger=_SDK_LOGGER,
            retry_handlers=self._retry_handlers,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackApi:
        """The client for the deployment's Slack app (token from ``SLACK_SECRET_NAME``)."""
        if not settings.slack_secret_name:
            raise ChatError("Slack is not configured (SLACK_SECRET_NAME is unset)")
        credentials = slack_credentials(settings.slack_secret_name)
        return cls(credentials.bot_token.get_secret_value(), base_url=settings.slack_api_url)

    def post(self, channel: str, message: ChatMessage) -> MessageRef:
        """``chat.postMessage``; the answer names the message so it can be updated later."""
        with slack_errors("chat.postMessage"):
            answer = self._client.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False
            )
        return MessageRef(channel=str(answer["channel"]), ts=str(answer["ts"]))

    def update(self, ref: MessageRef, message: ChatMessage) -> None:
        """``chat.update``: replace a message the bot posted, for everyone who sees it."""
        with slack_errors("chat.update"):
            self._client.chat_update(channel=ref.channel, ts=ref.ts, text=message.text, blocks=message.blocks)

    def post_ephemeral(self, channel: str, user: str, message: ChatMessage) -> None:
        """``chat.postEphemeral``: a message in ``channel`` that only ``user`` sees."""
        with slack_errors("chat.postEphemeral"):
            self._client.chat_postEphemeral(channel=channel, user=user, text=message.text, blocks=message.blocks)

    def direct_message(self, user_id: str, message: ChatMessage) -> MessageRef:
        """A message in the bot's DM with ``user_id`` (``conversations.open``, then ``chat.postMessage``)."""
        with slack_errors("conversations.open"):
            opened = self._client.conversations_open(users=[user_id])
        channel = opened.get("channel") or {}
        if not isinstance(channel, dict) or not channel.get("id"):
            raise ChatError("Slack conversations.open answered without a channel id")
        return self.post(str(channel["id"]), message)

    def user(self, user_id: str) -> SlackUser:
        """``users.info`` (with the email, which needs the users:read.email scope)."""
        with slack_errors("users.info"):
            answer = self._client.users_info(user=user_id)
        user = answer.get("user")
        if not isinstance(user, dict):
            raise ChatError("Slack users.info answered without a user")
        return SlackUser.of(user)

    def respond(
        self, response_url: str, message: ChatMessage, *, replace_original: bool = False, ephemeral: bool = True
    ) -> None:
        """Answer a slash command or a click through its ``response_url`` (valid 30 minutes, 5 uses)."""
        client = WebhookClient(
            require_webhook_url(response_url),
            timeout=self._timeout,
            logger=_SDK_LOGGER,
            retry_handlers=self._retry_handlers,
        )
        with slack_errors("response_url"):
            answer = client.send(
                text=message.text,
                blocks=message.blocks,
                response_type="ephemeral" if ephemeral else "in_channel",
                replace_original=replace_original,
            )
        if answer.status_code == 429 or answer.status_code >= 500:
            raise TransientError(f"Slack response_url failed for now: HTTP {answer.status_code}")
        if answer.status_code != 200:
            # Slack answers e.g. 404 "expired_url" or "used_url": short codes, no secrets.
            code = (answer.body or "").strip()[:64] or None
            raise ChatError(
                f"Slack response_url refused the message: HTTP {answer.status_code} {code or ''}".strip(), code
            )
