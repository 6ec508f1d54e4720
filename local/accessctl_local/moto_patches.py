"""Every use of moto's private API lives here, so a moto upgrade breaks one module, and its test.

Tested against moto 5.2.5 (``TESTED_MOTO_VERSION``). What is patched, and why:

* ``LambdaFunction._invoke_lambda`` (returns ``(payload_json_str, errored, logs)``): moto runs Lambda
  code only in Docker. The replacement hands the event to an in-process invoker (``runtime.py``).
  When ``errored`` is true moto answers ``X-Amz-Function-Error: Handled`` and Step Functions'
  ``lambda:invoke`` integration takes the error name from the payload's ``errorType``. The
  function's current ``timeout`` (moto keeps ``UpdateFunctionConfiguration`` changes) is passed on.
* ``LambdaFunction.invoke``: moto runs ``InvocationType=Event`` synchronously inside the caller's
  request; AWS answers 202 at once. Event invocations run on a background thread here.
* ``BaseResponse.call_action``: counts every AWS API call the emulator serves, per service/action.
* ``MotoRequestHandler.handle_one_request`` (opt-in, ``install_request_meter``): the CPU time of the
  server thread serving each request, from its request line to its last response byte (HTTP parsing,
  moto's dispatch, the operation, the response), per service/action, and optionally a ``cProfile``
  of each request: where the emulator's time goes, for the benchmarks. Not installed by ``install``.
* ``DBInstance.__init__``: moto gives every DB instance ``DbiResourceId`` ``db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U``;
  each instance gets its own random one, as in AWS.
* ``S3Response._key_response_get``: moto 5.2.5 has no ``GetObjectRetention`` (it answers the
  object itself, which clients cannot parse). The patch answers ``<Retention>`` from the object's
  lock mode and retain-until date, ``NoSuchObjectLockConfiguration`` for an object without them, and
  ``InvalidRequest`` in a bucket without Object Lock, as S3 does (``accessctl audit verify-export``
  reads it). Also installable alone: ``install_s3_object_retention``.
* ``resolve_credentials``: reads moto's IAM users' access keys and STS assumed-role sessions (the
  lookup ``moto/iam/access_control.py`` does) so the local API can verify SigV4 signatures.
* ``DynamoDBBackend.transact_write_items``: moto deep-copies the whole table of every action before
  applying any (its rollback state), so one 100-action transaction copies a table 100 times, and the
  cost grows with the table (AWS has no such cost). The replacement is moto's own loop with an undo
  log instead: before an action changes an item, that item (or its absence) is saved, once per table
  and key; if the transaction is cancelled, exactly those items are put back (items that did not
  exist are deleted) along with each touched table's stream records. Same all-or-nothing outcome,
  same ``TransactionCanceledException`` and ``CancellationReasons``. One difference, in AWS's
  favour: moto skips the backup of a table named by its ARN; the undo log covers it too. It keeps
  moto's semantics, so it stays installed once installed (``install`` applies it; tests that use
  ``mock_aws`` apply it with ``install_transaction_undo_log``); ``uninstall_transaction_undo_log``
  puts moto's own back, to measure or compare with it.
* ``Table.query`` on a table's own key: moto builds and sorts a list of every item of the table,
  then keeps the partition asked for, so each ``Query`` costs the whole table (the audit table's
  head reads grow with its history; AWS reads the one partition). While such a query runs, the
  table's ``all_items`` answers with the partition alone (moto then filters and sorts it as before:
  same items, same order, same pages). A query on an index reads the whole table, as in moto, but
  unsorted: moto sorts the whole table by primary key first (O(N log N) comparisons of
  ``DynamoType`` objects: seconds a query at 100,000 items), then sorts what it keeps by the index
  key and the table key, an order in which no two items tie, so the first sort cannot change the
  answer. Scan (whose pages follow ``all_items()``'s order) keeps the sort.
  ``install_partition_query``/``uninstall_partition_query`` as for the undo log.
* Per-request costs of moto's server that AWS does not have (both measured in
  ``bench/remediation_bench.py``'s emulator breakdown, about 1 ms of every request's 2.5):
  ``moto.backends.list_of_moto_modules`` lists moto's package directory and stats each of its 180
  entries, under the dispatcher's lock, for every request (``host in list_of_moto_modules()``); the
  directory does not change while the process runs, so it is listed once. ``BaseResponse.call_action``
  asks whether the action is a method by listing every member of the response class
  (``inspect.getmembers``, hundreds of ``getattr``) to test one name; the name is tested alone, with
  the same rule (a function found on the class or its bases). ``install_lean_dispatch``.
* ``Item.__init__``: moto's ``LimitedSizeDict`` re-adds the size of every attribute already set each
  time one is set (the 400 KB item limit), so building an item costs the square of its attributes, each
  nested map walked again every time. The replacement keeps the running total: the same limit, checked
  after each attribute as before, so the same item fails at the same attribute. ``install_linear_item_size``.
* ``ExecutionWorker.stop``: moto starts an execution's interpreter on a thread, which sets the
  worker's environment when it begins; a ``StopExecution`` that arrives first (right after
  ``StartExecution``, as an early revoke can) fails with ``AttributeError`` on the missing
  environment, where AWS stops the execution. The stop now waits (up to 10 s) for the environment.
  Installed with the undo log (``install_execution_stop``).

Every patch of a cost (the undo log, the partition query, the lean dispatch, the linear item size)
keeps moto's semantics, so it stays installed once installed; each has an ``uninstall_`` to measure
moto as released.
"""

