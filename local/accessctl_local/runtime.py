"""In-process Lambda runtime: runs the template's real handlers inside the emulator's process.

Each function's code directory is its own code root: its handler module is imported from file
under a unique module name (several functions have an ``app.py``), lazily on first invocation so
that a handler that does not import yet fails that invocation (``Runtime.ImportModuleError``, as in
AWS) rather than the whole deploy. A handler's exception becomes a Lambda function error whose
``errorType`` is the exception's class name, which is what ASL ``Retry``/``Catch`` match on.

Each invocation runs on a thread of its own, bounded by the function's configured ``Timeout``
(template.yaml, or as changed since through the Lambda API). A handler still running then is
reported as Lambda reports it, a failed invocation with ``errorType`` ``Sandbox.Timedout``, and is
stopped: an exception (:class:`SandboxTimedOut`, not an ``Exception``) is raised in its thread at its
next Python instruction. As in AWS, what it had already done stays done, an AWS call already sent
completes, and nothing after that point runs (short of ``finally`` blocks, which a frozen sandbox
would not run either; a handler blocked in C code stops once that call returns).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class FunctionSpec:
    """One deployed function, as the runtime needs it."""

    logical_id: str
    function_name: str
    function_arn: str
    code_dir: Path
    handler: str  # "app.lambda_handler" or "pkg/mod.fn" forms, as Lambda accepts
    timeout_seconds: int = 3
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class LambdaContext:
    """The attributes of the Python Lambda context object that Powertools and handlers read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass
class Invocation:
    """The result of one invocation, as Lambda reports it."""

    payload: Any
    errored: bool
    request_id: str

    @property
    def error_type(self) -> str | None:
        return self.payload.get("errorType") if self.errored and isinstance(self.payload, dict) else None


@dataclass
class _Fault:
    remaining: int
    exception: BaseException | type[BaseException] | None
    before: Callable[[Any, LambdaContext], None] | None


class FunctionNotFound(KeyError):
    pass


class SandboxTimedOut(BaseException):
    """Raised inside a handler's thread when its invocation ran past the function's Timeout."""


TIMED_OUT = "Sandbox.Timedout"


