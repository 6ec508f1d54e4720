"""Workflow step: tell people what happened to a request (each channel at most once per event, across retries)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.dependencies import default_dependencies
from accessctl.models import NotifyInput
from accessctl.notify import deployment_notifier
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=NotifyInput)
def lambda_handler(event: NotifyInput, context: LambdaContext) -> dict[str, Any]:
    deps = default_dependencies()
    request = deps.grants.get(event.request_id)
    deployment_notifier(deps.settings, deps.sns).send(event.event, request)
    return {"request_id": event.request_id, "notified": event.event}