from __future__ import annotations

import collections
import contextvars
import copy
import cProfile
import inspect
import json
import logging
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import moto
import moto.backends
import moto.core.responses
from moto.awslambda.models import LambdaFunction
from moto.core.responses import BaseResponse
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    ItemSizeTooLarge,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import StreamRecord, Table
from moto.dynamodb.models.utilities import bytesize
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.rds.models import DBInstance
from moto.s3.exceptions import LockNotEnabled, S3ClientError
from moto.s3.responses import S3Response
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

log = logging.getLogger(__name__)

TESTED_MOTO_VERSION = "5.2.5"
MOTO_FIXED_DBI_RESOURCE_ID = "db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U"
_DBI_ALPHABET = string.ascii_uppercase + string.digits


class LambdaInvoker(Protocol):
    """What the patched ``_invoke_lambda`` delegates to (implemented by ``runtime.LambdaRuntime``)."""

    def invoke_from_emulator(
        self, function_name: str, function_arn: str, event: Any, timeout_seconds: float | None = None
    ) -> tuple[str, bool]:
        """Run the function within ``timeout_seconds``; return ``(payload_json, errored)``."""
        ...


@dataclass(frozen=True)
class ResolvedCredentials:
    """A caller identity found in the emulator from an access key id."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    account_id: str
    arn: str  # IAM user ARN, or arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    user_id: str  # AIDA... for users; AROA...:SESSION for assumed roles (API Gateway's `user`/`caller`)
    expired: bool = False


class ApiCallCounter:
    """Thread-safe counts of API calls keyed by ``(service, action)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(self, service: str, action: str) -> None:
        with self._lock:
            self._counts[(service, action)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class RequestCpuMeter:
    """CPU seconds the emulator's server threads spent per ``(service, action)``, and optionally the
    ``cProfile`` of each of those requests. A request with no AWS action (a connection's closing read,
    ``/moto-api``) counts as ``("-", "other")``. A request dispatched before the last ``reset`` is not
    counted (its client had its answer before the reset; its thread just had not finished yet)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: collections.Counter[tuple[str, str]] = collections.Counter()
        self._requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._profiles: dict[tuple[str, str], list[cProfile.Profile]] = {}
        self.profiling = False
        self.generation = 0  # incremented by reset

    def record(self, key: tuple[str, str], seconds: float, profile: cProfile.Profile | None, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            self._seconds[key] += seconds
            self._requests[key] += 1
            if profile is not None:
                self._profiles.setdefault(key, []).append(profile)

    def reset(self) -> None:
        with self._lock:
            self.generation += 1
            self._seconds.clear()
            self._requests.clear()
            self._profiles.clear()

    def snapshot(self) -> dict[tuple[str, str], tuple[int, float]]:
        """``(service, action) -> (requests, CPU seconds)``."""
        with self._lock:
            return {key: (self._requests[key], seconds) for key, seconds in self._seconds.items()}

    def profiles(self) -> dict[tuple[str, str], list[cProfile.Profile]]:
        with self._lock:
            return {key: list(each) for key, each in self._profiles.items()}


class _PatchState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.installed = False
        self.invoker: LambdaInvoker | None = None
        self.counter = ApiCallCounter()
        self.background: set[threading.Thread] = set()
        self.originals: dict[str, Any] = {}
        self.moto_transact_write_items: Callable[..., None] | None = None
        self.moto_query: tuple[Callable[..., Any], Callable[..., Any]] | None = None  # query, all_items
        self.moto_execution_stop: Callable[..., None] | None = None
        self.moto_handle_one_request: Callable[..., None] | None = None
        self.moto_dispatch: tuple[Callable[..., Any], Callable[..., Any]] | None = None  # modules, method names
        self.moto_item_init: Callable[..., None] | None = None
        self.meter = RequestCpuMeter()
        self.s3_retention_original: Callable[..., Any] | None = None


_state = _PatchState()


def api_call_counter() -> ApiCallCounter:
    return _state.counter


# The (service, action) the request this server thread is serving dispatched to (set by call_action).
_SERVING = threading.local()


def request_cpu_meter() -> RequestCpuMeter:
    return _state.meter


def install_request_meter(*, profile: bool = False) -> RequestCpuMeter:
    """Time every request's server thread (idempotent); ``profile``: also keep a cProfile of each."""
    with _state.lock:
        _state.meter.profiling = profile
        if _state.moto_handle_one_request is None:
            _state.moto_handle_one_request = MotoRequestHandler.handle_one_request
            MotoRequestHandler.handle_one_request = _make_handle_one_request(  # type: ignore[method-assign]
                _state.moto_handle_one_request
            )
    return _state.meter


def uninstall_request_meter() -> None:
    with _state.lock:
        if _state.moto_handle_one_request is not None:
            MotoRequestHandler.handle_one_request = _state.moto_handle_one_request  # type: ignore[method-assign]
            _state.moto_handle_one_request = None


def _make_handle_one_request(original: Callable[..., None]) -> Callable[..., None]:
    def handle_one_request(self: MotoRequestHandler) -> None:
        meter = _state.meter
        _SERVING.key = None
        _SERVING.generation = meter.generation  # again at dispatch: a keep-alive thread waits here first
        profile = cProfile.Profile(time.thread_time) if meter.profiling else None  # CPU, not waiting
        started = time.thread_time()
        if profile is not None:
            profile.enable()
        try:
            original(self)
        finally:
            if profile is not None:
                profile.disable()
            meter.record(_SERVING.key or ("-", "other"), time.thread_time() - started, profile, _SERVING.generation)

    return handle_one_request


def install(invoker: LambdaInvoker) -> None:
    """Apply every patch (idempotent) and route Lambda invocations to ``invoker``."""
    with _state.lock:
        if moto.__version__ != TESTED_MOTO_VERSION:
            log.warning("accessctl_local was tested with moto %s, found %s", TESTED_MOTO_VERSION, moto.__version__)
        _state.invoker = invoker
        _install_transaction_undo_log()
        _install_partition_query()
        _install_lean_dispatch()
        _install_linear_item_size()
        _install_execution_stop()
        if _state.installed:
            return
        _state.originals = {
            "_invoke_lambda": LambdaFunction._invoke_lambda,
            "invoke": LambdaFunction.invoke,
            "call_action": BaseResponse.call_action,
            "dbi_init": DBInstance.__init__,
        }
        LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]
        LambdaFunction.invoke = _make_invoke(_state.originals["invoke"])  # type: ignore[method-assign]
        BaseResponse.call_action = _make_call_action(_state.originals["call_action"])  # type: ignore[method-assign]
        DBInstance.__init__ = _make_dbi_init(_state.originals["dbi_init"])  # type: ignore[method-assign]
        _state.installed = True
    install_s3_object_retention()


