"""Workflow step: tell people what happened to a request (each channel at most once per event, across retries)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.aws import resource
from accessctl.dependencies import default_dependencies
from accessctl.models import NotifyInput
from accessctl.notify import DeliveryClaims, Notifier, build_notifier
from accessctl.observability import logger, metrics, tracer


def _notifier() -> Notifier:
    deps = default_dependencies()
    table = deps.settings.approvals_table
    claims = DeliveryClaims(resource("dynamodb").Table(table)) if table else None
    return build_notifier(deps.settings, deps.sns, claims)


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=NotifyInput)
def lambda_handler(event: NotifyInput, context: LambdaContext) -> dict[str, Any]:
    request = default_dependencies().grants.get(event.request_id)
    _notifier().send(event.event, request)
    return {"request_id": event.request_id, "notified": event.event}
