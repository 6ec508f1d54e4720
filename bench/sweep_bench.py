"""Expiry sweep cost vs the number of active grants: does it follow the expired grants only?

For each size N (default 100, 1,000, 10,000) a fresh in-process emulated account (moto
``mock_aws``) gets the template's tables and N grant records written with ``GrantsStore`` exactly
as ``issue_grant`` leaves them (status ACTIVE, ``active_shard``, ``expires_at``). 1% of them are
expired (``expires_at`` one hour ago); each expired grant also gets its real IAM policy (built
and checked by ``accessctl.grant_policy``, under the grants path) attached to a role of its own.
The unexpired 99% are records only: the expiry sweep never reads them (one indexed Query on
``expires_at <= now``), so their IAM policies would change nothing it does - this is said again
under the table. Each run rebuilds the expired set (new request ids, new policies), then
``sweep_expired_grants(deps)`` is timed and every AWS API call it makes is counted per
(service, operation) by wrapping ``botocore.client.BaseClient._make_api_call``.

The integrity sweep (``sweep_integrity``, every 15 minutes) lists every policy under the grants
path and checks each against its record, so its cost follows ALL live grant policies; it is timed
only at ``--integrity-sizes`` (default 100 and 1,000), where every grant, expired or not, gets
its real policy attached to a role.

    .venv/bin/python bench/sweep_bench.py [--sizes 100,1000,10000] [--runs 3] [--integrity-sizes 100,1000]

Numbers go in the table, never in assertions; compare within one run (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
EXPIRED_SHARE = 0.01
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",  # else Powertools prints EMF blobs on stdout every 100 metrics
    "POWERTOOLS_LOG_LEVEL": "WARNING",  # one INFO line per revoke would drown the table
    "POWERTOOLS_METRICS_NAMESPACE": "accessctl",
}


def progress(message: str) -> None:
    print(f"[sweep-bench] {message}", file=sys.stderr, flush=True)


def _prepare_process() -> None:
    """The layer and the repository (for tests.support.template) on the path, and a fake AWS environment."""
    sys.path[:0] = [str(ROOT / "layers" / "accessctl"), str(ROOT)]
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT)


# ------------------------------------------------------------------ counting API calls


class CallCounter:
    """Every botocore API call (one per operation, paginator pages included) per (service, operation)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seconds: Counter[tuple[str, str]] = Counter()  # time inside each operation (the emulator's work)
        self.enabled = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        counter = self

        def counted(client: Any, operation_name: str, api_params: Any) -> Any:
            if not counter.enabled:
                return original(client, operation_name, api_params)
            key = (client.meta.service_model.service_name, operation_name)
            if operation_name == "Query":  # the expiry index's pages apart from other Queries (the audit chain's)
                key = (key[0], f"Query {api_params.get('IndexName') or api_params.get('TableName', '')}".strip())
            counter.counts[key] += 1
            started = time.perf_counter()
            try:
                return original(client, operation_name, api_params)
            finally:
                counter.seconds[key] += time.perf_counter() - started

        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        try:
            yield
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]

    @contextlib.contextmanager
    def counting(self) -> Iterator[Counter[tuple[str, str]]]:
        self.counts = Counter()
        self.seconds = Counter()
        self.enabled = True
        try:
            yield self.counts
        finally:
            self.enabled = False


