"""Workflow step: create the expiring grant policy and attach it to the requester's role."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.dependencies import default_dependencies
from accessctl.grants import expiry_warning_at, issue_grant
from accessctl.models import StepInput
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StepInput)
def lambda_handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    deps = default_dependencies()
    grant = issue_grant(event.request_id, deps)
    # A grant with another id is the caller's active grant, extended: this workflow ends here.
    return {
        **grant.model_dump(mode="json"),
        "extended": grant.grant_id != event.request_id,
        "warn_at": expiry_warning_at(grant.expires_at, deps.settings.expiry_warning_minutes),
    }
