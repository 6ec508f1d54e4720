"""Errors raised by the accessctl client. Every one carries a message fit to show a person."""

from __future__ import annotations

from typing import Any


class AccessctlError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status when the API answered (``None`` for local or transport problems);
    ``body`` is the decoded error body when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status is not None else self.message


class ConfigurationError(AccessctlError):
    """Missing or unusable local configuration: API URL, region, credentials, arguments."""


class TransportError(AccessctlError):
    """The API could not be reached, or answered something that is not the API's JSON.

    ``retryable`` is true for connection-level failures (refused, reset, timed out).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ApiError(AccessctlError):
    """The API answered with an error status."""

    @property
    def transient(self) -> bool:
        """Whether retrying the same call later may succeed (throttling, server-side trouble)."""
        return self.status is not None and (self.status == 429 or self.status >= 500)


class AuthError(ApiError):
    """401/403: the signature or the caller's IAM permissions were refused."""


class NotFoundError(ApiError):
    """404: no such request or grant (or not visible to this caller)."""


class ConflictError(ApiError):
    """409: the operation conflicts with the current state (e.g. revoking a revoked grant)."""


class ValidationError(ApiError):
    """400/422: the API rejected the input."""


class ThrottledError(ApiError):
    """429: too many requests."""


class ServerError(ApiError):
    """5xx: the API failed."""


class WaitTimeoutError(AccessctlError):
    """``wait`` ran out of time before the request reached a final status. ``last`` is the last view seen."""

    def __init__(self, message: str, *, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: ThrottledError,
}


def api_error(status: int, body: Any, fallback: str) -> ApiError:
    """Build the right ``ApiError`` subclass from an error answer, extracting the server's message."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(_message_of(body) or fallback, status=status, body=body)


def _message_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, list) and detail:
        # Powertools' validation answer: {"statusCode": 422, "detail": [{"loc": [...], "type": ..., "msg"?: ...}]}
        problems = []
        for item in detail:
            if not isinstance(item, dict):
                continue
            loc = ".".join(str(part) for part in item.get("loc") or [] if part != "body") or "request"
            what = item.get("msg") or item.get("type") or "invalid"
            problems.append(f"{loc}: {what}")
        return "invalid request: " + "; ".join(problems)
    for key in ("message", "Message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None
