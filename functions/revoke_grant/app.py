"""Revoke one grant: at expiry, early on request, or to compensate a half-made grant."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.dependencies import default_dependencies
from accessctl.grants import revoke_grant
from accessctl.models import RevokeInput
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=RevokeInput)
def lambda_handler(event: RevokeInput, context: LambdaContext) -> dict[str, Any]:
    revocation = revoke_grant(event.request_id, event.reason, event.actor, default_dependencies(), event.failure())
    return asdict(revocation)