# ------------------------------------------------------------------ the emulated account


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Account:
    session: Any
    deps: Any
    resource_arn: str
    roles: set[str] = field(default_factory=set)

    @classmethod
    @contextlib.contextmanager
    def emulated(cls) -> Iterator[Account]:
        import boto3
        from moto import mock_aws

        from accessctl.audit import AuditLog
        from accessctl.config import Settings
        from accessctl.dependencies import Dependencies
        from accessctl.store import GrantsStore
        from tests.support.template import create_table

        with mock_aws():
            session = boto3.session.Session(region_name=REGION)
            dynamodb = session.client("dynamodb")
            create_table(dynamodb, "GrantsTable", "grants")
            create_table(dynamodb, "AuditTable", "audit")
            tables = session.resource("dynamodb")
            deps = Dependencies(
                settings=Settings(grants_table="grants", audit_table="audit"),
                grants=GrantsStore(tables.Table("grants")),
                audit=AuditLog(tables.Table("audit")),
                iam=session.client("iam"),
                rds=session.client("rds"),
                sfn=session.client("stepfunctions"),
                lambda_client=session.client("lambda"),
                sns=session.client("sns"),
                region=REGION,
                account_id=ACCOUNT_ID,
                partition="aws",
            )
            resource_arn = f"arn:aws:rds-db:{REGION}:{ACCOUNT_ID}:dbuser:db-BENCHSWEEP0000000000000000/app_rw"
            yield cls(session=session, deps=deps, resource_arn=resource_arn)

    def role(self, name: str) -> None:
        if name not in self.roles:
            self.deps.iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=TRUST_POLICY,
                Tags=[{"Key": "accessctl-grantable", "Value": "true"}],
            )
            self.roles.add(name)

    def grant(
        self, request_id: str, role_name: str, issued_at: datetime, expires_at: datetime, *, policy: bool
    ) -> None:
        """One grant as ``issue_grant`` leaves it: the ACTIVE record (indexed by expiry) and, if asked, its policy."""
        from accessctl.grant_policy import build_grant_policy, check_grant_policy, policy_name_for
        from accessctl.grants import policy_arn_for
        from accessctl.models import (
            AccessRequest,
            Decision,
            Grant,
            Outcome,
            RequestStatus,
        )

        expiry = iso(expires_at)
        grant = Grant(
            grant_id=request_id,
            policy_name=policy_name_for(request_id),
            policy_arn=policy_arn_for(request_id, self.deps),
            role_name=role_name,
            resource_arn=self.resource_arn,
            issued_at=iso(issued_at),
            expires_at=expiry,
        )
        minutes = max(1, round((expires_at - issued_at).total_seconds() / 60))
        request = AccessRequest(
            request_id=request_id,
            status=RequestStatus.ACTIVE,
            principal_arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/bench",
            role_name=role_name,
            role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{role_name}",
            account_id=ACCOUNT_ID,
            database="orders-bench",
            db_user="app_rw",
            requested_minutes=minutes,
            reason="sweep benchmark",
            requested_at=iso(issued_at),
            decision=Decision(
                outcome=Outcome.ALLOW, reason="bench", granted_minutes=minutes, decided_at=iso(issued_at)
            ),
            grant=grant,
        )
        self.deps.grants.create(request)  # ACTIVE with a grant: written with active_shard + expires_at
        if policy:
            document = build_grant_policy(self.resource_arn, expiry)
            check_grant_policy(document, expected_resource_arn=self.resource_arn, expected_expires_at=expiry)
            self.role(role_name)
            self.deps.iam.create_policy(
                PolicyName=grant.policy_name,
                Path=self.deps.settings.grants_path,
                PolicyDocument=json.dumps(document),
                Tags=[
                    {"Key": "accessctl:grant-id", "Value": request_id},
                    {"Key": "accessctl:role", "Value": role_name},
                    {"Key": "accessctl:expires-at", "Value": expiry},
                ],
            )
            self.deps.iam.attach_role_policy(RoleName=role_name, PolicyArn=grant.policy_arn)

    def live_grant_policies(self) -> int:
        paginator = self.deps.iam.get_paginator("list_policies")
        pages = paginator.paginate(Scope="Local", PathPrefix=self.deps.settings.grants_path)
        return sum(len(page["Policies"]) for page in pages)


# ------------------------------------------------------------------ one size


