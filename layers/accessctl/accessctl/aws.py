"""AWS clients, created once per process and shared (boto3 clients are thread-safe).

Retries use botocore's adaptive mode so throttling is absorbed here first; what is still
throttled after that surfaces as :class:`TransientError` for the state machine to retry.

The controller's own mutating IAM/EC2/RDS calls can be collected for the audit record they lead
to (:func:`aws_requests`): a botocore ``after-call`` hook on the client notes service, operation
and request id (CloudTrail's ``requestID``) into every collector open in the current context.
"""

from __future__ import annotations

import gc
import gzip
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from threading import Lock
from typing import Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

from accessctl.errors import TransientError
from accessctl.models import AwsRequest, precise_now

_CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=5, read_timeout=20)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "ServiceFailure",
    }
)

T = TypeVar("T")
_SESSION_LOCK = Lock()


@cache
def client(service_name: str) -> Any:
    """A shared boto3 client (endpoint and region come from the standard AWS environment)."""
    made = _session().client(service_name, config=_CLIENT_CONFIG)  # type: ignore[call-overload]
    _freeze_long_lived()
    return record_requests(made)


@cache
def resource(service_name: str) -> Any:
    made = _session().resource(service_name, config=_CLIENT_CONFIG)  # type: ignore[call-overload]
    _freeze_long_lived()
    return made


def _freeze_long_lived() -> None:
    """A shared client, its service model and the modules imported so far live as long as the process:
    move every object alive now out of the collector's generations (CPython's ``gc.freeze``), so later
    full collections (a scan allocates enough to run several) do not traverse them again. Runs once
    per shared client or resource; a garbage cycle alive at that moment is never collected."""
    gc.freeze()


# A "documentation" member with a string value, with the separator before it and any comma after it.
# Outside a JSON string a quote is never escaped, so a match starting at "{" or "," is a member: the
# pattern cannot start inside a string. What it leaves is the same JSON without that member.
_DOCUMENTATION = re.compile(rb'[{,]\s*"documentation"\s*:\s*"(?:[^"\\]++|\\.)*+"(\s*,)?')


def _without_member(match: re.Match[bytes]) -> bytes:
    if match[0][:1] == b"{":
        return b"{"
    return b"," if match[1] else b""


def lean_json(data: bytes) -> Any:
    """JSON text as plain dicts, without the string-valued ``documentation`` members: the parsed data
    botocore's loader would give, less what only its docstrings read."""
    return json.loads(_DOCUMENTATION.sub(_without_member, data))


class LeanJSONFileLoader(botocore.loaders.JSONFileLoader):
    """botocore's data files (service models, endpoint table, rule sets, paginators) read leaner.

    botocore parses every object into an ``OrderedDict`` (plain dicts keep order too) and keeps the
    models' documentation, which only docstrings read: EC2's model is 4.2 MB of JSON, 70% of it
    documentation, and 13.9 MB parsed that way; this reads it as 6.6 MB of dicts, and the text is
    stripped before it is parsed, so the documentation is never built as strings.
    """

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        path = Path(full_path)
        if not path.is_file():
            return None
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        return lean_json(data)


@cache
def _data_loader() -> Any:
    loader = botocore.session.get_session().get_component("data_loader")
    loader.file_loader = LeanJSONFileLoader()
    return loader


def _session() -> boto3.session.Session:
    """A new session (credentials, region and endpoint read from the environment now, as before) on
    the process's one data loader: botocore's endpoint table (7 MB of objects, about 70 ms to parse)
    and each service model are read once per process, not once per client. (The loader's own
    setting, ``AWS_DATA_PATH``, is therefore read once too.)"""
    with _SESSION_LOCK:  # clients are made lazily, some on the fix pool's threads
        loader = _data_loader()
        core = botocore.session.get_session()
        core.register_component("data_loader", loader)
        session = boto3.session.Session(botocore_session=core)
        loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))  # boto3 adds its data path each time
        return session


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def transient_errors_surface() -> Iterator[None]:
    """Turn throttling and connection faults into :class:`TransientError` (retryable by design)."""
    try:
        yield
    except ClientError as error:
        if error_code(error) in THROTTLING_CODES:
            raise TransientError(f"AWS is throttling or unavailable: {error_code(error)}") from error
        raise
    except (ConnectionError, EndpointConnectionError) as error:
        raise TransientError(f"AWS endpoint not reachable: {error}") from error