def uninstall(join_timeout: float = 30.0) -> None:
    """Wait for background (Event) invocations, then restore moto's own methods.

    The transaction undo log stays: it changes moto's cost, not its behaviour.
    """
    drain_background(join_timeout)
    with _state.lock:
        if not _state.installed:
            return
        LambdaFunction._invoke_lambda = _state.originals["_invoke_lambda"]  # type: ignore[method-assign]
        LambdaFunction.invoke = _state.originals["invoke"]  # type: ignore[method-assign]
        BaseResponse.call_action = _state.originals["call_action"]  # type: ignore[method-assign]
        DBInstance.__init__ = _state.originals["dbi_init"]  # type: ignore[method-assign]
        _state.installed = False
        _state.invoker = None
    uninstall_s3_object_retention()


def install_s3_object_retention() -> None:
    """Answer ``GetObjectRetention`` (idempotent; also part of :func:`install`)."""
    with _state.lock:
        if _state.s3_retention_original is None:
            _state.s3_retention_original = S3Response._key_response_get
            S3Response._key_response_get = _make_key_response_get(_state.s3_retention_original)  # type: ignore[method-assign]


def uninstall_s3_object_retention() -> None:
    with _state.lock:
        if _state.s3_retention_original is not None:
            S3Response._key_response_get = _state.s3_retention_original  # type: ignore[method-assign]
            _state.s3_retention_original = None