class LambdaRuntime:
    """Registry of functions plus the invoke path used by moto (``invoke_from_emulator``) and the local API."""

    def __init__(self, extra_sys_path: list[Path] | None = None) -> None:
        self._specs: dict[str, FunctionSpec] = {}  # keyed by function name
        self._aliases: dict[str, str] = {}  # logical id / ARN -> function name
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._import_locks: dict[str, threading.Lock] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        for path in extra_sys_path or []:
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))

    # -------------------------------------------------------------- registry

    def register(self, spec: FunctionSpec) -> None:
        with self._lock:
            self._specs[spec.function_name] = spec
            self._aliases[spec.logical_id] = spec.function_name
            self._aliases[spec.function_arn] = spec.function_name
            self._import_locks[spec.function_name] = threading.Lock()

    def spec(self, name: str) -> FunctionSpec:
        """Look a function up by logical id, function name or ARN."""
        key = self._aliases.get(name, name)
        if key not in self._specs:
            raise FunctionNotFound(name)
        return self._specs[key]

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        return dict(self._specs)

    def invocation_counts(self) -> dict[str, int]:
        """Invocations per logical id since start (or the last ``reset_counts``)."""
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # -------------------------------------------------------------- faults

    def inject_failure(
        self,
        function: str,
        exception: BaseException | type[BaseException] | None = None,
        times: int = 1,
        before: Callable[[Any, LambdaContext], None] | None = None,
    ) -> None:
        """Make ``function`` raise ``exception`` (and/or run ``before(event, context)``) on its next ``times`` calls.

        ``before`` runs in place of the handler's first moments: it may raise, record, or block.
        Faults queue up in order; ``clear_failures`` drops them.
        """
        if exception is None and before is None:
            raise ValueError("give an exception, a before callable, or both")
        name = self.spec(function).function_name
        with self._lock:
            self._faults.setdefault(name, []).append(_Fault(times, exception, before))

    def clear_failures(self, function: str | None = None) -> None:
        with self._lock:
            if function is None:
                self._faults.clear()
            else:
                self._faults.pop(self.spec(function).function_name, None)

    def _take_fault(self, name: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(name)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault

    # -------------------------------------------------------------- invoke

    def invoke_from_emulator(
        self, function_name: str, function_arn: str, event: Any, timeout_seconds: float | None = None
    ) -> tuple[str, bool]:
        """Entry point for the patched moto ``_invoke_lambda`` (``timeout_seconds``: the function's current Timeout)."""
        try:
            spec = self.spec(function_name)
        except FunctionNotFound:
            payload = {
                "errorMessage": f"function {function_name} has no local code (not deployed from the template)",
                "errorType": "Runtime.HandlerNotFound",
            }
            return json.dumps(payload), True
        result = self.invoke(spec.function_name, event, timeout_seconds=timeout_seconds)
        return json.dumps(result.payload), result.errored

    def invoke(self, function: str, event: Any, timeout_seconds: float | None = None) -> Invocation:
        """Run a function's handler in this process and report as Lambda would (never raises for handler errors).

        ``timeout_seconds`` defaults to the function's Timeout from the template.
        """
        spec = self.spec(function)
        timeout = timeout_seconds or spec.timeout_seconds
        request_id = str(uuid.uuid4())
        with self._lock:
            self._counts[spec.logical_id] = self._counts.get(spec.logical_id, 0) + 1
        context = LambdaContext(
            function_name=spec.function_name,
            function_version="$LATEST",
            invoked_function_arn=spec.function_arn,
            memory_limit_in_mb=spec.memory_mb,
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{spec.function_name}",
            log_stream_name=f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}",
            deadline_ms=int(time.time() * 1000) + int(timeout * 1000),
        )
        try:
            handler = self._handler(spec)
        except Exception as exc:
            return Invocation(_error_payload(exc, "Runtime.ImportModuleError", request_id), True, request_id)
        outcome: dict[str, Any] = {}
        worker = threading.Thread(
            target=self._run,
            args=(spec, handler, event, context, outcome),
            name=f"lambda-{spec.logical_id}-{request_id[:8]}",
            daemon=True,
        )
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            _stop(worker)
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            return Invocation({"errorMessage": message, "errorType": TIMED_OUT}, True, request_id)
        if "error" in outcome:
            return Invocation(_error_payload(outcome["error"], None, request_id), True, request_id)
        if "result" not in outcome:  # a BaseException (SystemExit...) ended the handler's thread
            payload = {"errorMessage": "the handler exited without a result", "errorType": "Runtime.ExitError"}
            return Invocation(payload, True, request_id)
        return Invocation(outcome["result"], False, request_id)

    def _run(
        self,
        spec: FunctionSpec,
        handler: Callable[[Any, Any], Any],
        event: Any,
        context: LambdaContext,
        outcome: dict[str, Any],
    ) -> None:
        """One invocation, on its own thread: puts ``result`` or ``error`` into ``outcome``."""
        try:
            fault = self._take_fault(spec.function_name)
            if fault is not None:
                if fault.before is not None:
                    fault.before(event, context)
                if fault.exception is not None:
                    raise fault.exception
            result = handler(event, context)
            json.dumps(result)  # Lambda must serialise the result; fail here as Runtime.MarshalError would
            outcome["result"] = result
        except SandboxTimedOut:
            log.debug("handler %s stopped after its timeout", spec.logical_id)
        except Exception as exc:
            log.debug("handler %s raised", spec.logical_id, exc_info=True)
            outcome["error"] = exc

    def _handler(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        handler = self._handlers.get(spec.function_name)
        if handler is not None:
            return handler
        with self._import_locks[spec.function_name]:
            handler = self._handlers.get(spec.function_name)
            if handler is None:
                handler = _load_handler(spec)
                self._handlers[spec.function_name] = handler
        return handler


def _stop(worker: threading.Thread) -> None:
    """Raise :class:`SandboxTimedOut` in ``worker`` at its next Python instruction."""
    assert worker.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(SandboxTimedOut))


def _load_handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    module_path, _, attribute = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    if not source.is_file():
        raise ImportError(f"Unable to import module '{module_path}': no {source}")
    module_name = f"_accessctl_local_fn_{spec.logical_id}_{module_path.replace('/', '_').replace('.', '_')}"
    module_spec = importlib.util.spec_from_file_location(module_name, source)
    assert module_spec is not None and module_spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    # The code root is on sys.path only while the module imports, so sibling modules resolve as in
    # Lambda without one function's helpers shadowing another's later.
    sys.path.insert(0, str(spec.code_dir))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(spec.code_dir))
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ImportError(f"Handler '{attribute}' missing on module '{module_path}'")
    return handler


def _error_payload(exc: BaseException, error_type: str | None, request_id: str) -> dict[str, Any]:
    """The body AWS Lambda's Python runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_exception(exc)[1:],
    }
