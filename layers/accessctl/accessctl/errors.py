"""Domain errors, mapped to HTTP answers in one place (the API resolver's exception handlers).

Workflow steps raise them too: Step Functions sees the class name as the error name, so
``TransientError`` is what the state machine's ``Retry`` blocks name.
"""


class AccessctlError(Exception):
    """Base class: the message is safe to show to the caller."""

    status_code = 400


class BadRequestError(AccessctlError):
    status_code = 400


class NotAuthenticatedError(AccessctlError):
    status_code = 401


class ForbiddenError(AccessctlError):
    status_code = 403


class NotFoundError(AccessctlError):
    status_code = 404


class ConflictError(AccessctlError):
    status_code = 409


class UnsafeGrantError(AccessctlError):
    """A policy document failed the grant checker; it is never written."""

    status_code = 500


class TransientError(AccessctlError):
    """Throttling or a passing AWS fault: the caller (or the state machine) should retry."""

    status_code = 503


class GrantSlotBusy(TransientError):
    """Another request's grant for the same access is being made: retry (longer than for throttling)
    and extend it once it is live. Its own name, so the workflow's Retry can wait for it longer."""


class QuotaExceededError(AccessctlError):
    """An IAM quota would be exceeded; refused before any change is made."""

    status_code = 409


class ChatError(AccessctlError):
    """A chat platform (Slack, Teams) refused a call for a reason retrying will not fix.

    ``code`` is the platform's error code (Slack's ``error`` field, e.g. ``channel_not_found``).
    """

    status_code = 502

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ApprovalChannelError(AccessctlError):
    """An approver group has no chat channel configured, so nobody could be asked."""

    status_code = 500
