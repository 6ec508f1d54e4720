"""Device posture webhook: the MDM/EDR pushes signed posture records; they become a trusted signal.

Authenticated by its own HMAC signature (not SigV4): the route has no IAM authoriser, and every
delivery is verified, time-boxed and de-duplicated before anything is stored.
"""

import base64
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.aws import resource
from accessctl.config import get_settings
from accessctl.errors import AccessctlError, TransientError
from accessctl.models import utc_now
from accessctl.observability import logger, metrics, tracer
from accessctl.signals.posture import PostureStore, handle_posture_webhook

SECRET_MAX_AGE_SECONDS = 300  # a rotated secret is picked up within five minutes

app = APIGatewayRestResolver()


def _secret() -> str:
    name = get_settings().posture_webhook_secret_name
    if not name:
        raise TransientError("the posture webhook is not configured (no secret)")
    return str(parameters.get_secret(name, max_age=SECRET_MAX_AGE_SECONDS))


@app.post("/posture")
def receive_posture() -> Response[Any]:
    event = app.current_event
    raw_body = event.body or ""
    body = base64.b64decode(raw_body) if event.is_base64_encoded else raw_body.encode()
    table = resource("dynamodb").Table(get_settings().posture_table)
    result = handle_posture_webhook(dict(event.headers or {}), body, _secret(), PostureStore(table), utc_now())
    metrics.add_metric(name="PostureUpdates", unit="Count", value=1)
    return Response(status_code=202, content_type="application/json", body=result.model_dump_json())


@app.exception_handler(AccessctlError)
def handle_domain_error(error: AccessctlError) -> Response[Any]:
    logger.warning("posture delivery refused", extra={"reason": str(error)})
    return Response(status_code=error.status_code, content_type="application/json", body={"message": str(error)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
