"""The local stack the stack benchmarks share, its estate, and requesting one grant through the signed API.

Every benchmark request comes from a role of its own. A second request by a role for a database user
it already holds extends that grant (status EXTENDED, no new policy), so requests from one role
cannot give N fresh, overlapping grants. The shipped policies allow only two roles, so the stack
runs with Cedar policies of the benchmark's (same schema, same engine) that allow
``bench-workload-NNN`` on the demo database, set through ``POLICIES_DIR`` before any handler
has read its settings.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from accessctl_local import LocalStack
from accessctl_local.estate import Workload, attached_policies, create_database, workload
from accessctl_local.runtime import Invocation

from .common import PROJECT_ROOT, BenchError, environment, epoch_of, progress

DATABASE = "orders-demo"
DB_USER = "app_rw"
GRANT_MINUTES = 1  # the shortest grant there is
REASON = "accessctl benchmark run"
UNSETTLED = frozenset({"PENDING", "GRANTING"})


@dataclass
class Estate:
    stack: LocalStack
    workloads: list[Workload]
    _unused: Iterator[Workload]
    _keys: Iterator[int]

    def next_workload(self) -> Workload:
        """A role that has never asked for anything: its request is a fresh grant, never an extension."""
        try:
            return next(self._unused)
        except StopIteration:
            raise BenchError(f"all {len(self.workloads)} benchmark roles are used") from None

    def idempotency_key(self, label: str) -> str:
        return f"bench-{label}-{next(self._keys)}"


@dataclass(frozen=True)
class GrantTiming:
    """One request that became an active grant, and when (perf_counter for durations, wall clock for expiry)."""

    request_id: str
    workload: Workload
    execution_arn: str
    policy_arn: str
    expires_at: float  # epoch seconds (whole seconds: grants expire on a second boundary)
    accepted: float  # POST /requests -> 202, seconds
    active: float  # POST /requests sent -> the GET that first saw ACTIVE returned, seconds


def role_names(count: int) -> list[str]:
    return [f"bench-workload-{number:03d}" for number in range(1, count + 1)]


def write_policies(directory: Path, roles: list[str]) -> Path:
    """The benchmark's Cedar policies (the project's schema): each role may connect to the demo database as app_rw."""
    shutil.copy(PROJECT_ROOT / "policies" / "schema.cedarschema", directory)
    rules = [
        f'''@id("bench-{role}")
@outcome("auto")
@max_minutes("15")
permit (principal == Role::"{role}", action == Action::"connect", resource in Database::"{DATABASE}")
when {{ resource.name == "{DB_USER}" }};
'''
        for role in roles
    ]
    (directory / "bench.cedar").write_text("\n".join(rules), encoding="utf-8")
    return directory


@contextlib.contextmanager
def running_stack(roles: int) -> Iterator[Estate]:
    """One stack for the whole run, with ``roles`` opted-in roles; schedules off (benchmarks fire sweeps)."""
    with (
        environment(POWERTOOLS_METRICS_DISABLED="true"),
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory(prefix="accessctl-bench-") as scratch,
    ):
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        names = role_names(roles)
        policies = write_policies(Path(scratch), names)
        started = time.perf_counter()
        with LocalStack.start(
            project_root=PROJECT_ROOT, parameter_overrides={"LogLevel": "WARNING"}, run_schedules=False
        ) as stack:
            progress(f"local stack up in {time.perf_counter() - started:.1f}s: API {stack.api_url}")
            # After start (which sets the template's POLICIES_DIR), before any handler reads its settings;
            # an absolute path wins over the function's directory. The stack puts the old value back on stop.
            with environment(POLICIES_DIR=str(policies)):
                create_database(stack, DATABASE)
                workloads = [workload(stack, name, session_name="bench") for name in names]
                progress(f"estate: {DATABASE}, {len(workloads)} roles allowed by {policies.name}/bench.cedar")
                yield Estate(stack, workloads, iter(workloads), itertools.count(1))


def request_grant(estate: Estate, label: str, poll_interval: float, timeout: float = 60.0) -> GrantTiming:
    """Submit one fresh request and poll ``GET /requests/{id}`` every ``poll_interval`` s until it settles."""
    grantee = estate.next_workload()
    client = grantee.client
    started = time.perf_counter()
    submission = client.submit(
        database=DATABASE,
        db_user=DB_USER,
        duration_minutes=GRANT_MINUTES,
        reason=REASON,
        idempotency_key=estate.idempotency_key(label),
    )
    accepted = time.perf_counter() - started
    deadline = started + timeout
    view = client.get_request(submission.request_id)
    while view.status in UNSETTLED and time.perf_counter() < deadline:
        time.sleep(poll_interval)
        view = client.get_request(submission.request_id)
    active = time.perf_counter() - started
    if view.status != "ACTIVE" or view.grant is None or not view.grant.policy_arn or not view.grant.expires_at:
        raise BenchError(f"request {submission.request_id} ended {view.status}, not ACTIVE: {view.raw}")
    return GrantTiming(
        request_id=submission.request_id,
        workload=grantee,
        execution_arn=submission.execution_arn or "",
        policy_arn=view.grant.policy_arn,
        expires_at=epoch_of(view.grant.expires_at),
        accepted=accepted,
        active=active,
    )


def expiry_sweep(stack: LocalStack) -> str:
    """The logical id of the schedule that runs the expiry sweep: SweepGrantsFunction's schedule without Input.

    (The function has other schedules too, e.g. the integrity sweep with ``{"mode": "integrity"}``.)
    """
    assert stack.scheduler is not None, "stack not running"
    target = stack.functions["SweepGrantsFunction"].function_arn
    found = [s.logical_id for s in stack.scheduler.schedules if s.target_arn == target and s.input is None]
    if len(found) != 1:
        raise BenchError(f"expected one input-less schedule for SweepGrantsFunction, found {found}")
    return found[0]


def sweep(stack: LocalStack) -> Invocation:
    """Run the expiry sweep once, now, as its schedule would; a failed sweep is an error."""
    invocation = stack.fire_schedule(expiry_sweep(stack))
    if invocation.errored:
        raise BenchError(f"the sweeper failed: {invocation.payload}")
    return invocation


def warm_up(estate: Estate) -> None:
    """Import every handler the benchmarks run (first invocations import them) and leave nothing granted."""
    for _ in range(2):
        grant = request_grant(estate, "warm-up", poll_interval=0.05)
        grant.workload.client.revoke(grant.request_id)  # DELETE /grants: the revoke function runs too
    sweep(estate.stack)


def policy_exists(iam: Any, policy_arn: str) -> bool:
    try:
        iam.get_policy(PolicyArn=policy_arn)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return False
        raise
    return True


def not_attached(stack: LocalStack, grants: list[GrantTiming]) -> list[str]:
    """The grants whose policy is not attached to their role."""
    return [g.request_id for g in grants if g.policy_arn not in attached_policies(stack, g.workload.role_name)]
