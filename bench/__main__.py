"""``python -m bench`` (``make bench``): the accessctl benchmarks, printed as one table.

1. request -> active grant, through the signed API on the local stack;
2. revocation lag: expiry -> policy gone, by the workflow, and by the sweeper alone;
3. AWS API calls per submission, grant and revoke, counted at the emulator;
4. cold import time of every handler module, against a bare interpreter start.

Benchmarks 1-3 share one local stack. 2 needs real 1-minute expiries, so a full run takes minutes.
Numbers go in the table, never in assertions; the machine is shared and noisy, so compare within a run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .calls import measure_api_calls
from .common import BenchError, machine_summary, progress
from .imports import measure_imports
from .latency import measure_request_to_active, measure_sweeper_revocation, measure_workflow_revocation
from .local import running_stack, warm_up
from .report import Results, render, to_json

BENCHMARKS = ("grants", "sweeper", "calls", "imports")
T = TypeVar("T")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="samples per measure (default 20; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: runs=3, sweeps every 5 s")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the results as JSON to FILE as well as the table; without FILE, print JSON instead of the table",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only these (repeatable): grants = request->active and revocation by the workflow (1, 2), "
        "sweeper = revocation by the sweeper (2), calls (3), imports (4)",
    )
    parser.add_argument("--sweep-interval", type=float, help="seconds between sweeps (default 10; 5 with --quick)")
    parser.add_argument("--spacing", type=float, default=1.0, help="minimum seconds between request starts")
    args = parser.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 20)
    args.sweep_interval = args.sweep_interval or (5.0 if args.quick else 10.0)
    if args.runs < 1 or args.sweep_interval <= 0 or args.spacing < 0:
        parser.error("--runs must be >= 1, --sweep-interval > 0, --spacing >= 0")
    return args


def attempt(results: Results, name: str, measure: Callable[[], T]) -> T | None:
    """Run one benchmark; a failure is reported in the table and the others still run."""
    try:
        return measure()
    except BenchError as error:
        progress(f"{name} FAILED: {error}")
        results.errors[name] = str(error)
        return None


def run(args: argparse.Namespace) -> Results:
    selected = set(args.only or BENCHMARKS)
    results = Results(
        machine=machine_summary(),
        config={
            "mode": "quick" if args.quick else "full",
            "runs": args.runs,
            "import_runs": args.runs,
            "spacing": args.spacing,
            "sweep_interval": args.sweep_interval,
            "benchmarks": sorted(selected),
        },
    )
    started = time.monotonic()
    # Imports first, while nothing else runs in this process or on its behalf.
    if "imports" in selected:
        results.imports = attempt(results, "imports", lambda: measure_imports(args.runs))
    if selected & {"grants", "sweeper", "calls"}:
        # One fresh role per request: 2 warm-up, runs for 1+2, runs for the sweeper, 1 for the calls.
        with running_stack(roles=2 * args.runs + 3) as estate:
            warm_up(estate)
            if "grants" in selected:
                measured = attempt(
                    results, "grants", lambda: measure_request_to_active(estate, args.runs, args.spacing)
                )
                if measured is not None:
                    results.request_latency, grants = measured
                    results.workflow_revocation = attempt(
                        results, "workflow revocation", lambda: measure_workflow_revocation(estate, grants)
                    )
            if "sweeper" in selected:
                results.sweeper_revocation = attempt(
                    results,
                    "sweeper",
                    lambda: measure_sweeper_revocation(estate, args.runs, args.spacing, args.sweep_interval),
                )
            if "calls" in selected:
                results.api_calls = attempt(results, "calls", lambda: measure_api_calls(estate))
    results.duration_seconds = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The handlers' logs and metrics print to stdout; during the run it is stderr, so stdout is only the result.
    with contextlib.redirect_stdout(sys.stderr):
        results = run(args)
    if args.json == "-":
        sys.stdout.write(to_json(results))
    else:
        sys.stdout.write(render(results))
        if args.json:
            Path(args.json).write_text(to_json(results))
            progress(f"JSON written to {args.json}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
