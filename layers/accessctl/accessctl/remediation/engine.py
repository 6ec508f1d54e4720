"""The remediator: read what the rules need, evaluate them, decide per finding (exempt, report,
fix), apply fixes in isolation, and leave an audit record, a metric and a notification for each.

One engine for both paths: ``scan()`` (the schedule) evaluates every enabled rule over the whole
protected estate; ``handle_event()`` evaluates the rules an event calls for over just the resources
it touched. ``handle()`` tells the two apart. Nothing here raises for a bad event or a failed fix.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

from pydantic import ValidationError

from accessctl.audit import AuditLog
from accessctl.audit_outbox import AuditOutbox
from accessctl.aws import client
from accessctl.models import AuditEventType, AwsRequest
from accessctl.observability import SERVICE, logger, metrics
from accessctl.remediation.audit_table import AuditNotWritten, AuditTable
from accessctl.remediation.estate import EstateReader, Target
from accessctl.remediation.events import CloudTrailEvent, Ignored, affected_by
from accessctl.remediation.exemptions import exemption_for
from accessctl.remediation.fixer import Applied, Fixer, FixFailed
from accessctl.remediation.group_index import GroupIndex
from accessctl.remediation.models import (
    Finding,
    FindingResult,
    Fix,
    Outcome,
    RemediationReport,
    Trigger,
)
from accessctl.remediation.network import merge_revokes
from accessctl.remediation.notify import LogRemediationNotifier, RemediationNotifier, SnsRemediationNotifier
from accessctl.remediation.rules import IAM_STANDING_ACCESS, RULES, RULES_BY_ID, Rule
from accessctl.remediation.settings import Mode, RemediationSettings, get_remediation_settings

ACTOR = "remediator"
SCAN_ACTION = "scan"

_AUDIT_TYPES = {
    Outcome.FIXED: AuditEventType.REMEDIATION_APPLIED,
    Outcome.FAILED: AuditEventType.REMEDIATION_FAILED,
    Outcome.REPORTED: AuditEventType.REMEDIATION_FINDING,
    Outcome.EXEMPT: AuditEventType.REMEDIATION_FINDING,
}
_LOST_LOCK = threading.Lock()  # records are audited from the fix threads


class MetricsSink(Protocol):
    def record(self, counts: dict[tuple[str, str], int]) -> None: ...


class PowertoolsMetricsSink:
    """Totals per outcome on the function's metrics, and one metric per rule and outcome."""

    def record(self, counts: dict[tuple[str, str], int]) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        totals: Counter[str] = Counter()
        for (rule_id, outcome), count in counts.items():
            totals[outcome] += count
            with single_metric(
                name="DriftFindings",
                unit=MetricUnit.Count,
                value=count,
                namespace=SERVICE,
                default_dimensions={"rule": rule_id, "outcome": outcome},
            ):
                pass
        for outcome, count in totals.items():
            metrics.add_metric(name=f"Drift{outcome.title()}", unit=MetricUnit.Count, value=count)


@dataclass
class _Job:
    """One unit of fixing: one finding, or every offending range of one security group (one revoke)."""

    items: list[tuple[Rule, Finding, Mode]]
    merged: Fix | None = None


