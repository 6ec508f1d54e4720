"""Request -> active grant, and expiry -> policy gone (by the workflow, and by the sweeper alone).

All on the local stack, through the signed API, with the real workflow. Wall-clock instants
(``time.time()``) are compared with ``expires_at``; durations use ``time.perf_counter()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .common import BenchError, Summary, progress, sleep_until, summarize
from .local import Estate, GrantTiming, not_attached, policy_exists, request_grant, sweep

REQUEST_POLL = 0.05  # GET /requests/{id} while waiting for ACTIVE
IAM_POLL = 0.1  # get_policy while waiting for a revocation
WATCH_LEAD = 1.5  # start watching a grant this long before its expiry (the workflow may wake up to 1 s early)
WATCH_TIMEOUT = 30.0  # give up on a grant this long after its expiry
WAIT_STATE = "WaitUntilExpiry"
REVOKE = "RevokeGrant"


@dataclass
class RequestLatency:
    poll_interval: float
    accepted: Summary | None  # POST /requests -> 202
    active: Summary | None  # POST /requests -> ACTIVE observed
    after_accepted: Summary | None  # 202 -> ACTIVE observed (the workflow's part, as the client sees it)
    final_poll: Summary | None  # the round trip of the GET that observed ACTIVE
    samples: list[float] = field(default_factory=list)


@dataclass
class WorkflowRevocation:
    poll_interval: float
    lag: Summary | None  # first get_policy that found the policy gone - expires_at (grants watched before expiry)
    revoke_done: Summary | None  # the last RevokeGrant step ended (from the history; the policy was gone) - expires_at
    first_wake: Summary | None  # the execution first left WaitUntilExpiry - expires_at (from its history)
    last_wake: Summary | None  # ... and last: a revoke step that finds the grant not yet due sends it back to wait
    revoke_attempts: Summary | None  # RevokeGrant task entries per execution (a count, not seconds)
    revoke_after_wake: Summary | None  # policy seen gone - last left the Wait state
    not_revoked: int  # still there WATCH_TIMEOUT s after expiry
    gone_at_first_look: int  # already gone at the first look: not in ``lag`` (watching began after their expiry)
    samples: list[float] = field(default_factory=list)


@dataclass
class SweeperRevocation:
    interval: float
    lag: Summary | None  # end of the sweep that revoked it - expires_at (an upper bound)
    lag_from_sweep_start: Summary | None  # start of that sweep - expires_at (a lower bound)
    sweep_duration: Summary | None  # sweeps that revoked at least one grant
    sweeps: int
    most_in_one_sweep: int
    not_revoked: int
    samples: list[float] = field(default_factory=list)


def issue_staggered(
    estate: Estate, runs: int, label: str, spacing: float, then: Callable[[GrantTiming], None] | None = None
) -> list[GrantTiming]:
    """``runs`` fresh 1-minute grants, one after another, the starts at least ``spacing`` s apart.

    Sequential requests never queue behind each other, and the spacing spreads the expiries so that
    few grants are being watched at any moment. ``then`` runs on each grant as soon as it is ACTIVE:
    with many runs, issuing them all takes longer than a grant lives, so whatever must happen before
    a grant's expiry happens there, not after the loop.
    """
    grants: list[GrantTiming] = []
    next_start = time.perf_counter()
    for _ in range(runs):
        delay = next_start - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        next_start = time.perf_counter() + spacing
        grant = request_grant(estate, label, REQUEST_POLL)
        if then is not None:
            then(grant)
        grants.append(grant)
    return grants


def request_latency(grants: list[GrantTiming], final_polls: list[float]) -> RequestLatency:
    return RequestLatency(
        poll_interval=REQUEST_POLL,
        accepted=summarize([g.accepted for g in grants]),
        active=summarize([g.active for g in grants]),
        after_accepted=summarize([g.active - g.accepted for g in grants]),
        final_poll=summarize(final_polls),
        samples=[g.active for g in grants],
    )


def measure_request_to_active(estate: Estate, runs: int, spacing: float) -> tuple[RequestLatency, list[GrantTiming]]:
    progress(f"request -> active: {runs} sequential requests, >= {spacing:g}s apart, polling every {REQUEST_POLL}s")
    missing: list[str] = []
    grants = issue_staggered(
        estate, runs, "latency", spacing, then=lambda grant: missing.extend(not_attached(estate.stack, [grant]))
    )
    if missing:
        raise BenchError(f"ACTIVE, but the policy is not attached to the role: {missing}")
    return request_latency(grants, _final_poll_round_trips(grants[0])), grants


def _final_poll_round_trips(grant: GrantTiming, count: int = 10) -> list[float]:
    """What one GET /requests/{id} costs, which bounds the resolution of the polled latency."""
    client = grant.workload.client
    round_trips: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        client.get_request(grant.request_id)
        round_trips.append(time.perf_counter() - started)
    return round_trips


def watch_revocations(estate: Estate, grants: list[GrantTiming]) -> tuple[dict[str, float | None], set[str]]:
    """Poll IAM (get_policy, every IAM_POLL s) for each grant from WATCH_LEAD s before its expiry until it is gone.

    Returns the wall-clock time of the first look that found each policy gone (None: not within
    WATCH_TIMEOUT), and the grants already gone at the first look (no measurement: with many runs,
    issuing them all outlasts a 1-minute grant, so the first ones expire before watching begins).
    """
    iam = estate.stack.client("iam")
    pending = {g.request_id: g for g in grants}
    gone: dict[str, float | None] = {}
    early: set[str] = set()
    looked: set[str] = set()
    tick = time.time()
    while pending:
        now = time.time()
        for grant in sorted(pending.values(), key=lambda g: g.expires_at):
            if now < grant.expires_at - WATCH_LEAD:
                break
            looked_at = time.time()
            if not policy_exists(iam, grant.policy_arn):
                gone[grant.request_id] = looked_at
                if grant.request_id not in looked:
                    early.add(grant.request_id)
                del pending[grant.request_id]
            elif looked_at > grant.expires_at + WATCH_TIMEOUT:
                gone[grant.request_id] = None
                del pending[grant.request_id]
            looked.add(grant.request_id)
        if not pending:
            break
        next_window = min(g.expires_at for g in pending.values()) - WATCH_LEAD
        tick = max(tick + IAM_POLL, time.time(), next_window)
        sleep_until(tick)
    return gone, early


@dataclass(frozen=True)
class WaitHistory:
    """From an execution's history (millisecond timestamps): its exits from the Wait state, its revoke attempts,
    and when its last RevokeGrant step ended (the revoke function returns once IAM confirms the policy gone)."""

    first_exit: float
    last_exit: float
    revoke_attempts: int
    revoke_done: float | None


def _wait_history(estate: Estate, grant: GrantTiming) -> WaitHistory | None:
    events: list[dict[str, Any]] = estate.stack.client("stepfunctions").get_execution_history(
        executionArn=grant.execution_arn, maxResults=1000
    )["events"]
    exits = [
        event["timestamp"].timestamp()
        for event in events
        if event["type"] == "WaitStateExited" and (event.get("stateExitedEventDetails") or {}).get("name") == WAIT_STATE
    ]
    attempts = sum(
        1
        for event in events
        if event["type"] == "TaskStateEntered" and (event.get("stateEnteredEventDetails") or {}).get("name") == REVOKE
    )
    revoke_exits = [
        event["timestamp"].timestamp()
        for event in events
        if event["type"] == "TaskStateExited" and (event.get("stateExitedEventDetails") or {}).get("name") == REVOKE
    ]
    return WaitHistory(min(exits), max(exits), attempts, max(revoke_exits, default=None)) if exits else None


def measure_workflow_revocation(estate: Estate, grants: list[GrantTiming]) -> WorkflowRevocation:
    last = max(g.expires_at for g in grants)
    progress(
        f"revocation by the workflow: watching {len(grants)} grants, the last expires in {last - time.time():.0f}s"
    )
    gone, early = watch_revocations(estate, grants)
    lags: list[float] = []
    revoke_done: list[float] = []
    first_wakes: list[float] = []
    last_wakes: list[float] = []
    attempts: list[float] = []
    after_wake: list[float] = []
    for grant in grants:
        seen_gone = gone.get(grant.request_id)
        if seen_gone is not None and grant.request_id not in early:
            lags.append(seen_gone - grant.expires_at)
        history = _wait_history(estate, grant)
        if history is not None:
            first_wakes.append(history.first_exit - grant.expires_at)
            last_wakes.append(history.last_exit - grant.expires_at)
            attempts.append(history.revoke_attempts)
            if history.revoke_done is not None:
                revoke_done.append(history.revoke_done - grant.expires_at)
            if seen_gone is not None and grant.request_id not in early:
                after_wake.append(seen_gone - history.last_exit)
    return WorkflowRevocation(
        poll_interval=IAM_POLL,
        lag=summarize(lags),
        revoke_done=summarize(revoke_done),
        first_wake=summarize(first_wakes),
        last_wake=summarize(last_wakes),
        revoke_attempts=summarize(attempts),
        revoke_after_wake=summarize(after_wake),
        not_revoked=sum(1 for value in gone.values() if value is None),
        gone_at_first_look=len(early),
        samples=lags,
    )


def measure_sweeper_revocation(estate: Estate, runs: int, spacing: float, interval: float) -> SweeperRevocation:
    """Grants whose workflow is stopped before expiry, revoked by the sweeper fired every ``interval`` s.

    The expiry sweep is fired by this function (``stack.fire_schedule``), as the local scheduler would with
    ``schedule_interval=interval``; the ticks start when the last grant is issued, so their phase
    relative to the expiries is arbitrary, as in AWS. A sweep's own start and end bracket the moment
    it deleted a policy, so no IAM polling is needed; each revoked policy is checked once afterwards.
    """
    progress(f"revocation by the sweeper: {runs} grants with stopped workflows, sweeping every {interval:g}s")
    stack = estate.stack
    sfn = stack.client("stepfunctions")
    grants = issue_staggered(
        estate,
        runs,
        "sweeper",
        spacing,
        then=lambda grant: sfn.stop_execution(executionArn=grant.execution_arn, cause="benchmark: left to the sweeper"),
    )
    expiry = {g.request_id: g.expires_at for g in grants}
    revoked_by: dict[str, tuple[float, float]] = {}
    durations: list[float] = []
    sweeps = most = 0
    tick = time.time()
    deadline = max(expiry.values()) + interval + WATCH_TIMEOUT
    while len(revoked_by) < len(grants) and time.time() < deadline:
        sleep_until(tick)
        started = time.time()
        invocation = sweep(stack)
        ended = time.time()
        tick += interval
        sweeps += 1
        revoked = [rid for rid in invocation.payload.get("revoked", []) if rid in expiry]
        if revoked:
            durations.append(ended - started)
            most = max(most, len(revoked))
        for request_id in revoked:
            revoked_by[request_id] = (started, ended)
    iam = stack.client("iam")
    still_there = [g.request_id for g in grants if g.request_id in revoked_by and policy_exists(iam, g.policy_arn)]
    if still_there:
        raise BenchError(f"the sweeper reported revoked, but IAM still has the policies of {still_there}")
    return SweeperRevocation(
        interval=interval,
        lag=summarize([end - expiry[rid] for rid, (_, end) in revoked_by.items()]),
        lag_from_sweep_start=summarize([start - expiry[rid] for rid, (start, _) in revoked_by.items()]),
        sweep_duration=summarize(durations),
        sweeps=sweeps,
        most_in_one_sweep=most,
        not_revoked=len(grants) - len(revoked_by),
        samples=[end - expiry[rid] for rid, (_, end) in revoked_by.items()],
    )
