"""Integrity sweep: every policy under the grants path must be exactly a live grant, and nothing else.

Findings, each removed, audited and notified:
- **orphan**: a policy under the grants path with no request record, or whose record says it
  is over (revoked, failed, denied);
- **tampered**: a live grant whose policy changed after issue: condition removed, resource or
  action widened, another version made default, or attached to any principal but the holder.

This walks the grants path (cost follows the number of live grant policies), so it runs on its
own, slower schedule, and for single policies when CloudTrail reports an IAM change to one of
them; the every-minute expiry sweep stays a Query on the expiry index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from accessctl.aws import aws_requests, call, error_code
from accessctl.dependencies import Dependencies
from accessctl.errors import NotFoundError
from accessctl.grant_policy import POLICY_NAME_PREFIX, grant_policy_problems
from accessctl.grants import current_policy_document, remove_policy, revoke_grant
from accessctl.models import AccessRequest, AuditEventType, RequestStatus, RevokeReason
from accessctl.notify import OperatorNotifier
from accessctl.observability import logger, metrics

LIVE_STATUSES = (RequestStatus.GRANTING, RequestStatus.ACTIVE)


@dataclass
class Finding:
    kind: str  # "orphan" | "tampered"
    policy_arn: str
    grant_id: str | None
    problems: list[str]


@dataclass
class IntegrityReport:
    examined: int = 0
    findings: list[Finding] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def grant_policies(deps: Dependencies) -> Iterator[dict[str, Any]]:
    """Every customer-managed policy under the grants path (paged)."""
    paginator = deps.iam.get_paginator("list_policies")
    for page in paginator.paginate(Scope="Local", PathPrefix=deps.settings.grants_path):
        yield from page["Policies"]


def check_grant_policy_integrity(policy_arn: str, deps: Dependencies) -> Finding | None:
    """What, if anything, is wrong with one policy under the grants path."""
    name = policy_arn.rsplit("/", 1)[-1]
    grant_id = name.removeprefix(POLICY_NAME_PREFIX) if name.startswith(POLICY_NAME_PREFIX) else None
    request = _record(grant_id, deps)
    if request is None or request.grant is None or request.status not in LIVE_STATUSES:
        state = "no record" if request is None else f"its record says {request.status}"
        return Finding("orphan", policy_arn, grant_id, [f"policy under the grants path with {state}"])
    problems = _tampering(policy_arn, request, deps)
    return Finding("tampered", policy_arn, grant_id, problems) if problems else None


def _record(grant_id: str | None, deps: Dependencies) -> AccessRequest | None:
    if grant_id is None:
        return None
    try:
        return deps.grants.get(grant_id)
    except NotFoundError:
        return None


def _tampering(policy_arn: str, request: AccessRequest, deps: Dependencies) -> list[str]:
    grant = request.grant
    assert grant is not None
    problems = grant_policy_problems(
        current_policy_document(policy_arn, deps),
        expected_resource_arn=grant.resource_arn,
        expected_expires_at=grant.expires_at,
    )
    versions = call(deps.iam.list_policy_versions, PolicyArn=policy_arn)["Versions"]
    if len(versions) > 1:
        problems.append(f"{len(versions)} policy versions exist; a grant has one")
    for holder in _attached_principals(policy_arn, deps):
        if holder != f"role/{grant.role_name}":
            problems.append(f"attached to {holder}, not only to the holder role {grant.role_name}")
    return problems


def _attached_principals(policy_arn: str, deps: Dependencies) -> list[str]:
    attached: list[str] = []
    for page in deps.iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=policy_arn):
        attached += [f"role/{role['RoleName']}" for role in page.get("PolicyRoles", [])]
        attached += [f"user/{user['UserName']}" for user in page.get("PolicyUsers", [])]
        attached += [f"group/{group['GroupName']}" for group in page.get("PolicyGroups", [])]
    return attached


def remediate(finding: Finding, deps: Dependencies, notifier: OperatorNotifier | None = None) -> None:
    """Remove what the finding names, audit why, and tell operators."""
    subject = finding.grant_id or finding.policy_arn
    request = _record(finding.grant_id, deps)
    # Counted when found, whether or not the removal below succeeds (a failed one is IntegrityFailures).
    metrics.add_metric(
        name="SweeperFindingsTampered" if finding.kind == "tampered" else "SweeperFindingsOrphan", unit="Count", value=1
    )
    if finding.kind == "tampered" and request is not None:
        deps.audit.append(
            AuditEventType.GRANT_TAMPERED,
            subject=subject,
            actor="sweeper",
            request=request,
            outcome="REMOVED",
            reason="; ".join(finding.problems),
            details={"policy_arn": finding.policy_arn, "problems": finding.problems},
        )
        revoke_grant(request.request_id, RevokeReason.TAMPERED, "sweeper", deps)
    else:
        with aws_requests(deps.iam) as iam_calls:
            detached = remove_policy(finding.policy_arn, deps)
        deps.audit.append(
            AuditEventType.ORPHAN_REMOVED,
            subject=subject,
            actor="sweeper",
            request=request,
            outcome="REMOVED",
            reason="; ".join(finding.problems),
            details={"policy_arn": finding.policy_arn, "detached_from": detached},
            aws_requests=iam_calls,
        )
    logger.warning("grant integrity finding removed", extra={"finding": finding.__dict__})
    if notifier is None:
        return
    if request is not None:
        notifier.send("TAMPERED" if finding.kind == "tampered" else "ORPHAN_REMOVED", request)
    else:  # no record names a holder or a database: the operators get what the policy itself says
        notifier.notice(
            "ORPHAN_REMOVED",
            finding.policy_arn,
            f"A grant policy no request issued was found and removed: {finding.policy_arn} "
            f"({'; '.join(finding.problems)}).",
            severity="high",
        )


def sweep_integrity(deps: Dependencies, notifier: OperatorNotifier | None = None) -> IntegrityReport:
    """Check every policy under the grants path; a failure on one never stops the others."""
    report = IntegrityReport()
    for policy in grant_policies(deps):
        report.examined += 1
        _check_and_remediate(policy["Arn"], deps, notifier, report)
    return report


def check_policies(
    policy_arns: list[str], deps: Dependencies, notifier: OperatorNotifier | None = None
) -> IntegrityReport:
    """Check the named grant policies only (a CloudTrail event said they changed)."""
    report = IntegrityReport()
    for policy_arn in policy_arns:
        report.examined += 1
        _check_and_remediate(policy_arn, deps, notifier, report)
    return report


def _check_and_remediate(
    policy_arn: str, deps: Dependencies, notifier: OperatorNotifier | None, report: IntegrityReport
) -> None:
    finding: Finding | None = None
    try:
        finding = check_grant_policy_integrity(policy_arn, deps)
        if finding is not None:
            remediate(finding, deps, notifier)
            report.findings.append(finding)
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            return  # already gone: nothing to remediate
        logger.exception("integrity check failed", extra={"policy_arn": policy_arn})
        report.failed[policy_arn] = f"{error_code(error)}: {error}"
        _integrity_failed(finding, report.failed[policy_arn], deps)
    except Exception as error:  # isolate each policy; the next sweep retries
        logger.exception("integrity check failed", extra={"policy_arn": policy_arn})
        report.failed[policy_arn] = f"{type(error).__name__}: {error}"
        _integrity_failed(finding, report.failed[policy_arn], deps)


def _integrity_failed(finding: Finding | None, why: str, deps: Dependencies) -> None:
    """Counted for the alarm; a finding that could not be removed goes on the trail, once (the sweep
    retries it each time). Never raises: the other policies are still checked."""
    metrics.add_metric(name="IntegrityFailures", unit="Count", value=1)
    if finding is None:
        return
    subject = finding.grant_id or finding.policy_arn
    try:
        written = any(
            event.event_type == AuditEventType.REVOKE_FAILED and event.actor == "sweeper"
            for event in deps.audit.for_subject(subject)
        )
        if not written:
            deps.audit.append(
                AuditEventType.REVOKE_FAILED,
                subject=subject,
                actor="sweeper",
                request=_record(finding.grant_id, deps),
                reason=why[:1000],
                details={"finding": finding.kind, "policy_arn": finding.policy_arn, "problems": finding.problems},
            )
    except Exception:
        logger.exception("the failed integrity removal was not audited", extra={"policy_arn": finding.policy_arn})
