"""Backstop sweeper.

- every minute (schedule): revoke every grant past expiry that is still active, whatever its workflow did,
  and tell its holder (the deployment's channels, at most once per channel with the workflow's own notice);
- on a slower schedule ({"mode": "integrity"}): remove orphaned and tampered grant policies;
- on a CloudTrail event for an IAM change to a grant policy: check just that policy.
"""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from accessctl.dependencies import default_dependencies
from accessctl.grants import sweep_expired_grants
from accessctl.integrity import check_policies, sweep_integrity
from accessctl.notify import LogNotifier, OperatorNotifier, SnsNotifier, deployment_notifier
from accessctl.observability import logger, metrics, tracer


def _operators() -> OperatorNotifier:
    """Integrity findings go to the operators' channel; holders hear of revocations like the workflow's."""
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
        report = asdict(check_policies(changed, deps, _operators()))
    elif event.get("mode") == "integrity":
        report = asdict(sweep_integrity(deps, _operators()))
    else:
        seconds_left = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
        holders = lambda: deployment_notifier(deps.settings, deps.sns)  # noqa: E731
        report = asdict(sweep_expired_grants(deps, seconds_left=seconds_left, holders=holders))
    logger.info("sweep finished", extra={"report": report})
    return report
