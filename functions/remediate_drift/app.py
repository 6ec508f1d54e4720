"""Drift remediation: a CloudTrail event (via EventBridge) or the schedule's full scan; one rule engine."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.observability import logger, metrics, tracer
from accessctl.remediation import default_remediator


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return default_remediator().handle(event).summary()
