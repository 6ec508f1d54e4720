"""Cold import time of each Lambda handler module, each in a fresh interpreter.

Every sample is a new ``python -I`` process (isolated: no PYTHON* variables, no user site, no script
directory on the path; the venv's site-packages stay) whose ``sys.path`` gets, in front, the function's
directory and then ``layers/accessctl`` (the order of Lambda's /var/task and /opt/python). The
environment is only what the modules need at import. The child times ``import app`` itself; the
parent times the whole process, and the same number for ``python -I -c pass`` is the baseline.

Handlers and the baseline are sampled round-robin (one of each per round), so a noisy stretch of the
machine hits them all alike. One round is run first and discarded: it writes missing bytecode caches.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .common import PROJECT_ROOT, BenchError, Summary, progress, summarize

LAYER_DIR = PROJECT_ROOT / "layers" / "accessctl"
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
BASELINE = "(python -I -c pass)"

# What the modules read at import (evaluate_request parses the Cedar policies linked into its own directory).
CHILD_ENV = {"GRANTS_TABLE": "bench-grants", "AUDIT_TABLE": "bench-audit", "AWS_DEFAULT_REGION": "us-east-1"}

# Runs in the child. ``os`` and ``time`` are loaded by interpreter start-up anyway, so importing them
# costs nothing the baseline does not also pay; only ``import app`` is inside the timed span.
_CHILD = (
    "import os, sys, time\n"
    "sys.path[:0] = sys.argv[1].split(os.pathsep)\n"
    "started = time.perf_counter()\n"
    "import app\n"
    "elapsed = time.perf_counter() - started\n"
    "print(f'{elapsed!r} {len(sys.modules)}')\n"
)
_IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)$")


@dataclass
class HandlerImport:
    name: str  # the function's directory name ("api"), or BASELINE
    import_time: Summary | None  # ``import app`` inside the child (None for the baseline)
    process_wall: Summary  # the whole child process, start to exit, seen by the parent
    wall_minus_baseline: float  # median process wall minus the baseline's median
    modules: int  # len(sys.modules) after the import
    top_packages: list[tuple[str, float]]  # (top-level package, self seconds) from one -X importtime run


def handler_dirs() -> list[Path]:
    return sorted(path.parent for path in FUNCTIONS_DIR.glob("*/app.py"))


def _child_command(function_dir: Path | None, *flags: str) -> list[str]:
    if function_dir is None:
        return [sys.executable, "-I", *flags, "-c", "pass"]
    return [sys.executable, "-I", *flags, "-c", _CHILD, os.pathsep.join([str(function_dir), str(LAYER_DIR)])]


def _run(function_dir: Path | None) -> tuple[float, float | None, int]:
    """One sample: (process wall seconds, import seconds or None, modules loaded)."""
    command = _child_command(function_dir)
    started = time.perf_counter()
    answer = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=120, cwd="/")
    wall = time.perf_counter() - started
    if answer.returncode != 0:
        raise BenchError(f"importing {function_dir} failed:\n{answer.stderr[-2000:]}")
    if function_dir is None:
        return wall, None, 0
    elapsed, modules = answer.stdout.split()
    return wall, float(elapsed), int(modules)


def top_packages(function_dir: Path, count: int = 3) -> list[tuple[str, float]]:
    """The top-level packages with the most import self-time, from one ``-X importtime`` run (slower than normal)."""
    answer = subprocess.run(
        _child_command(function_dir, "-X", "importtime"),
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    totals: dict[str, float] = defaultdict(float)
    for line in answer.stderr.splitlines():
        found = _IMPORTTIME_LINE.match(line)
        if found:
            totals[found.group(4).split(".")[0]] += int(found.group(1)) / 1e6
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:count]


def measure_imports(runs: int) -> list[HandlerImport]:
    """Median (and p95) cold import time of every ``functions/*/app.py`` over ``runs`` fresh interpreters."""
    targets: list[Path | None] = [None, *handler_dirs()]
    names = {target: BASELINE if target is None else target.name for target in targets}
    progress(f"cold imports: {len(targets) - 1} handlers + baseline, 1 discarded round + {runs} rounds")
    for target in targets:
        _run(target)
    walls: dict[Path | None, list[float]] = {target: [] for target in targets}
    imports: dict[Path | None, list[float]] = {target: [] for target in targets}
    modules: dict[Path | None, int] = {}
    for round_number in range(runs):
        for target in targets:
            wall, imported, loaded = _run(target)
            walls[target].append(wall)
            if imported is not None:
                imports[target].append(imported)
            modules[target] = loaded
        if (round_number + 1) % 5 == 0 or round_number + 1 == runs:
            progress(f"cold imports: round {round_number + 1}/{runs}")
    baseline = statistics.median(walls[None])
    results: list[HandlerImport] = []
    for target in targets:
        wall_summary = summarize(walls[target])
        assert wall_summary is not None
        results.append(
            HandlerImport(
                name=names[target],
                import_time=summarize(imports[target]),
                process_wall=wall_summary,
                wall_minus_baseline=wall_summary.median - baseline,
                modules=modules[target],
                top_packages=[] if target is None else top_packages(target),
            )
        )
    return results
