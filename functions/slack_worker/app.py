"""Slack work, invoked asynchronously by the Slack endpoints: submit a member's request, count a click."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.access_requests import idempotency_config
from accessctl.chatops import default_chatops
from accessctl.observability import logger, metrics, tracer
from accessctl.slack_requests import SlackWork


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=SlackWork)
def lambda_handler(event: SlackWork, context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return default_chatops().handle(event)
