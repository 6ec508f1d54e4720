"""Workflow step (.waitForTaskToken): store the task token server-side and ask the approver group."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.approvals import open_approval
from accessctl.chatops import approval_channel
from accessctl.dependencies import default_dependencies
from accessctl.models import ApprovalStepInput
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="request_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=ApprovalStepInput)
def lambda_handler(event: ApprovalStepInput, context: LambdaContext) -> dict[str, Any]:
    approval = open_approval(event.request_id, event.task_token, default_dependencies(), approval_channel())
    # The workflow keeps waiting for SendTaskSuccess; this answer is only logged by Lambda.
    return {"request_id": event.request_id, "approver_group": approval.approver_group, "deadline": approval.deadline}