@dataclass
class Remediator:
    settings: RemediationSettings
    reader: EstateReader
    fixer: Fixer
    audit: AuditLog | None
    notifier: RemediationNotifier
    metrics: MetricsSink
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # A scan's audit records written in batches (see audit_table.py); events write each one at once.
    batch_audit: Callable[[], AbstractContextManager[None]] | None = None

    # ---------------------------------------------------------------- entry points

    def handle(self, raw: Any) -> RemediationReport:
        """A scheduled scan (``{"action": "scan"}`` or an EventBridge scheduled event) or one CloudTrail event."""
        if isinstance(raw, dict) and (raw.get("action") == SCAN_ACTION or raw.get("detail-type") == "Scheduled Event"):
            return self.scan()
        return self.handle_event(raw)

    def scan(self) -> RemediationReport:
        return self._run(Trigger(kind="schedule"), None, frozenset(RULES_BY_ID))

    def handle_event(self, raw: Any) -> RemediationReport:
        trigger = Trigger(kind="event")
        try:
            event = CloudTrailEvent.model_validate(raw)
        except ValidationError as error:
            fields = sorted({".".join(map(str, e["loc"])) for e in error.errors()})
            return self._ignored(trigger, f"malformed event: missing or invalid {', '.join(fields)}")
        record = event.detail
        trigger = Trigger(
            kind="event",
            event_name=record.eventName,
            event_id=record.eventID or event.id,
            changed_by=record.userIdentity.who(),
            event_time=record.eventTime,
            source_ip=record.sourceIPAddress,
        )
        try:
            affected = affected_by(event, self.settings.aws_lambda_function_name)
        except Ignored as why:
            return self._ignored(trigger, str(why))
        return self._run(trigger, affected.target, affected.rules)

    def _ignored(self, trigger: Trigger, why: str) -> RemediationReport:
        logger.info("event ignored", extra={"reason": why, "event_name": trigger.event_name})
        return RemediationReport(trigger=trigger, started_at=self.now().isoformat(), ignored=why)

    # ---------------------------------------------------------------- one run

    def _run(self, trigger: Trigger, target: Target | None, rule_ids: frozenset[str]) -> RemediationReport:
        started = time.perf_counter()
        report = RemediationReport(trigger=trigger, started_at=self.now().isoformat())
        rules = [rule for rule in RULES if rule.id in rule_ids and self.settings.mode_for(rule.id) != Mode.OFF]
        estate = self.reader.read(frozenset().union(*(rule.needs for rule in rules)), target)
        report.errors.extend(estate.errors)
        report.examined = estate.examined()
        findings: list[tuple[Rule, Finding]] = []
        for rule in rules:
            try:
                findings.extend((rule, finding) for finding in rule.evaluate(estate, self.settings))
            except Exception as error:  # one rule's bug never hides the others' findings
                logger.exception("rule failed", extra={"rule_id": rule.id})
                report.errors.append(f"rule {rule.id}: {type(error).__name__}: {error}")
        decided, jobs = self._decide(findings)
        batching = self.batch_audit() if self.batch_audit is not None and target is None else nullcontext()
        try:
            with batching:
                report.results = self._execute(decided, jobs, trigger, report)
        except Exception as error:  # the batch flush: the fixes are done, the records are what failed
            logger.exception("audit batch failed")
            report.errors.append(f"audit: {type(error).__name__}: {error}")
            report.audit_lost += error.lost if isinstance(error, AuditNotWritten) else 1
        if report.audit_lost:
            # Neither written nor deferred to the outbox: RemediationFailingAlarm watches this.
            logger.error("audit records lost", extra={"records": report.audit_lost})
            metrics.add_metric(name="AuditRecordsLost", unit="Count", value=report.audit_lost)
        if target is not None and not report.results and not report.errors and _nothing_in_scope(report, target):
            report.ignored = "the event touched no protected database's resources"
            logger.info("event out of scope", extra={"event_name": trigger.event_name})
        self._publish(trigger, report)
        report.duration_ms = (time.perf_counter() - started) * 1000
        logger.info("remediation finished", extra=report.summary() | {"results": len(report.results)})
        return report

    def _decide(self, findings: list[tuple[Rule, Finding]]) -> tuple[list[FindingResult], list[_Job]]:
        decided: list[FindingResult] = []
        to_fix: list[tuple[Rule, Finding, Mode]] = []
        now = self.now()
        for rule, finding in findings:
            mode = self.settings.mode_for(rule.id)
            exemption, notes = None, []
            verdicts = [
                exemption_for(tags, self.settings.remediation_exemption_tag, rule.id, now)
                for tags in finding.exemption_tags
            ]
            notes = [note for _, note in verdicts if note]
            if verdicts and all(valid is not None for valid, _ in verdicts):
                exemption = verdicts[0][0]
            note = f" ({'; '.join(notes)})" if notes else ""
            if exemption is not None:
                detail = f"exempt until {exemption.until}: {exemption.reason}"
                decided.append(
                    FindingResult(
                        finding=finding, mode=mode, outcome=Outcome.EXEMPT, detail=detail, exemption=exemption
                    )
                )
            elif not rule.auto_fix or finding.fix is None:
                decided.append(
                    FindingResult(
                        finding=finding,
                        mode=mode,
                        outcome=Outcome.REPORTED,
                        detail=f"reported (no automatic fix){note}",
                    )
                )
            elif mode != Mode.ENFORCE:
                detail = f"report mode: would {finding.fix.description}{note}"
                decided.append(FindingResult(finding=finding, mode=mode, outcome=Outcome.REPORTED, detail=detail))
            elif rule.id == IAM_STANDING_ACCESS and self.settings.remediation_standing_access_fix != "detach":
                detail = f"reported: would {finding.fix.description} (RemediationStandingAccessFix=report){note}"
                decided.append(FindingResult(finding=finding, mode=mode, outcome=Outcome.REPORTED, detail=detail))
            else:
                to_fix.append((rule, finding, mode))
        return decided, _jobs(to_fix)

    # ---------------------------------------------------------------- fixing, auditing

    def _execute(
        self, decided: list[FindingResult], jobs: list[_Job], trigger: Trigger, report: RemediationReport
    ) -> list[FindingResult]:
        def fix_and_audit(job: _Job) -> list[FindingResult]:
            results = self._fix(job)
            for result in results:
                self._audit(result, trigger, report)
            return results

        def audit_only(result: FindingResult) -> list[FindingResult]:
            self._audit(result, trigger, report)
            return [result]

        work: list[Callable[[], list[FindingResult]]] = [lambda j=job: fix_and_audit(j) for job in jobs]  # type: ignore[misc]
        work += [lambda r=result: audit_only(r) for result in decided]  # type: ignore[misc]
        if len(work) <= 1:
            return [result for task in work for result in task()]
        with ThreadPoolExecutor(max_workers=min(self.settings.remediation_fix_concurrency, len(work))) as pool:
            return [result for results in pool.map(lambda task: task(), work) for result in results]

    def _fix(self, job: _Job) -> list[FindingResult]:
        # A failed combined revoke is in CloudTrail too: each range's record names it before its own call.
        earlier: list[AwsRequest] = []
        if job.merged is not None:
            try:
                applied = self.fixer.apply(job.merged)
            except FixFailed as failed:
                logger.warning("combined revoke failed; revoking range by range", extra={"error": str(failed)})
                earlier = failed.aws_requests
            else:
                return [_fixed(finding, mode, applied) for _, finding, mode in job.items]
        results = []
        for _, finding, mode in job.items:
            assert finding.fix is not None
            try:
                applied = self.fixer.apply(finding.fix)
            except FixFailed as failed:
                logger.warning(
                    "fix failed",
                    extra={"resource": finding.resource.subject, "rule_id": finding.rule_id, "error": str(failed)},
                )
                results.append(
                    FindingResult(
                        finding=finding,
                        mode=mode,
                        outcome=Outcome.FAILED,
                        detail=f"could not {finding.fix.description}",
                        attempts=failed.attempts,
                        error=str(failed)[:1000],
                        aws_requests=earlier + failed.aws_requests,
                    )
                )
            except Exception as error:  # a bug in one fix never stops the others
                logger.exception("fix raised", extra={"resource": finding.resource.subject})
                results.append(
                    FindingResult(
                        finding=finding,
                        mode=mode,
                        outcome=Outcome.FAILED,
                        detail=f"could not {finding.fix.description}",
                        error=f"{type(error).__name__}: {error}",
                        aws_requests=earlier,
                    )
                )
            else:
                results.append(_fixed(finding, mode, applied, earlier))
        return results

    def _audit(self, result: FindingResult, trigger: Trigger, report: RemediationReport) -> None:
        if self.audit is None:
            return
        finding = result.finding
        try:
            self.audit.append(
                _AUDIT_TYPES[result.outcome],
                subject=finding.resource.subject,
                actor=ACTOR,
                outcome=result.outcome.value,
                reason=finding.summary[:500],
                details={
                    "rule_id": finding.rule_id,
                    "severity": finding.severity.value,
                    "mode": result.mode.value,
                    "resource": finding.resource.model_dump(mode="json"),
                    "databases": finding.databases,
                    "before": finding.before,
                    "after": finding.after if result.outcome == Outcome.FIXED else None,
                    "action": result.detail,
                    "fix": finding.fix.model_dump(mode="json") if finding.fix else None,
                    "attempts": result.attempts,
                    "error": result.error,
                    "exemption": result.exemption.model_dump(mode="json") if result.exemption else None,
                    "trigger": trigger.model_dump(mode="json", exclude_none=True),
                },
                aws_requests=result.aws_requests,
            )
        except Exception as error:  # neither written nor deferred to the outbox
            logger.exception("audit record failed", extra={"resource": finding.resource.subject})
            report.errors.append(f"audit {finding.resource.subject}: {type(error).__name__}: {error}")
            with _LOST_LOCK:
                report.audit_lost += error.lost if isinstance(error, AuditNotWritten) else 1

    def _publish(self, trigger: Trigger, report: RemediationReport) -> None:
        if not report.results:
            return
        counts = Counter((r.finding.rule_id, r.outcome.value) for r in report.results)
        try:
            self.metrics.record(dict(counts))
        except Exception as error:
            logger.exception("metrics failed")
            report.errors.append(f"metrics: {error}")
        try:
            self.notifier.send(trigger, report.results)
        except Exception as error:
            logger.exception("notification failed")
            report.errors.append(f"notification: {type(error).__name__}: {error}")


