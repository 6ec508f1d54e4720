"""Waiting for the workflow: poll a condition until it holds (a wait, never a timing assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """The condition's first truthy value; AssertionError if it never comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
