"""Workflow step: decide a request against the access rules and the live estate."""

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.access_rules import load_access_rules
from accessctl.config import get_settings
from accessctl.dependencies import default_dependencies
from accessctl.grants import evaluate_request
from accessctl.models import StepInput
from accessctl.observability import logger, metrics, tracer

# Shipped with this function, reviewed like code; loaded (and validated) once per cold start.
ACCESS_RULES = load_access_rules(Path(__file__).parent / get_settings().access_rules_file)


@logger.inject_lambda_context(correlation_id_path="request_id")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StepInput)
def lambda_handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    decision = evaluate_request(event.request_id, ACCESS_RULES, default_dependencies())
    return decision.model_dump(mode="json")
