"""Workflow step: the final status and audit record of a request that ends without a live grant,
and, when the wait for approval timed out, how the approval ended (a decision made in time is acted on)."""

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
    channel = approval_channel() if event.outcome in ("EXPIRED", "APPROVAL_TIMED_OUT") else None
    approval = record_outcome(event.request_id, event.outcome, event.detail(), default_dependencies(), channel)
    # The timeout step's answer is what the workflow routes on: grant, deny or expire.
    answer: dict[str, Any] = {"request_id": event.request_id, "recorded": event.outcome}
    if approval is not None:
        answer["approval"] = approval.model_dump(mode="json")
    return answer