def drain_background(timeout: float = 30.0) -> None:
    """Join the threads running ``InvocationType=Event`` invocations."""
    with _state.lock:
        threads = list(_state.background)
    for thread in threads:
        thread.join(timeout)


def install_transaction_undo_log() -> None:
    """Make ``TransactWriteItems`` save and restore only the items it touches (idempotent)."""
    with _state.lock:
        _install_transaction_undo_log()


def uninstall_transaction_undo_log() -> None:
    """Put moto's own ``transact_write_items`` back (it copies every table it touches, per action)."""
    with _state.lock:
        if _state.moto_transact_write_items is not None:
            DynamoDBBackend.transact_write_items = _state.moto_transact_write_items  # type: ignore[method-assign]
            _state.moto_transact_write_items = None


def install_partition_query() -> None:
    """Make a ``Query`` on a table's own key read that partition only (idempotent)."""
    with _state.lock:
        _install_partition_query()


def uninstall_partition_query() -> None:
    """Put moto's own ``Table.query`` back (it lists and sorts the whole table for every query)."""
    with _state.lock:
        if _state.moto_query is not None:
            Table.query, Table.all_items = _state.moto_query  # type: ignore[method-assign]
            _state.moto_query = None


def install_lean_dispatch() -> None:
    """List moto's modules once; test an action's name alone, not by listing the class (idempotent)."""
    with _state.lock:
        _install_lean_dispatch()


def uninstall_lean_dispatch() -> None:
    with _state.lock:
        if _state.moto_dispatch is not None:
            moto.backends.list_of_moto_modules, moto.core.responses.method_names_from_class = _state.moto_dispatch
            _state.moto_dispatch = None


def install_linear_item_size() -> None:
    """Build items keeping a running total of their size (idempotent)."""
    with _state.lock:
        _install_linear_item_size()


def uninstall_linear_item_size() -> None:
    with _state.lock:
        if _state.moto_item_init is not None:
            Item.__init__ = _state.moto_item_init  # type: ignore[method-assign]
            _state.moto_item_init = None


def _install_lean_dispatch() -> None:
    if _state.moto_dispatch is not None:
        return
    if moto.__version__ != TESTED_MOTO_VERSION:
        log.warning("moto %s dispatches as released (the patch follows moto %s)", moto.__version__, TESTED_MOTO_VERSION)
        return
    _state.moto_dispatch = (moto.backends.list_of_moto_modules, moto.core.responses.method_names_from_class)
    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # the package directory is fixed for the process's life
    moto.core.responses.method_names_from_class = FunctionNames


class FunctionNames:
    """``name in FunctionNames(cls)`` is ``name in method_names_from_class(cls)`` (the names of
    ``inspect.getmembers(cls, inspect.isfunction)``), for one name: the name is an attribute of the class
    or a base, and the attribute, got from the class (else, as ``getmembers`` does, from the first base
    defining it), is a function."""

    def __init__(self, cls: type) -> None:
        self._cls = cls

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        defining = next((base for base in self._cls.__mro__ if name in base.__dict__), None)
        if defining is None:
            return False
        try:
            value = getattr(self._cls, name)
        except AttributeError:
            value = defining.__dict__[name]
        return inspect.isfunction(value)

    def __iter__(self) -> Any:
        return iter([name for name, _ in inspect.getmembers(self._cls, inspect.isfunction)])