def call(operation: Callable[..., T], /, **kwargs: Any) -> T:
    """Call one AWS operation, surfacing throttling as :class:`TransientError`."""
    with transient_errors_surface():
        return operation(**kwargs)


# ------------------------------------------------------------------ request ids for the audit trail

# Services whose mutating calls an audit record carries: what the controller changes in the estate.
RECORDED_SERVICES = frozenset({"iam", "ec2", "rds"})
# An operation that changes something, by its verb (IAM, EC2 and RDS all name operations this way).
MUTATING_VERBS = (
    "Add",
    "Apply",
    "Associate",
    "Attach",
    "Authorize",
    "Copy",
    "Create",
    "Delete",
    "Deregister",
    "Detach",
    "Disable",
    "Disassociate",
    "Enable",
    "Modify",
    "Put",
    "Reboot",
    "Register",
    "Remove",
    "Replace",
    "Reset",
    "Restore",
    "Revoke",
    "Set",
    "Start",
    "Stop",
    "Tag",
    "Untag",
    "Update",
)
# A global service's client (IAM) has a pseudo-region; CloudTrail records its calls in this one.
_CLOUDTRAIL_REGION = {"aws-global": "us-east-1", "aws-cn-global": "cn-north-1", "aws-us-gov-global": "us-gov-west-1"}
_HOOK_ID = "accessctl-record-aws-requests"
_COLLECTORS: ContextVar[tuple[list[AwsRequest], ...]] = ContextVar("accessctl_aws_requests", default=())


def is_mutating(service: str, operation: str) -> bool:
    return service in RECORDED_SERVICES and operation.startswith(MUTATING_VERBS)


def record_requests(aws_client: Any) -> Any:
    """Install the request-id hook on a client (once; idempotent) and return the client."""
    aws_client.meta.events.register("after-call", _after_call, unique_id=_HOOK_ID)
    return aws_client


@contextmanager
def aws_requests(*clients: Any) -> Iterator[list[AwsRequest]]:
    """Collect the mutating IAM/EC2/RDS calls made in this block, for the audit record of its outcome.

    ``clients``: clients not made by :func:`client` (tests' clients, say) get the hook here. The
    collector lives in a context variable: a block sees the calls of its own thread (work handed to a
    thread pool opens its own block there), and nested blocks each see the calls made inside them.
    """
    for aws_client in clients:
        record_requests(aws_client)
    collected: list[AwsRequest] = []
    token = _COLLECTORS.set((*_COLLECTORS.get(), collected))
    try:
        yield collected
    finally:
        _COLLECTORS.reset(token)


def _after_call(http_response: Any, parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:
    collectors = _COLLECTORS.get()
    if not collectors:
        return
    service, operation = str(model.service_model.service_name), str(model.name)
    if not is_mutating(service, operation):
        return
    metadata = parsed.get("ResponseMetadata") or {}
    request_id = metadata.get("RequestId") or (metadata.get("HTTPHeaders") or {}).get("x-amzn-requestid")
    if not request_id:
        return
    client_region = (kwargs.get("context") or {}).get("client_region")
    region = _CLOUDTRAIL_REGION.get(str(client_region), client_region)
    error = (parsed.get("Error") or {}).get("Code") or None
    request = AwsRequest(
        service=service, operation=operation, request_id=str(request_id), region=region, at=precise_now(), error=error
    )
    for collected in collectors:
        collected.append(request)
