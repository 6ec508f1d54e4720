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
* ``DBInstance.__init__``: moto gives every DB instance ``DbiResourceId`` ``db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U``;
  each instance gets its own random one, as in AWS.
* ``S3Response._key_response_get``: moto 5.2.5 has no ``GetObjectRetention`` (it answers the
  object itself, which clients cannot parse). The patch answers ``<Retention>`` from the object's
  lock mode and retain-until date, ``NoSuchObjectLockConfiguration`` for an object without them, and
  ``InvalidRequest`` in a bucket without Object Lock, as S3 does (``accessctl audit verify-export``
  reads it). Also installable alone: ``install_s3_object_retention``.
* ``resolve_credentials``: reads moto's IAM users' access keys and STS assumed-role sessions (the
  lookup ``moto/iam/access_control.py`` does) so the local API can verify SigV4 signatures.
"""

from __future__ import annotations

import collections
import json
import logging
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import moto
from moto.awslambda.models import LambdaFunction
from moto.core.responses import BaseResponse
from moto.rds.models import DBInstance
from moto.s3.exceptions import LockNotEnabled, S3ClientError
from moto.s3.responses import S3Response

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


class _PatchState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.installed = False
        self.invoker: LambdaInvoker | None = None
        self.counter = ApiCallCounter()
        self.background: set[threading.Thread] = set()
        self.originals: dict[str, Any] = {}
        self.s3_retention_original: Callable[..., Any] | None = None


_state = _PatchState()


def api_call_counter() -> ApiCallCounter:
    return _state.counter


def install(invoker: LambdaInvoker) -> None:
    """Apply every patch (idempotent) and route Lambda invocations to ``invoker``."""
    with _state.lock:
        if moto.__version__ != TESTED_MOTO_VERSION:
            log.warning("accessctl_local was tested with moto %s, found %s", TESTED_MOTO_VERSION, moto.__version__)
        _state.invoker = invoker
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
    """Wait for background (Event) invocations, then restore moto's own methods."""
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
        return original(self)

    return call_action


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