_ITEM_SIZE_LIMIT = 405_000  # moto's LimitedSizeDict: AWS's 400 KB, as moto measured it


def _install_linear_item_size() -> None:
    if _state.moto_item_init is not None:
        return
    if moto.__version__ != TESTED_MOTO_VERSION:
        log.warning(
            "Item sizes checked as moto %s does (the patch follows moto %s)", moto.__version__, TESTED_MOTO_VERSION
        )
        return
    _state.moto_item_init = Item.__init__
    Item.__init__ = _item_init  # type: ignore[method-assign]


def _item_init(self: Item, hash_key: DynamoType, range_key: DynamoType | None, attrs: dict[str, Any]) -> None:
    """moto's ``Item.__init__`` with ``LimitedSizeDict``'s check made incremental: before each attribute
    is set, the size of those already set plus its own must not pass the limit."""
    self.hash_key = hash_key
    self.range_key = range_key
    self.attrs = LimitedSizeDict()
    size = 0
    for key, value in attrs.items():
        typed = DynamoType(value)
        size += bytesize(key) + typed.size()
        if size > _ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self.attrs, key, typed)


def install_execution_stop() -> None:
    """Make ``StopExecution`` wait for an execution that has not begun running yet (idempotent)."""
    with _state.lock:
        _install_execution_stop()


def _install_execution_stop() -> None:
    if _state.moto_execution_stop is not None:
        return
    _state.moto_execution_stop = ExecutionWorker.stop
    ExecutionWorker.stop = _make_execution_stop(ExecutionWorker.stop)  # type: ignore[method-assign]


_EXECUTION_START_WAIT = 10.0  # seconds a stop waits for the execution's thread to set up


def _make_execution_stop(original: Callable[..., None]) -> Callable[..., None]:
    def stop(self: ExecutionWorker, *args: Any, **kwargs: Any) -> None:
        deadline = time.monotonic() + _EXECUTION_START_WAIT
        while getattr(self, "env", None) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        original(self, *args, **kwargs)

    return stop


def _install_partition_query() -> None:
    if _state.moto_query is not None:
        return
    if moto.__version__ != TESTED_MOTO_VERSION:
        log.warning("Query left as moto %s has it (the patch follows moto %s)", moto.__version__, TESTED_MOTO_VERSION)
        return
    _state.moto_query = (Table.query, Table.all_items)
    Table.query = _make_partition_query(Table.query)  # type: ignore[method-assign]
    Table.all_items = _make_all_items(Table.all_items)  # type: ignore[method-assign]


# The table a query of this thread is reading, with the partition key of a primary-key query (None: an index query).
_QUERIED_PARTITION: contextvars.ContextVar[tuple[Table, DynamoType | None] | None] = contextvars.ContextVar(
    "accessctl_queried_partition", default=None
)


