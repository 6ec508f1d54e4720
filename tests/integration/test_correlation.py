"""One correlation id per request in the structured logs: the access request id, from the API that
takes it through every workflow function (API Gateway's own request id is kept beside it)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

from accessctl.observability import logger
from tests.integration.test_api_handler import ORDERS_ROLE, api, call, extra_api_env  # noqa: F401
from tests.support.events import load_event
from tests.support.handlers import FakeLambdaContext

API_GATEWAY_REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"  # events/api_*.json


def _logged(action: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    """What ``action`` returns, and the JSON lines the shared logger wrote meanwhile (its own stream)."""
    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)
    try:
        result = action()
    finally:
        logger.registered_handler.setStream(previous)
    return result, [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


def _lines(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message") == message]


def test_given_a_submission_when_logged_then_the_access_request_id_is_the_correlation_id(
    api: ModuleType,  # noqa: F811
) -> None:
    (status, answer), lines = _logged(lambda: call(api, "api_post_request.json"))

    assert status == 202
    (submitted,) = _lines(lines, "request submitted")
    assert submitted["correlation_id"] == answer["request_id"]
    assert submitted["api_request_id"] == API_GATEWAY_REQUEST_ID


def test_given_a_later_api_call_about_no_request_then_no_earlier_request_id_is_left_on_its_lines(
    api: ModuleType,  # noqa: F811
) -> None:
    _, answer = call(api, "api_post_request.json")
    event = load_event("api_list_grants.json")
    event["requestContext"]["identity"]["userArn"] = ORDERS_ROLE

    def list_then_log() -> None:
        api.lambda_handler(event, FakeLambdaContext())
        logger.info("probe")

    _, lines = _logged(list_then_log)

    (probe,) = _lines(lines, "probe")
    assert probe.get("correlation_id") != answer["request_id"] and "api_request_id" not in probe


def test_every_handler_starts_each_invocation_with_a_clean_logger() -> None:
    # Keys one invocation added (a request's correlation id, api_request_id) never reach the next
    # one's lines, nor, where functions share a process (the local stack), another function's.
    import re

    from tests.support.template import PROJECT_ROOT

    handlers = sorted((PROJECT_ROOT / "functions").glob("*/app.py"))
    decorators = {
        path.parent.name: re.findall(r"@logger\.inject_lambda_context\b[^\n]*", path.read_text()) for path in handlers
    }
    assert handlers and all(found for found in decorators.values()), decorators
    assert {name: found for name, found in decorators.items() if not all("clear_state=True" in d for d in found)} == {}