@dataclass
class SweepResult:
    size: int
    expired: int
    build_seconds: float
    times: list[float]
    calls: Counter[tuple[str, str]]  # of the last run (identical runs give identical counts)
    query_seconds: list[float]  # per run: time inside DynamoDB Query (moto scans the whole index)
    revoked_each_run: list[int]
    integrity_times: list[float] = field(default_factory=list)
    integrity_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    integrity_examined: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def query_pages(self) -> int:
        return self.calls[("dynamodb", "Query ActiveByExpiry")]


def measure_size(size: int, runs: int, integrity: bool, counter: CallCounter) -> SweepResult:
    from accessctl.grants import sweep_expired_grants
    from accessctl.integrity import sweep_integrity
    from accessctl.observability import metrics

    expired = max(1, round(size * EXPIRED_SHARE))
    live = size - expired
    now = datetime.now(UTC).replace(microsecond=0)
    with Account.emulated() as account:
        started = time.perf_counter()
        for index in range(live):
            # unexpired, spread over the next 12 hours; own role each (a second grant on a role would extend)
            expires = now + timedelta(hours=1, seconds=index * 4)
            account.grant(f"live-{index:05d}", f"bench-live-{index:05d}", now, expires, policy=integrity)
        build = time.perf_counter() - started
        progress(
            f"N={size}: {live} unexpired grants written in {build:.1f}s (policies: {'yes' if integrity else 'no'})"
        )
        times: list[float] = []
        revoked: list[int] = []
        query_seconds: list[float] = []
        for run in range(runs):
            for index in range(expired):
                issued = now - timedelta(hours=2)
                account.grant(
                    f"expired-r{run}-{index:04d}",
                    f"bench-expired-{index:04d}",
                    issued,
                    now - timedelta(hours=1),
                    policy=True,
                )
            # Powertools prints its EMF blob on stdout once a metric has 100 values: keep stdout for the table.
            with counter.counting() as calls, contextlib.redirect_stdout(io.StringIO()):
                started = time.perf_counter()
                report = sweep_expired_grants(account.deps)
                times.append(time.perf_counter() - started)
                metrics.clear_metrics()
            query_seconds.append(counter.seconds[("dynamodb", "Query ActiveByExpiry")])
            revoked.append(len(report.revoked))
            if report.failed:
                progress(
                    f"N={size} run {run}: {len(report.failed)} grants not revoked: {list(report.failed.items())[:2]}"
                )
        result = SweepResult(size, expired, build, times, calls, query_seconds, revoked)
        progress(f"N={size}: expiry sweep median {result.median * 1000:.0f} ms over {runs} runs")
        if integrity:
            left = account.live_grant_policies()
            for _ in range(runs):
                with counter.counting() as integrity_calls, contextlib.redirect_stdout(io.StringIO()):
                    started = time.perf_counter()
                    checked = sweep_integrity(account.deps)
                    result.integrity_times.append(time.perf_counter() - started)
                    metrics.clear_metrics()
            result.integrity_calls = integrity_calls
            result.integrity_examined = checked.examined
            if checked.findings or left != live:
                progress(
                    f"N={size}: integrity found {len(checked.findings)} findings, {left} policies (expected {live})"
                )
            progress(f"N={size}: integrity sweep median {statistics.median(result.integrity_times):.2f} s")
    return result


# ------------------------------------------------------------------ output


