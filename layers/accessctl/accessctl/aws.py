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
import hashlib
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
import botocore
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

from accessctl.errors import TransientError
from accessctl.models import AwsRequest, precise_now
from accessctl.observability import logger

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
def client(service_name: str, operations: frozenset[str] | None = None) -> Any:
    """A shared boto3 client (endpoint and region come from the standard AWS environment).

    ``operations`` (API names, e.g. ``DescribeSecurityGroups``): the client has just these methods.
    Its service model holds only them and the shapes they reach, instead of the whole service (EC2's
    model is 6.6 MB parsed, the remediator's two operations a few KB). An operation not named is an
    ``AttributeError``, as for an operation the service does not have. The layer ships such models for
    the remediator's operation sets (:func:`shipped_model`); any other set is made from the whole model.
    """
    loader = None if operations is None else _OperationsLoader(_data_loader(), service_name, operations)
    made = _session(loader).client(service_name, config=_CLIENT_CONFIG)  # type: ignore[call-overload]
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


def without_documentation(data: bytes) -> bytes:
    """JSON text without its string-valued ``documentation`` members."""
    return _DOCUMENTATION.sub(_without_member, data)


def lean_json(data: bytes) -> Any:
    """JSON text as plain dicts, without the string-valued ``documentation`` members: the parsed data
    botocore's loader would give, less what only its docstrings read. One place reads it as required
    (``ServiceModel.client_context_parameters``, e.g. S3's): there it is kept, empty."""
    return _required_documentation(json.loads(without_documentation(data)))


def _required_documentation(parsed: Any) -> Any:
    if isinstance(parsed, dict) and isinstance(parsed.get("clientContextParams"), dict):
        for parameter in parsed["clientContextParams"].values():
            if isinstance(parameter, dict):
                parameter.setdefault("documentation", "")
    return parsed


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
        lean = without_documentation(data)
        del data  # EC2's: 4.2 MB, not to be held while the 1.2 MB left is parsed
        return _required_documentation(json.loads(lean))


@cache
def _data_loader() -> Any:
    loader = botocore.session.get_session().get_component("data_loader")
    loader.file_loader = LeanJSONFileLoader()
    return loader


def _session(loader: Any = None) -> boto3.session.Session:
    """A new session (credentials, region and endpoint read from the environment now, as before) on
    the process's one data loader: botocore's endpoint table (4 MB of objects as read here)
    and each service model are read once per process, not once per client. (The loader's own
    setting, ``AWS_DATA_PATH``, is therefore read once too.) ``loader``: one that stands for it."""
    with _SESSION_LOCK:  # clients are made lazily, some on the fix pool's threads
        shared = _data_loader()
        core = botocore.session.get_session()
        core.register_component("data_loader", shared)
        session = boto3.session.Session(botocore_session=core)
        shared.search_paths[:] = list(dict.fromkeys(shared.search_paths))  # boto3 adds its data path each time
        if loader is not None:
            core.register_component("data_loader", loader)
        return session


class _OperationsLoader:
    """The shared data loader, except that one service's model holds only the given operations."""

    def __init__(self, shared: Any, service_name: str, operations: frozenset[str]) -> None:
        self._shared = shared
        self._service_name = service_name
        self._operations = operations

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        if service_name == self._service_name and type_name == "service-2":
            return _operations_model(self._shared, service_name, self._operations, api_version)
        return self._shared.load_service_model(service_name, type_name, api_version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shared, name)


_MODEL_LOCK = Lock()
_OPERATIONS_MODELS: dict[tuple[str, frozenset[str], str | None], dict[str, Any]] = {}

# The reduced models the layer ships (``make service-models``, scripts/service_models.py): one file per
# service and operation set, made from the pinned botocore's model exactly as ``operations_only`` makes
# it at run time, so a client of those operations never reads the service's whole model.
SERVICE_MODELS_DIR = Path(__file__).with_name("service_models")


def shipped_model_path(service_name: str, operations: frozenset[str]) -> Path:
    """Where the layer's reduced model of ``service_name`` with just ``operations`` is (if it ships one)."""
    digest = hashlib.sha256("\n".join(sorted(operations)).encode()).hexdigest()[:12]
    return SERVICE_MODELS_DIR / f"{service_name}.{digest}.json"


