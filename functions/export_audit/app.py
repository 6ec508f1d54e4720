"""Daily: export each closed day's audit records and stream heads to the Object Lock bucket.

A scheduled run exports every closed day of the last week not exported yet; ``{"day": "YYYY-MM-DD"}``
exports (or re-checks) one closed day.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.audit_export import export_closed_days
from accessctl.aws import client
from accessctl.dependencies import default_dependencies
from accessctl.errors import AccessctlError
from accessctl.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = default_dependencies()
    bucket = deps.settings.audit_export_bucket
    if bucket is None:
        raise AccessctlError("AUDIT_EXPORT_BUCKET is not set: the audit export is not deployed")
    report = export_closed_days(
        deps.audit.table,
        client("s3"),
        bucket,
        deps.audit,
        table_name=deps.settings.audit_table,
        day=str(event["day"]) if event.get("day") else None,
    )
    exported = [day for day in report.days if day.status == "EXPORTED"]
    metrics.add_metric(name="AuditDaysExported", unit="Count", value=len(exported))
    metrics.add_metric(
        name="AuditExportMismatches", unit="Count", value=sum(len(day.mismatched) for day in report.days)
    )
    logger.info("audit export finished", extra={"report": report.model_dump(mode="json")})
    return report.model_dump(mode="json")