def _fixed(finding: Finding, mode: Mode, applied: Applied, earlier: list[AwsRequest] | None = None) -> FindingResult:
    assert finding.fix is not None
    action = f"{finding.fix.description}: {applied.detail}"
    if finding.fix.needs_reboot:
        action += " (needs a reboot to take effect)"
    return FindingResult(
        finding=finding,
        mode=mode,
        outcome=Outcome.FIXED,
        detail=action,
        attempts=applied.attempts,
        aws_requests=[*(earlier or []), *applied.aws_requests],
    )


def _jobs(to_fix: list[tuple[Rule, Finding, Mode]]) -> list[_Job]:
    """Ranges of one security group are revoked in one call; everything else is a job of its own."""
    by_group: dict[str, _Job] = {}
    jobs: list[_Job] = []
    for rule, finding, mode in to_fix:
        assert finding.fix is not None
        if finding.fix.action == "revoke-ingress":
            group = finding.fix.parameters["GroupId"]
            if group not in by_group:
                by_group[group] = _Job([])
                jobs.append(by_group[group])
            by_group[group].items.append((rule, finding, mode))
        else:
            jobs.append(_Job([(rule, finding, mode)]))
    for group, job in by_group.items():
        if len(job.items) > 1:
            entries = [entry for _, f, _ in job.items if f.fix for entry in f.fix.parameters["IpPermissions"]]
            job.merged = Fix(
                action="revoke-ingress",
                parameters={"GroupId": group, "IpPermissions": merge_revokes(entries)},
                description=f"revoke {len(job.items)} offending ranges on {group}",
            )
    return jobs


