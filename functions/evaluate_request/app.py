"""Workflow step: decide a request with the Cedar policies, over trusted signals only."""

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.config import get_settings
from accessctl.dependencies import default_dependencies
from accessctl.grants import evaluate_request
from accessctl.models import StepInput
from accessctl.observability import logger, metrics, tracer
from accessctl.policy import PolicyEngine

# The repository's policies/ (a link in this folder, so it ships with the function), parsed and
# validated once per cold start: an invalid policy set fails the deployment's first invocation loudly.
POLICY_ENGINE = PolicyEngine.from_directory(Path(__file__).parent / get_settings().policies_dir)


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StepInput)
def lambda_handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    decision = evaluate_request(event.request_id, POLICY_ENGINE, default_dependencies())
    return decision.model_dump(mode="json")
