"""Workflow step: the final status and audit record of a request that ends without a live grant."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.chatops import approval_channel
from accessctl.dependencies import default_dependencies
from accessctl.grants import record_outcome
from accessctl.models import OutcomeInput
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=OutcomeInput)
def lambda_handler(event: OutcomeInput, context: LambdaContext) -> dict[str, Any]:
    channel = approval_channel() if event.outcome == "EXPIRED" else None
    record_outcome(event.request_id, event.outcome, event.detail(), default_dependencies(), channel)
    return {"request_id": event.request_id, "recorded": event.outcome}