def _nothing_in_scope(report: RemediationReport, target: Target) -> bool:
    examined = report.examined
    if target.security_group_ids:
        return examined.get("security_groups", 0) == 0
    if target.parameter_groups or target.cluster_parameter_groups:
        return examined.get("parameter_groups", 0) == 0
    if target.snapshots or target.cluster_snapshots:
        return examined.get("snapshots", 0) == 0
    if target.managed_policies or target.inline_policies:
        return examined.get("policies", 0) == 0
    return examined.get("databases", 0) == 0


class _Lazy:
    """A client or table made on first use: an event about a security group never pays for IAM's model."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None
        self._lock = threading.Lock()  # the fix threads may all reach it at once (an outage defers every write)

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
        return getattr(self._made, name)


# The operations the remediator calls (estate.py, fixer.py, audit_table.py, group_index.py, notify.py):
# its EC2, RDS, DynamoDB and SNS clients know just these (see accessctl.aws.client). One missing here
# is an AttributeError in tests/remediation, which run the function's own clients on the local stack.
# IAM's client is whole: it is made only for the IAM rule.
EC2_OPERATIONS = frozenset({"DescribeSecurityGroups", "RevokeSecurityGroupIngress"})
RDS_OPERATIONS = frozenset(
    {
        "DescribeDBInstances",
        "DescribeDBClusters",
        "DescribeDBProxies",
        "ListTagsForResource",
        "DescribeDBParameters",
        "DescribeDBClusterParameters",
        "DescribeDBSnapshots",
        "DescribeDBClusterSnapshots",
        "DescribeDBSnapshotAttributes",
        "DescribeDBClusterSnapshotAttributes",
        "ModifyDBInstance",
        "ModifyDBCluster",
        "ModifyDBParameterGroup",
        "ModifyDBClusterParameterGroup",
        "ModifyDBSnapshotAttribute",
        "ModifyDBClusterSnapshotAttribute",
    }
)
DYNAMODB_OPERATIONS = frozenset({"Query", "TransactWriteItems", "BatchWriteItem", "PutItem"})
SNS_OPERATIONS = frozenset({"Publish"})
# The layer ships these clients' reduced models (`make service-models` writes them from the pinned botocore
# into accessctl/service_models/; tests/tooling/test_service_models.py holds them equal to it).
CLIENT_OPERATIONS = {
    "ec2": EC2_OPERATIONS,
    "rds": RDS_OPERATIONS,
    "dynamodb": DYNAMODB_OPERATIONS,
    "sns": SNS_OPERATIONS,
}
# Made only when an audit record has to go to the outbox (accessctl.audit_outbox).
SQS_OPERATIONS = frozenset({"SendMessage"})


@cache
def default_remediator() -> Remediator:
    """Built once per process from the environment (tests build their own)."""
    settings = get_remediation_settings()
    ec2 = _Lazy(lambda: client("ec2", EC2_OPERATIONS))
    rds = _Lazy(lambda: client("rds", RDS_OPERATIONS))
    iam = _Lazy(lambda: client("iam"))
    dynamodb = _Lazy(lambda: client("dynamodb", DYNAMODB_OPERATIONS))
    outbox = None
    if settings.audit_outbox_url:
        outbox = AuditOutbox(_Lazy(lambda: client("sqs", SQS_OPERATIONS)), settings.audit_outbox_url)
    audit_table = AuditTable(dynamodb, settings.audit_table, outbox=outbox)
    group_index = None
    if settings.remediation_index_table:
        group_index = GroupIndex(dynamodb, settings.remediation_index_table, settings.remediation_index_max_age_seconds)
    notifier: RemediationNotifier = LogRemediationNotifier()
    if settings.notify_topic_arn:
        notifier = SnsRemediationNotifier(
            _Lazy(lambda: client("sns", SNS_OPERATIONS)), settings.notify_topic_arn, settings.remediation_notify_batch
        )
    return Remediator(
        settings=settings,
        reader=EstateReader(settings, ec2=ec2, rds=rds, iam=iam, group_index=group_index),
        fixer=Fixer(ec2=ec2, rds=rds, iam=iam, max_attempts=settings.remediation_max_attempts),
        audit=AuditLog(audit_table),
        notifier=notifier,
        metrics=PowertoolsMetricsSink(),
        batch_audit=audit_table.batched,
    )
