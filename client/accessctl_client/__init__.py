"""accessctl client: request just-in-time IAM access to AWS RDS databases and connect with it.

Example::

    from accessctl_client import AccessctlClient

    client = AccessctlClient("https://abc.execute-api.eu-west-1.amazonaws.com/v1")
    submitted = client.submit("orders-demo", "app_rw", 15, "startup of orders-service")
    view = client.wait(submitted.request_id, timeout=300)
    if view.granted:
        url = client.connection_url(view, dbname="orders")
"""

from .client import API_URL_ENV, AccessctlClient, __version__, is_transient
from .connect import connection_env, connection_url, engine_family
from .duration import parse_duration
from .errors import (
    AccessctlError,
    ApiError,
    AuthError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ServerError,
    ThrottledError,
    TransportError,
    ValidationError,
    WaitTimeoutError,
)
from .models import TERMINAL_STATUSES, Connection, Decision, GrantRecord, RequestGrant, RequestView, Submission

__all__ = [
    "API_URL_ENV",
    "TERMINAL_STATUSES",
    "AccessctlClient",
    "AccessctlError",
    "ApiError",
    "AuthError",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "Decision",
    "GrantRecord",
    "NotFoundError",
    "RequestGrant",
    "RequestView",
    "ServerError",
    "Submission",
    "ThrottledError",
    "TransportError",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
    "connection_env",
    "connection_url",
    "engine_family",
    "is_transient",
    "parse_duration",
]
