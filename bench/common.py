"""Measuring helpers shared by the benchmarks: statistics, clocks, progress, the machine summary, tables.

Times are kept in seconds everywhere and converted only when printed.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_STARTED = time.monotonic()


class BenchError(RuntimeError):
    """The system did not do what a benchmark needs (a request was denied, a grant never appeared...)."""


@dataclass(frozen=True)
class Summary:
    """Order statistics of one set of samples (seconds). ``p95``/``p99`` are nearest-rank percentiles."""

    n: int
    median: float
    p95: float
    p99: float
    min: float
    max: float
    mean: float


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``pct`` % of the samples at or below it.

    With few samples this is the maximum (n = 3: p95 = max; n = 20: p95 = the 19th smallest; p99 is
    the maximum up to n = 100, where it is the 99th smallest).
    """
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> Summary | None:
    if not values:
        return None
    return Summary(
        n=len(values),
        median=statistics.median(values),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        min=min(values),
        max=max(values),
        mean=statistics.fmean(values),
    )


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the result)."""
    print(f"[bench +{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def sleep_until(wall_clock: float) -> None:
    """Sleep until ``time.time()`` reaches ``wall_clock`` (returns at once if it has)."""
    remaining = wall_clock - time.time()
    if remaining > 0:
        time.sleep(remaining)


def epoch_of(iso: str) -> float:
    """``2026-12-03T17:00:00Z`` (or with fractional seconds / an offset) as seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then put the previous values back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


def _git_commit() -> str:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "-"
    return answer.stdout.strip() or "-"


def machine_summary() -> dict[str, str | int | float]:
    """What the numbers were measured on; recorded at the start of the run."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": _git_commit(),
        "cpus": os.cpu_count() or 0,
        "cpus_usable": usable,
        "load_1min_at_start": round(load, 2),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "moto": _version("moto"),
        "boto3": _version("boto3"),
        "aws_lambda_powertools": _version("aws-lambda-powertools"),
    }


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Plain-text table lines; ``align`` has one ``l`` or ``r`` per column."""
    if len(align) != len(headers):
        raise ValueError("one alignment letter per column")
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).rjust(width) if how == "r" else str(cell).ljust(width)
            for cell, width, how in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return [line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in rows)]


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def signed_secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:+.2f} s"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
