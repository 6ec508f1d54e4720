"""AWS clients, created once per process and shared (boto3 clients are thread-safe).

Retries use botocore's adaptive mode so throttling is absorbed here first; what is still
throttled after that surfaces as :class:`TransientError` for the state machine to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

from accessctl.errors import TransientError

_CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=5, read_timeout=20)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "ServiceFailure",
    }
)

T = TypeVar("T")


@cache
def client(service_name: str) -> Any:
    """A shared boto3 client (endpoint and region come from the standard AWS environment)."""
    return boto3.session.Session().client(service_name, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


@cache
def resource(service_name: str) -> Any:
    return boto3.session.Session().resource(service_name, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def transient_errors_surface() -> Iterator[None]:
    """Turn throttling and connection faults into :class:`TransientError` (retryable by design)."""
    try:
        yield
    except ClientError as error:
        if error_code(error) in THROTTLING_CODES:
            raise TransientError(f"AWS is throttling or unavailable: {error_code(error)}") from error
        raise
    except (ConnectionError, EndpointConnectionError) as error:
        raise TransientError(f"AWS endpoint not reachable: {error}") from error


def call(operation: Callable[..., T], /, **kwargs: Any) -> T:
    """Call one AWS operation, surfacing throttling as :class:`TransientError`."""
    with transient_errors_surface():
        return operation(**kwargs)
