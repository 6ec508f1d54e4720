"""The local stack as most stack tests want it: the real template, the demo database, and no
schedules of its own (tests fire them, so a sweep never races an assertion)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from accessctl_local import LocalStack
from accessctl_local.estate import create_database
from tests.support.template import PROJECT_ROOT

DEMO_DATABASE = "orders-demo"


@contextmanager
def demo_stack(parameter_overrides: dict[str, Any] | None = None) -> Iterator[LocalStack]:
    with LocalStack.start(
        project_root=PROJECT_ROOT, run_schedules=False, parameter_overrides=parameter_overrides
    ) as running:
        create_database(running, DEMO_DATABASE)
        yield running