def render(results: list[SweepResult], runs: int) -> str:
    from bench.common import render_table

    rows = []
    for r in results:
        rows.append(
            [
                f"{r.size:,}",
                str(r.expired),
                f"{r.median * 1000:.0f} ms",
                f"{min(r.times) * 1000:.0f}-{max(r.times) * 1000:.0f} ms",
                str(r.query_pages),
                f"{statistics.median(r.query_seconds) * 1000:.0f} ms",
                str(r.total_calls),
                f"{r.total_calls / r.expired:.1f}",
                "/".join(str(n) for n in r.revoked_each_run),
            ]
        )
    headers = [
        "N active",
        "expired",
        "sweep (median)",
        "range",
        "Query pages",
        "in Query",
        "API calls",
        "calls/expired",
        "revoked",
    ]
    lines = ["Expiry sweep (sweep_expired_grants), in-process moto, " + f"{runs} runs per size", ""]
    lines += render_table(headers, rows, "rrrrrrrrr")
    smallest, largest = results[0], results[-1]
    if len(results) > 1:
        lines += [
            "",
            f"ratio {largest.size:,}/{smallest.size:,} (N x{largest.size / smallest.size:g}, expired "
            f"x{largest.expired / smallest.expired:g}): time x{largest.median / smallest.median:.1f}, "
            f"API calls x{largest.total_calls / smallest.total_calls:.1f}, "
            f"calls per expired grant x{(largest.total_calls / largest.expired) / (smallest.total_calls / smallest.expired):.2f}",
        ]
    lines += ["", "API calls per operation in one sweep:"]
    operations = sorted({key for r in results for key in r.calls})
    lines += render_table(
        ["service", "operation", *(f"N={r.size:,}" for r in results)],
        [[service, op, *(str(r.calls[(service, op)]) for r in results)] for service, op in operations],
        "ll" + "r" * len(results),
    )
    checked = [r for r in results if r.integrity_times]
    if checked:
        lines += ["", "Integrity sweep (sweep_integrity, every 15 min): cost follows ALL live grant policies", ""]
        lines += render_table(
            ["N active", "policies checked", "sweep (median)", "API calls", "calls/policy"],
            [
                [
                    f"{r.size:,}",
                    str(r.integrity_examined),
                    f"{statistics.median(r.integrity_times):.2f} s",
                    str(sum(r.integrity_calls.values())),
                    f"{sum(r.integrity_calls.values()) / max(1, r.integrity_examined):.1f}",
                ]
                for r in checked
            ],
            "rrrrr",
        )
        operations = sorted({key for r in checked for key in r.integrity_calls})
        lines += ["", "  " + ", ".join(f"{s}:{o}" for s, o in operations)]
    lines += [
        "",
        "How the state was built: N grant records written with GrantsStore.create (ACTIVE, active_shard,",
        "expires_at), as issue_grant leaves them; 1% expired one hour ago. Only the EXPIRED grants have a",
        "real IAM policy attached to a role (rebuilt with new ids before every run); the unexpired grants are",
        "records only, except at the integrity sizes, where every grant has its policy attached. The expiry",
        "sweep queries ActiveByExpiry for expires_at <= now and never reads an unexpired grant, so their",
        "policies would not change what it does. API calls: botocore BaseClient._make_api_call, counted",
        "during the sweep only (Query pages = ActiveByExpiry pages; audit writes included). 'in Query' is the",
        "time inside those index Queries: moto evaluates a GSI Query by scanning every item, so that part grows",
        "with N here; DynamoDB reads only the matching index range. The emulator's IAM also slows as roles",
        "and policies accumulate, so compare calls first, times second.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="active grants per case (comma-separated)")
    parser.add_argument("--runs", type=int, default=3, help="sweeps per size (median reported)")
    parser.add_argument(
        "--integrity-sizes",
        default="100,1000",
        help="sizes at which to time the integrity sweep too (every grant gets its policy; '' for none)",
    )
    args = parser.parse_args(argv)
    args.sizes = [int(size.replace("_", "")) for size in args.sizes.split(",") if size.strip()]
    args.integrity_sizes = {int(s.replace("_", "")) for s in args.integrity_sizes.split(",") if s.strip()}
    if not args.sizes or min(args.sizes) < 1 or args.runs < 1:
        parser.error("--sizes must be positive integers and --runs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _prepare_process()
    counter = CallCounter()
    results = []
    with counter.installed():
        for size in sorted(args.sizes):
            results.append(measure_size(size, args.runs, size in args.integrity_sizes, counter))
    print(render(results, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
