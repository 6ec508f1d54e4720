"""Appends the audit records waiting in the audit outbox (SQS): one message, one unit; a message that
fails is reported alone (partial batch response) and comes back, then goes to the dead-letter queue."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.audit_outbox import default_replayer
from accessctl.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)


def replay(record: SQSRecord) -> None:
    result = default_replayer().replay(record.body)
    metrics.add_metric(name="AuditRecordsReplayed", unit="Count", value=result.replayed)
    metrics.add_metric(name="AuditRecordsAlreadyWritten", unit="Count", value=result.already_written)
    logger.info(
        "audit outbox message replayed",
        extra={"message_id": record.message_id, "replayed": result.replayed, "already": result.already_written},
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=replay, processor=processor, context=context)
