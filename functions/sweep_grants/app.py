"""Scheduled backstop: revoke every grant past expiry that is still active, whatever its workflow did."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.dependencies import default_dependencies
from accessctl.grants import sweep_expired_grants
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = sweep_expired_grants(default_dependencies())
    logger.info("sweep finished", extra={"examined": report.examined, "revoked": len(report.revoked)})
    return asdict(report)
