"""The Powertools objects, created once and shared by every function.

The tracer is made on first use. Powertools' ``Tracer()`` imports the X-Ray SDK (and patches
botocore) even when tracing is off, which costs a few hundred milliseconds of every cold start.
When tracing is off (``POWERTOOLS_TRACE_DISABLED``, or outside Lambda / under SAM local, the same
rules as Powertools) the decorators hand the function back as it is and the SDK is never imported.
In Lambda with tracing on, the first decorator builds the real tracer at import time, as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

SERVICE = "accessctl"

F = TypeVar("F", bound=Callable[..., Any])

_FALSE = frozenset({"", "0", "false", "f", "n", "no", "off"})


def tracing_disabled() -> bool:
    """Powertools' rules: disabled by ``POWERTOOLS_TRACE_DISABLED``, outside Lambda, or under SAM local / Chalice."""
    if os.getenv("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in _FALSE:
        return True
    in_lambda = bool(os.getenv("LAMBDA_TASK_ROOT"))
    emulated = bool(os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE"))
    return not in_lambda or emulated


class LazyTracer:
    """Stands for ``aws_lambda_powertools.Tracer``: the handlers' decorators, and any other attribute
    through the real tracer, made on first need."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Any = None

    @property
    def real(self) -> Any:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self._service)
        return self._tracer

    def capture_lambda_handler(self, lambda_handler: F | None = None, **options: Any) -> Any:
        if tracing_disabled():
            return lambda_handler if lambda_handler is not None else _unchanged
        return self.real.capture_lambda_handler(lambda_handler, **options)

    def capture_method(self, method: F | None = None, **options: Any) -> Any:
        if tracing_disabled():
            return method if method is not None else _unchanged
        return self.real.capture_method(method, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _unchanged(function: F) -> F:
    return function


logger = Logger(service=SERVICE)
tracer = LazyTracer(service=SERVICE)
metrics = Metrics(namespace=SERVICE, service=SERVICE)


def correlate(request_id: str) -> None:
    """From here on, this invocation's log lines carry the access request id as their correlation id,
    as every workflow function's do from their first line. A different correlation id set before
    (API Gateway's request id) stays on the lines as ``api_request_id``. Handlers that call this clear
    their logger's state per invocation (``clear_state=True``)."""
    previous = logger.get_correlation_id()
    if previous and previous != request_id:
        logger.append_keys(api_request_id=previous)
    logger.set_correlation_id(request_id)
