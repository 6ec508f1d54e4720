"""The results of one run, printed as one plain-text table (or as JSON)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .calls import ApiCalls, Phase
from .common import Summary, ms, number, render_table, secs, signed_secs
from .imports import BASELINE, HandlerImport
from .latency import RequestLatency, SweeperRevocation, WorkflowRevocation


@dataclass
class Results:
    machine: dict[str, str | int | float]
    config: dict[str, Any]
    request_latency: RequestLatency | None = None
    workflow_revocation: WorkflowRevocation | None = None
    sweeper_revocation: SweeperRevocation | None = None
    api_calls: ApiCalls | None = None
    imports: list[HandlerImport] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    duration_seconds: float = 0.0


NOTE_WIDTH = 118


def _note(text: str) -> list[str]:
    """A note under a table: wrapped, indented."""
    return textwrap.wrap(text, NOTE_WIDTH, initial_indent="   ", subsequent_indent="   ")


def _row(label: str, summary: Summary | None, fmt: Callable[[float | None], str]) -> list[str]:
    if summary is None:
        return [label, "0", "-", "-", "-", "-", "-"]
    return [
        label,
        str(summary.n),
        fmt(summary.median),
        fmt(summary.p95),
        fmt(summary.p99),
        fmt(summary.min),
        fmt(summary.max),
    ]


def _stats_table(rows: list[list[str]]) -> list[str]:
    return render_table(["measure", "n", "median", "p95", "p99", "min", "max"], rows, "lrrrrrr")


def _header(results: Results) -> list[str]:
    m, c = results.machine, results.config
    return [
        f"accessctl benchmarks - {m['date']} - commit {m['commit']} - {c['mode']} mode, runs={c['runs']}",
        f"machine: {m['cpus']} CPUs ({m['cpus_usable']} usable), load {m['load_1min_at_start']} at start, "
        f"{m['platform']}",
        f"software: {m['python']}, moto {m['moto']}, boto3 {m['boto3']}, "
        f"aws-lambda-powertools {m['aws_lambda_powertools']}",
        f"took {results.duration_seconds / 60:.1f} min; p95/p99 are nearest-rank (the max when n < 20 / n < 100)",
        *_note(
            "1-3 run on one local stack: moto server, in-process handlers and the local signed API, all in this one "
            "Python process (one GIL), warmed up first (every handler imported), schedules off unless a benchmark "
            "fires them. They show the controller's own overhead and the workflow's timing logic, not AWS latency."
        ),
    ]


def _requests(latency: RequestLatency, spacing: float) -> list[str]:
    rows = [
        _row("POST /requests -> 202", latency.accepted, ms),
        _row("POST /requests -> ACTIVE seen", latency.active, ms),
        _row("  202 -> ACTIVE seen (the workflow)", latency.after_accepted, ms),
        _row("  one GET /requests/{id} (resolution)", latency.final_poll, ms),
    ]
    poll = latency.poll_interval
    get = latency.final_poll.median if latency.final_poll else 0.0
    return [
        f"1. Request -> active grant (auto-allowed; sequential requests, starts >= {spacing:g} s apart, each from a "
        "role of its own)",
        *_stats_table(rows),
        *_note(
            "Each request comes from a new role (bench-workload-NNN, allowed by benchmark Cedar policies set through "
            "POLICIES_DIR), since a request for a database user the role already holds extends that grant "
            "instead of issuing one. ACTIVE is written after the policy is attached (checked as each grant is seen ACTIVE). "
            f"It is seen by polling GET "
            f"every {poll * 1000:.0f} ms, so a sample is late by up to {(poll + get) * 1000:.0f} ms (the interval "
            f"plus one GET), ~{(poll / 2 + get) * 1000:.0f} ms on average."
        ),
    ]


def _revocation(workflow: WorkflowRevocation | None, sweeper: SweeperRevocation | None) -> list[str]:
    lines = ["2. Revocation lag = policy gone from IAM - expires_at (negative: gone before expiry; not clamped)"]
    rows: list[list[str]] = []
    if workflow is not None:
        poll = f"get_policy every {workflow.poll_interval * 1000:.0f} ms"
        rows += [
            _row(f"workflow: policy seen gone ({poll})", workflow.lag, signed_secs),
            _row("  RevokeGrant step ended (history; all grants)", workflow.revoke_done, signed_secs),
            _row("  execution first left the Wait state", workflow.first_wake, signed_secs),
            _row("  ... and last left it", workflow.last_wake, signed_secs),
            _row("  RevokeGrant attempts per execution (count)", workflow.revoke_attempts, number),
            _row("  last left the Wait -> policy seen gone", workflow.revoke_after_wake, secs),
        ]
    if sweeper is not None:
        rows += [
            _row(f"sweeper alone, every {sweeper.interval:g} s: gone by sweep end", sweeper.lag, signed_secs),
            _row("  the same, from the start of that sweep", sweeper.lag_from_sweep_start, signed_secs),
            _row("  run time of a sweep that revoked", sweeper.sweep_duration, secs),
        ]
    lines += _stats_table(rows)
    if workflow is not None:
        lines += _note(
            f"workflow: {workflow.lag.n if workflow.lag else 0} grants of 1 minute, overlapping (those of 1.), each "
            "execution in WaitUntilExpiry (TimestampPath = expires_at, whole seconds). moto's Wait sleeps "
            "int(expires_at - now) seconds, truncated, so it wakes up to 1 s EARLY; RevokeGrant then answers 'not yet "
            "due' (expires_at > now, to the second) and the workflow pauses 1 s (PauseBeforeWaitingAgain) and waits "
            "again until expires_at, so RevokeGrant runs about twice and deletes the policy just after expiry. "
            f"Seen gone within one poll ({workflow.poll_interval * 1000:.0f} ms) plus one get_policy. Not revoked "
            f"within 30 s: {workflow.not_revoked}; gone already at the first look (watching began after their "
            f"expiry, as issuing many grants outlasts one; left out of 'seen gone'): {workflow.gone_at_first_look}. "
            "'RevokeGrant step ended' is from each execution's history for every grant: the revoke function returns "
            "only once IAM confirms the policy gone, so it bounds the lag from above."
        )
    if sweeper is not None:
        lines += _note(
            f"sweeper: {sweeper.lag.n if sweeper.lag else 0} grants whose executions were stopped (StopExecution) "
            f"before expiry; the expiry sweep fired every {sweeper.interval:g} s by the benchmark, ticks starting "
            f"after the last grant, so their phase is arbitrary; {sweeper.sweeps} sweeps, at most "
            f"{sweeper.most_in_one_sweep} grants revoked by one; not revoked: {sweeper.not_revoked}. Model: a sweep "
            "revokes the grants whose expires_at (whole seconds) is at or before now, to the second "
            "(GrantsStore.expired_active), so lag is in [0, interval) plus the sweep's run time, mean ~interval/2. "
            "With the deployed rate(1 minute) schedule: up to ~60 s plus run time plus EventBridge Scheduler's delay."
        )
    return lines


def _phase_rows(phase: Phase) -> list[list[str]]:
    rows: list[list[str]] = []
    for (caller, service, action), count in sorted(phase.calls.items()):
        rows.append([phase.name if not rows else "", caller, service, action, str(count)])
    rows.append(["", "", "", "total", str(phase.total())])
    return rows


def _api_calls(calls: ApiCalls) -> list[str]:
    rows = [row for phase in calls.phases for row in _phase_rows(phase)]
    lines = [
        "3. AWS API calls per request, counted at the emulator (warm handlers; no polling inside the counted windows)",
        *render_table(["phase", "made by", "service", "action", "calls"], rows, "llllr"),
    ]
    for window in calls.windows:
        attributed = sum(phase.total() for phase in window.phases)
        check = "matching" if not window.mismatches() else "NOT matching"
        invoked = "; ".join(
            f"{phase.name}: " + ", ".join(f"{name} x{n}" for name, n in sorted(phase.invocations.items()))
            for phase in window.phases
        )
        lines += _note(
            f"window '{window.name}': the emulator served {window.emulator_total()} calls, {check} the {attributed} "
            f"attributed. Invocations: {invoked}."
        )
    lines += _note(
        "'made by': the in-process runtime's invoke and botocore's _make_api_call are wrapped, per thread; the Step "
        "Functions executor's calls are its lambda:Invoke per Task. The grant window ends 3 s after POST, the revoke "
        "window runs from 2 s before to 3 s after expiry; the request's state is read only after each capture. Not "
        "in these counts: one sts:GetCallerIdentity per cold container (default_dependencies()); revocation through "
        "DELETE /grants."
    )
    retries = max((phase.invocations.get("RevokeGrantFunction", 0) for phase in calls.phases), default=0)
    if retries > 1:
        lines += _note(
            f"RevokeGrantFunction ran {retries} times for one revocation: the early-wake retry loop described in 2. "
            "Each 'not yet due' attempt costs one lambda:Invoke (executor) and one dynamodb:GetItem; the last "
            "attempt makes the rest. A Wait that never wakes early (as expected of AWS) would need one attempt."
        )
    lines += [f"   WARNING: {warning}" for warning in calls.warnings]
    return lines


def _imports(imports: list[HandlerImport], runs: int) -> list[str]:
    base = next((item.process_wall.median for item in imports if item.name == BASELINE), None)
    rows: list[list[str]] = []
    for item in imports:
        top = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in item.top_packages)
        rows.append(
            [
                item.name,
                ms(item.import_time.median) if item.import_time else "-",
                ms(item.import_time.p95) if item.import_time else "-",
                ms(item.process_wall.median),
                "-" if item.name == BASELINE else ms(item.wall_minus_baseline),
                f"{item.process_wall.median / base:.0f}x" if base else "-",
                str(item.modules) if item.modules else "-",
                top or "-",
            ]
        )
    headers = [
        "handler",
        "import",
        "import p95",
        "process",
        "process-base",
        "process/base",
        "modules",
        "most self time (ms)",
    ]
    return [
        f"4. Cold import of each handler module (functions/*/app.py), a fresh interpreter each time, median of {runs}",
        *render_table(headers, rows, "lrrrrrrl"),
        *_note(
            "import: 'import app' timed inside the child, with sys.path = the function's dir, layers/accessctl, then "
            "the venv's site-packages (python -I), and only GRANTS_TABLE, AUDIT_TABLE and AWS_DEFAULT_REGION set. "
            "process: the whole child as the parent sees it (start-up, import, exit); base: python -I -c pass, "
            "sampled in the same rounds. Last column: top-level packages by self time in one extra run under "
            "-X importtime (which inflates them)."
        ),
    ]


def render(results: Results) -> str:
    lines = _header(results)
    spacing = float(results.config.get("spacing", 0.0))
    if results.request_latency is not None:
        lines += ["", *_requests(results.request_latency, spacing)]
    if results.workflow_revocation is not None or results.sweeper_revocation is not None:
        lines += ["", *_revocation(results.workflow_revocation, results.sweeper_revocation)]
    if results.api_calls is not None:
        lines += ["", *_api_calls(results.api_calls)]
    if results.imports is not None:
        lines += ["", *_imports(results.imports, int(results.config["import_runs"]))]
    for name, error in results.errors.items():
        lines += ["", f"FAILED: {name}: {error}"]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        if value and all(isinstance(key, tuple) for key in value):
            return [{"key": list(key), "count": _jsonable(count)} for key, count in value.items()]
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def to_json(results: Results) -> str:
    return json.dumps(_jsonable(results), indent=2) + "\n"
