"""Slack's slash command and buttons: verify, refuse replays and strangers, acknowledge, hand over.

Authenticated by Slack's own signature (the routes have no IAM authoriser). Everything slow
(who the member is, the request, the vote) runs in the worker, so Slack gets its answer well
within its 3 seconds.
"""

import base64
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.aws import call, client, resource
from accessctl.chat.slack import slack_credentials
from accessctl.config import get_settings
from accessctl.errors import AccessctlError, BadRequestError, NotFoundError
from accessctl.observability import logger, metrics, tracer
from accessctl.slack_requests import (
    SlackWork,
    check_origin,
    check_response_url,
    parse_command,
    parse_interaction,
    refuse_replay,
    submission_from_command,
    verify_signature,
)

app = APIGatewayRestResolver()


def _verified_body() -> bytes:
    """The raw body, once its signature, age and novelty are checked."""
    settings = get_settings()
    if not settings.slack_secret_name or not settings.approvals_table:
        raise NotFoundError("Slack is not configured for this deployment")
    event = app.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    secret = slack_credentials(settings.slack_secret_name).signing_secret.get_secret_value()
    signature = verify_signature(dict(event.headers or {}), body, secret, time.time())
    refuse_replay(resource("dynamodb").Table(settings.approvals_table), signature)
    return body


def _hand_over(work: SlackWork) -> None:
    call(
        client("lambda").invoke,
        FunctionName=get_settings().slack_worker_function_name,
        InvocationType="Event",
        Payload=work.model_dump_json().encode(),
    )


def _ephemeral(text: str) -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body={"response_type": "ephemeral", "text": text})


@app.post("/slack/commands")
def slash_command() -> Response[Any]:
    body = _verified_body()
    command = parse_command(body)
    settings = get_settings()
    check_origin(command.team_id, command.api_app_id, settings.slack_team_id, settings.slack_app_id)
    check_response_url(command.response_url, settings.slack_response_url_prefix)
    try:
        submission = submission_from_command(command)
    except BadRequestError as error:
        # Slack shows a 200 answer to the member only; a bad command changes nothing.
        return _ephemeral(f":warning: {error}")
    _hand_over(SlackWork(kind="command", command=command, submission=submission))
    metrics.add_metric(name="SlackCommands", unit="Count", value=1)
    return _ephemeral(
        f":hourglass_flowing_sand: Asking for {submission.database} as {submission.db_user} "
        f"for {submission.duration_minutes} min. I will message you with the decision."
    )


@app.post("/slack/interactions")
def interaction() -> Response[Any]:
    body = _verified_body()
    click = parse_interaction(body)
    settings = get_settings()
    check_origin(click.team_id, click.api_app_id, settings.slack_team_id, settings.slack_app_id)
    check_response_url(click.response_url, settings.slack_response_url_prefix)
    _hand_over(SlackWork(kind="click", click=click))
    metrics.add_metric(name="SlackClicks", unit="Count", value=1)
    return Response(status_code=200, content_type="application/json", body={})


@app.exception_handler(AccessctlError)
def handle_domain_error(error: AccessctlError) -> Response[Any]:
    logger.warning("slack delivery refused", extra={"reason": str(error), "status": error.status_code})
    return Response(status_code=error.status_code, content_type="application/json", body={"message": str(error)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
