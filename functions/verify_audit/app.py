"""Runs one asynchronous audit verification (POST /audit/verifications) and records its report."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.audit_verification import run_verification
from accessctl.aws import client
from accessctl.dependencies import default_dependencies
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="verification_id", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    verification = run_verification(str(event["verification_id"]), default_dependencies(), client("s3"))
    report = verification.report
    if report is not None and not report.ok:
        metrics.add_metric(name="AuditChainBroken", unit="Count", value=1)
    logger.info("audit verification finished", extra={"status": verification.status, "ok": report and report.ok})
    return verification.model_dump(mode="json", exclude={"report"})