def _make_partition_query(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
        index_name = signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name")
        if hash_key is None and not index_name:
            return original(self, hash_key, *args, **kwargs)
        # An index query reads every item (None: the whole table, unsorted); a key query its partition.
        partition = None if index_name else hash_key
        token = _QUERIED_PARTITION.set((self, partition))
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            _QUERIED_PARTITION.reset(token)

    return query


def _make_all_items(original: Callable[..., list[Item]]) -> Callable[..., list[Item]]:
    def all_items(self: Table) -> list[Item]:
        queried = _QUERIED_PARTITION.get()
        if queried is None or queried[0] is not self:
            return original(self)
        if queried[1] is None:
            # The query sorts what it keeps by a key no two items share: the table's own order is not needed.
            if self.range_key_attr:
                return [item for items in self.items.values() for item in items.values()]  # type: ignore[union-attr]
            return list(self.items.values())  # type: ignore[arg-type]
        partition = self.items.get(queried[1])  # .get: items is a defaultdict, a miss must not add a key
        if partition is None:
            return []
        return sorted(partition.values(), key=lambda item: item.range_key) if self.range_key_attr else [partition]  # type: ignore[union-attr, return-value]

    return all_items


def _install_transaction_undo_log() -> None:
    if _state.moto_transact_write_items is not None:
        return
    if moto.__version__ != TESTED_MOTO_VERSION:
        # The replacement is a copy of this version's loop: another version may cancel differently.
        log.warning(
            "TransactWriteItems left as moto %s has it (the undo log follows moto %s)",
            moto.__version__,
            TESTED_MOTO_VERSION,
        )
        return
    _state.moto_transact_write_items = DynamoDBBackend.transact_write_items
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


# ---------------------------------------------------------------- Lambda


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    invoker = _state.invoker
    if invoker is None:  # pragma: no cover - only if a patched class outlives uninstall
        return json.dumps({"errorMessage": "no in-process runtime", "errorType": "Runtime.Unavailable"}), True, ""
    if isinstance(event, str | bytes):
        # moto passes the raw string "{}" when the request had no body.
        event = json.loads(event or "{}")
    timeout = getattr(self, "timeout", None)  # the function's Timeout as configured now
    payload, errored = invoker.invoke_from_emulator(self.function_name, self.function_arn, event, timeout)
    return payload, errored, ""


def _make_invoke(original: Callable[..., Any]) -> Callable[..., Any]:
    def invoke(self: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
        if request_headers.get("x-amz-invocation-type", "RequestResponse") != "Event":
            return original(self, body, request_headers, response_headers)
        event = json.loads(body) if body else {}
        thread = threading.Thread(
            target=_run_background, args=(self, event), name=f"lambda-event-{self.function_name}", daemon=True
        )
        with _state.lock:
            _state.background.add(thread)
        thread.start()
        return ""

    return invoke


def _run_background(fn: LambdaFunction, event: Any) -> None:
    try:
        _invoke_lambda(fn, event)
    except Exception:  # an Event invocation has nobody to report to but the log, as in AWS
        log.exception("background invocation of %s failed", fn.function_name)
    finally:
        with _state.lock:
            _state.background.discard(threading.current_thread())


# ---------------------------------------------------------------- API call counting


def _make_call_action(original: Callable[..., Any]) -> Callable[..., Any]:
    def call_action(self: BaseResponse) -> Any:
        try:
            action = self._get_action() or "Unknown"
        except Exception:  # counting must never break the call itself
            action = "Unknown"
        _state.counter.record(str(self.boto3_service_name), action)
        _SERVING.key = (str(self.boto3_service_name), action)
        _SERVING.generation = _state.meter.generation
        return original(self)

    return call_action


# ---------------------------------------------------------------- DynamoDB transactions


class _UndoLog:
    """The items a transaction touched, as they were before it touched them."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, DynamoType, DynamoType | None], tuple[Table, Item | None]] = {}
        self._streams: dict[int, tuple[Table, list[StreamRecord]]] = {}

    def save(self, table: Table, hash_value: DynamoType, range_value: DynamoType | None) -> None:
        """Remember the item at this key (a copy: updates change items in place), the first time only."""
        slot = (id(table), hash_value, range_value)
        if slot in self._items:
            return
        self._items[slot] = (table, copy.deepcopy(table.get_item(hash_value, range_value)))
        if table.stream_shard is not None and id(table) not in self._streams:
            self._streams[id(table)] = (table, list(table.stream_shard.items))

    def undo(self) -> None:
        for (_, hash_value, range_value), (table, before) in self._items.items():
            if range_value is None:
                if before is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = before
            else:
                bucket = table.items[hash_value]
                if before is None:
                    bucket.pop(range_value, None)
                    if not bucket:
                        del table.items[hash_value]
                else:
                    bucket[range_value] = before
        for table, records in self._streams.values():
            if table.stream_shard is not None:
                table.stream_shard.items = records


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:  # noqa: C901 (moto's loop, kept comparable line by line)
    """moto 5.2.5's ``transact_write_items``, with an undo log in place of whole-table copies, and
    each action's condition checked once (moto checks a put's or a delete's twice, on the same item).

    Everything else is moto's: the checks, the order (every action is attempted, even after one
    failed, so each gets its cancellation reason), the errors raised at once (several operations
    on one item, validation) and the ``TransactionCanceledException`` built from the reasons.
    """
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    undo_log = _UndoLog()
    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str, str, dict[str, Any]] | tuple[None, None, None]] = []  # [(Code, Message, Item), ..]
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get("ReturnValuesOnConditionCheckFailure")

            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]

            check_unicity(table_name, key)

            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(
                    condition_expression, expression_attribute_names, expression_attribute_values
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)

            if op_type != "ConditionCheck":
                table = self.get_table(table_name)
                undo_log.save(table, *self.get_keys_value(table, key))
            # The condition was checked just above, against the item as it is: moto's put and delete
            # would parse and check it again on the same item (an update keeps its own check).
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            undo_log.undo()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))  # type: ignore[arg-type]
        except Exception as e:  # as moto: any other error is that action's cancellation reason
            errors.append((type(e).__name__, str(e), original_item))  # type: ignore[arg-type]

    if any(code is not None for code, _, _ in errors):
        undo_log.undo()
        raise TransactionCanceledException(errors)


# ---------------------------------------------------------------- RDS


def new_dbi_resource_id() -> str:
    return "db-" + "".join(secrets.choice(_DBI_ALPHABET) for _ in range(26))


def _make_dbi_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: DBInstance, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if getattr(self, "dbi_resource_id", None) == MOTO_FIXED_DBI_RESOURCE_ID:
            self.dbi_resource_id = new_dbi_resource_id()

    return __init__


# ---------------------------------------------------------------- S3


class _NoSuchObjectLockConfiguration(S3ClientError):
    code = "NoSuchObjectLockConfiguration"

    def __init__(self) -> None:
        super().__init__("The specified object does not have a ObjectLock configuration")


def _make_key_response_get(original: Callable[..., Any]) -> Callable[..., Any]:
    def key_response_get(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
        if "retention" not in query:
            return original(self, query, key_name)
        self._set_action("KEY", "GET", query)
        self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
        if not self.backend.get_bucket(self.bucket_name).object_lock_enabled:
            raise LockNotEnabled
        key, _ = self._get_key()
        if not key.lock_mode or not key.lock_until:
            raise _NoSuchObjectLockConfiguration
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Mode>{key.lock_mode}</Mode><RetainUntilDate>{key.lock_until}</RetainUntilDate></Retention>"
        )
        return 200, {"Content-Type": "application/xml"}, body

    return key_response_get


# ---------------------------------------------------------------- credentials


def resolve_credentials(
    access_key_id: str, session_token: str | None, account_ids: list[str]
) -> ResolvedCredentials | None:
    """Find the secret behind ``access_key_id`` among moto's IAM users and STS sessions.

    Looks in ``account_ids`` first, then in every account the emulator has state for. A session
    token must match the assumed-role session; a long-term key must come without one.
    """
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    partition = "aws"
    seen = list(dict.fromkeys([*account_ids, *iam_backends.keys(), *sts_backends.keys()]))
    for account_id in seen:
        if session_token is None:
            iam = iam_backends[account_id][partition]
            for user in list(iam.users.values()):
                for key in list(user.access_keys):
                    if key.access_key_id == access_key_id:
                        return ResolvedCredentials(
                            access_key_id=access_key_id,
                            secret_access_key=key.secret_access_key,
                            session_token=None,
                            account_id=account_id,
                            arn=user.arn,
                            user_id=user.id,
                            expired=getattr(key, "status", "Active") != "Active",
                        )
        else:
            for role in list(sts_backends[account_id][partition].assumed_roles):
                if role.access_key_id == access_key_id and secrets.compare_digest(role.session_token, session_token):
                    expiration = role.expiration
                    if expiration.tzinfo is None:  # moto stores naive UTC
                        expiration = expiration.replace(tzinfo=UTC)
                    return ResolvedCredentials(
                        access_key_id=access_key_id,
                        secret_access_key=role.secret_access_key,
                        session_token=role.session_token,
                        account_id=role.account_id,
                        arn=role.arn,
                        user_id=role.user_id,
                        expired=expiration <= datetime.now(UTC),
                    )
    return None