def _operations_model(
    loader: Any, service_name: str, operations: frozenset[str], api_version: str | None
) -> dict[str, Any]:
    """The service model with only ``operations`` (and any endpoint-discovery operation) and the
    shapes they reach, made once per process: the layer's shipped one when it was made from the model
    botocore would load here, else made from the whole model, read through the shared loader and then
    dropped from its cache (a client of the whole service reads it again)."""
    key = (service_name, operations, api_version)
    with _MODEL_LOCK:
        if key not in _OPERATIONS_MODELS:
            model = shipped_model(loader, service_name, operations, api_version)
            if model is None:
                whole = loader.load_service_model(service_name, "service-2", api_version)
                model = operations_only(whole, operations)
                _forget(loader, whole)
            _OPERATIONS_MODELS[key] = model
        return _OPERATIONS_MODELS[key]


def shipped_model(
    loader: Any, service_name: str, operations: frozenset[str], api_version: str | None
) -> dict[str, Any] | None:
    """The layer's reduced model of these operations, or None unless it is the one ``operations_only``
    would make here: made from the running botocore's version, for the API version ``loader`` would
    load (``api_version``, or the latest it has), and no data path but botocore's own holds a model
    of that service and version (``AWS_DATA_PATH``, ``~/.aws/models``)."""
    path = shipped_model_path(service_name, operations)
    if not path.is_file():
        return None
    shipped = json.loads(path.read_bytes())
    if shipped["botocore"] != botocore.__version__:
        logger.info(
            "Shipped service model not used: made from another botocore (run `make service-models`)",
            extra={"service": service_name, "shipped_botocore": shipped["botocore"], "botocore": botocore.__version__},
        )
        return None
    try:
        wanted = api_version or loader.determine_latest_version(service_name, "service-2")
    except botocore.exceptions.DataNotFoundError:
        return None  # reading the whole model raises botocore's own error
    if (shipped["api_version"], shipped["operations"]) != (wanted, sorted(operations)) or _models_elsewhere(
        loader, service_name, wanted
    ):
        logger.info(
            "Shipped service model not used: another API version, or a model on another data path",
            extra={"service": service_name, "shipped_api_version": shipped["api_version"], "api_version": wanted},
        )
        return None
    model: dict[str, Any] = shipped["model"]
    return model


def _models_elsewhere(loader: Any, service_name: str, api_version: str) -> bool:
    """Whether a data path other than botocore's own has a model (or its extras) of this service version."""
    for search_path in loader.search_paths:
        folder = Path(search_path, service_name, api_version)
        if not loader.is_builtin_path(search_path) and folder.is_dir() and any(folder.glob("service-2.*")):
            return True
    return False


def operations_only(model: dict[str, Any], operations: frozenset[str]) -> dict[str, Any]:
    """A service model with only these operations and the shapes their input, output and errors reach."""
    missing = operations - model["operations"].keys()
    if missing:
        raise ValueError(f"{model['metadata'].get('serviceId')} has no operation {', '.join(sorted(missing))}")
    kept = {
        name: operation
        for name, operation in model["operations"].items()
        if name in operations or operation.get("endpointoperation")
    }
    shapes: dict[str, Any] = model["shapes"]
    reached: set[str] = set()
    pending = [
        reference["shape"]
        for operation in kept.values()
        for reference in [operation.get("input"), operation.get("output"), *operation.get("errors", [])]
        if reference
    ]
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        references = [shape.get("member"), shape.get("key"), shape.get("value"), *shape.get("members", {}).values()]
        pending.extend(reference["shape"] for reference in references if reference)
    return {**model, "operations": kept, "shapes": {name: shapes[name] for name in shapes if name in reached}}


def _forget(loader: Any, data: Any) -> None:
    """Drop ``data`` from botocore's loader cache (its entries hold it, or a (data, path) pair)."""
    cached = getattr(loader, "_cache", None)
    if not isinstance(cached, dict):
        return
    for key, value in list(cached.items()):
        if value is data or (isinstance(value, tuple) and any(item is data for item in value)):
            del cached[key]


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
