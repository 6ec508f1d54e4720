"""AWS API calls per grant and per revoke, counted at the emulator and attributed to the function that made them.

The emulator counts every call it serves (``stack.api_call_counts()``), but not who made it. To split
the submission (the API function) from the workflow, ``CallAttribution`` records, client-side, which
function each botocore call was made from: the in-process runtime runs a handler on the thread that
invoked it, so wrapping ``runtime.invoke`` names the thread's function, and wrapping
``BaseClient._make_api_call`` sees every call made on it. Calls made outside any handler come from the
Step Functions executor (its Lambda task invocations) or from this benchmark itself (the main thread;
there should be none inside a counted window). The attributed totals are checked against the
emulator's per (service, action).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from botocore.client import BaseClient

from accessctl_local import LocalStack

from .common import BenchError, epoch_of, progress, sleep_until
from .local import DATABASE, DB_USER, GRANT_MINUTES, REASON, Estate

EXECUTOR = "(Step Functions executor)"
BENCH = "(the benchmark itself)"
GRANT_SETTLE = 3.0  # after POST /requests: the workflow grants within a fraction of a second
REVOKE_LEAD = 2.0  # reset the counts this long before expiry (the workflow wakes at most 1 s early)
REVOKE_SETTLE = 3.0  # capture this long after expiry

Key = tuple[str, str, str]  # (caller, service, action)
_MAKE_API_CALL = "_make_api_call"  # botocore's private method every client call goes through


class CallAttribution:
    """Counts botocore calls per (calling function, service, operation) while active (a context manager)."""

    def __init__(self, stack: LocalStack) -> None:
        assert stack.runtime is not None, "stack not running"
        self._runtime = stack.runtime
        self._local = threading.local()
        self._lock = threading.Lock()
        self._counts: collections.Counter[Key] = collections.Counter()
        self._original_call: Callable[..., Any] | None = None

    def __enter__(self) -> CallAttribution:
        runtime, local = self._runtime, self._local
        original_invoke = runtime.invoke
        original_call = getattr(BaseClient, _MAKE_API_CALL)
        self._original_call = original_call

        def invoke(function: str, event: Any) -> Any:
            previous = getattr(local, "function", None)
            local.function = runtime.spec(function).logical_id
            try:
                return original_invoke(function, event)
            finally:
                local.function = previous

        def make_api_call(client: BaseClient, operation_name: str, api_params: Any) -> Any:
            caller = getattr(local, "function", None)
            if caller is None:
                caller = BENCH if threading.current_thread() is threading.main_thread() else EXECUTOR
            service = client.meta.service_model.service_name
            with self._lock:
                self._counts[(caller, service, operation_name)] += 1
            return original_call(client, operation_name, api_params)

        runtime.invoke = invoke  # type: ignore[method-assign]
        setattr(BaseClient, _MAKE_API_CALL, make_api_call)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        del self._runtime.invoke  # the instance attribute goes; the class's method shows again
        setattr(BaseClient, _MAKE_API_CALL, self._original_call)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[Key, int]:
        with self._lock:
            return dict(self._counts)


@dataclass
class Phase:
    """Calls attributed to one phase of a request's life."""

    name: str
    calls: dict[Key, int]  # (caller, service, action) -> n
    invocations: dict[str, int]  # function logical id -> invocations

    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Window:
    """One counted window: what the emulator served, and the phases it is split into by attribution."""

    name: str
    emulator: dict[tuple[str, str], int]  # (service, action) -> n
    phases: list[Phase]

    def emulator_total(self) -> int:
        return sum(self.emulator.values())

    def mismatches(self) -> list[str]:
        """Where the emulator's counts and the attributed ones disagree (there should be none)."""
        attributed: collections.Counter[tuple[str, str]] = collections.Counter()
        for phase in self.phases:
            for (_, service, action), count in phase.calls.items():
                attributed[(service, action)] += count
        return [
            f"{self.name}: {service}:{action} served {self.emulator.get((service, action), 0)}, "
            f"attributed {attributed[(service, action)]}"
            for service, action in sorted(set(attributed) | set(self.emulator))
            if self.emulator.get((service, action), 0) != attributed[(service, action)]
        ]


@dataclass
class ApiCalls:
    windows: list[Window]
    warnings: list[str] = field(default_factory=list)

    @property
    def phases(self) -> list[Phase]:
        return [phase for window in self.windows for phase in window.phases]


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


def _calls_of(snapshot: dict[Key, int], callers: set[str], *, exclude: bool = False) -> dict[Key, int]:
    return {key: count for key, count in snapshot.items() if (key[0] in callers) != exclude}


def measure_api_calls(estate: Estate) -> ApiCalls:
    """One request, counted in two quiet windows: submission + grant, then revocation at expiry.

    Nothing in this benchmark calls the emulator inside a window: it sleeps instead of polling, and
    reads the request's state only after the counts are captured.
    """
    stack = estate.stack
    client = estate.next_workload().client
    progress("API calls: one request, counted at the emulator (grant window, then revoke window at expiry)")
    with CallAttribution(stack) as attribution:
        before = stack.invocation_counts()
        stack.reset_api_call_counts()
        attribution.reset()
        submission = client.submit(
            database=DATABASE,
            db_user=DB_USER,
            duration_minutes=GRANT_MINUTES,
            reason=REASON,
            idempotency_key=estate.idempotency_key("calls"),
        )
        time.sleep(GRANT_SETTLE)
        emulator, attributed, after = stack.api_call_counts(), attribution.snapshot(), stack.invocation_counts()
        view = client.get_request(submission.request_id)  # after the capture: not counted
        if view.status != "ACTIVE" or view.grant is None or view.grant.expires_at is None:
            raise BenchError(f"request {submission.request_id} is {view.status} {GRANT_SETTLE:g}s after submission")
        invocations = _diff(after, before)
        api = {"ApiFunction"}
        grant_window = Window(
            "submission + grant",
            emulator,
            [
                Phase("submit (API function)", _calls_of(attributed, api), _calls_of_invocations(invocations, api)),
                Phase(
                    "decide+grant (workflow)",
                    _calls_of(attributed, api, exclude=True),
                    _calls_of_invocations(invocations, api, exclude=True),
                ),
            ],
        )

        expires_at = epoch_of(view.grant.expires_at)
        progress(f"API calls: waiting {expires_at - time.time():.0f}s for the grant to expire")
        sleep_until(expires_at - REVOKE_LEAD)
        before = stack.invocation_counts()
        stack.reset_api_call_counts()
        attribution.reset()
        sleep_until(expires_at + REVOKE_SETTLE)
        emulator, attributed, after = stack.api_call_counts(), attribution.snapshot(), stack.invocation_counts()
        view = client.get_request(submission.request_id)
        if view.status != "REVOKED":
            raise BenchError(f"request {submission.request_id} is {view.status} {REVOKE_SETTLE:g}s after expiry")
        revoke_window = Window("revocation", emulator, [Phase("revoke (workflow)", attributed, _diff(after, before))])
    windows = [grant_window, revoke_window]
    warnings = [problem for window in windows for problem in window.mismatches()]
    warnings.extend(
        f"{phase.name}: the benchmark itself made calls inside the window"
        for window in windows
        for phase in window.phases
        if any(key[0] == BENCH for key in phase.calls)
    )
    return ApiCalls(windows, warnings)


def _calls_of_invocations(invocations: dict[str, int], names: set[str], *, exclude: bool = False) -> dict[str, int]:
    return {name: count for name, count in invocations.items() if (name in names) != exclude}
