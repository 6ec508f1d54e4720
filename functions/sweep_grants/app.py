"""Backstop sweeper.

- every minute (schedule): revoke every grant past expiry that is still active, whatever its workflow did;
- on a slower schedule ({"mode": "integrity"}): remove orphaned and tampered grant policies;
- on a CloudTrail event for an IAM change to a grant policy: check just that policy.
"""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.dependencies import default_dependencies
from accessctl.grants import sweep_expired_grants
from accessctl.integrity import check_policies, sweep_integrity
from accessctl.notify import LogNotifier, Notifier, SnsNotifier
from accessctl.observability import logger, metrics, tracer


def _notifier() -> Notifier:
    deps = default_dependencies()
    if deps.settings.notify_topic_arn:
        return SnsNotifier(deps.sns, deps.settings.notify_topic_arn)
    return LogNotifier()


def _changed_grant_policies(event: dict[str, Any]) -> list[str] | None:
    """The grant policy a CloudTrail IAM event names, or None if this is not such an event."""
    if event.get("detail-type") != "AWS API Call via CloudTrail":
        return None
    parameters = (event.get("detail") or {}).get("requestParameters") or {}
    policy_arn = parameters.get("policyArn")
    grants_path = default_dependencies().settings.grants_path
    if isinstance(policy_arn, str) and f":policy{grants_path}" in policy_arn:
        return [policy_arn]
    return []


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = default_dependencies()
    changed = _changed_grant_policies(event)
    if changed is not None:
        report = asdict(check_policies(changed, deps, _notifier()))
    elif event.get("mode") == "integrity":
        report = asdict(sweep_integrity(deps, _notifier()))
    else:
        report = asdict(sweep_expired_grants(deps, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000))
    logger.info("sweep finished", extra={"report": report})
    return report
