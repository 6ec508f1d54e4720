"""``LocalStack``: the project's SAM template running offline (emulator + in-process Lambda + API + schedules).

One LocalStack per process at a time: moto's backends, its patched classes and the environment
variables the handlers read are process-wide.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from . import moto_patches
from .api import LocalApi, routes_from_deployment
from .emulator import Emulator
from .provision import DEFAULT_ACCOUNT_ID, DeployError, Deployment, Provisioner
from .queues import LocalQueuePoller
from .runtime import FunctionSpec, Invocation, LambdaContext, LambdaRuntime
from .sam import translate
from .schedules import LocalScheduler

log = logging.getLogger(__name__)

# Credentials every local client uses; moto accepts any, and they keep real ones out of reach.
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"  # not a secret: moto accepts any credentials
_ACTIVE = threading.Lock()  # held while a LocalStack runs: moto state and os.environ are process-wide
_UNSET_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


class _Environment:
    """Sets process environment variables and puts the previous values back on ``restore``."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        if hasattr(time, "tzset"):
            time.tzset()


class _FreshModules:
    """Gives the stack's handlers their own copy of the layer package, like a new Lambda container.

    Modules from the layer/code dirs already imported by the host process (a test importing
    ``accessctl``, say) are set aside while the stack runs, so cached state in them (clients, table
    names) never leaks into the handlers, nor the stack's into the host's afterwards.
    """

    def __init__(self) -> None:
        self._roots: list[Path] = []
        self._saved: dict[str, Any] = {}

    def isolate(self, roots: list[Path]) -> None:
        self._roots = [root.resolve() for root in roots]
        self._saved = {name: module for name, module in list(sys.modules.items()) if self._owned(module)}
        for name in self._saved:
            del sys.modules[name]

    def restore(self) -> None:
        for name, module in list(sys.modules.items()):
            if self._owned(module):
                del sys.modules[name]
        sys.modules.update(self._saved)
        self._saved.clear()

    def _owned(self, module: Any) -> bool:
        location = getattr(module, "__file__", None)
        if not location or not self._roots:
            return False
        path = Path(location).resolve()
        return any(path.is_relative_to(root) for root in self._roots)


def use_utc(env: _Environment) -> None:
    """Run the process in UTC: moto's Wait ``TimestampPath`` compares with naive ``datetime.now()``."""
    env.set("TZ", "UTC")
    if hasattr(time, "tzset"):
        time.tzset()
    skew = abs((datetime.now() - datetime.now(UTC).replace(tzinfo=None)).total_seconds())
    if skew > 1:
        raise RuntimeError(f"local time is not UTC after TZ=UTC (off by {skew:.0f}s); Wait states would misfire")


def merged_function_environment(functions: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The union of every function's variables; a name with two values is an error.

    Handlers run in one process, so their variables share ``os.environ``; that is only sound while
    no two functions give one name different values.
    """
    merged: dict[str, str] = {}
    owners: dict[str, str] = {}
    conflicts: list[str] = []
    for logical_id, function in sorted(functions.items()):
        for name, value in function["environment"].items():
            if name in merged and merged[name] != value:
                conflicts.append(f"{name}: {owners[name]}={merged[name]!r} vs {logical_id}={value!r}")
            else:
                merged[name] = value
                owners.setdefault(name, logical_id)
    if conflicts:
        raise DeployError(
            "functions disagree on environment variables (one process runs them all): " + "; ".join(conflicts)
        )
    return merged


class LocalStack:
    """A deployed local stack. Use ``LocalStack.start(...)`` as a context manager."""

    def __init__(self) -> None:
        self.emulator: Emulator | None = None
        self.runtime: LambdaRuntime | None = None
        self.api: LocalApi | None = None
        self.scheduler: LocalScheduler | None = None
        self.queues: LocalQueuePoller | None = None
        self.deployment: Deployment | None = None
        self._env = _Environment()
        self._sys_path_added: list[str] = []
        self._owns_process = False
        self._modules = _FreshModules()

    # -------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        project_root: str | Path = ".",
        template: str | Path = "template.yaml",
        parameter_overrides: dict[str, Any] | None = None,
        stack_name: str = "accessctl-local",
        region: str = "us-east-1",
        api_port: int = 0,
        emulator_port: int = 0,
        run_schedules: bool = True,
        schedule_interval: float | dict[str, float] | None = None,
        load_aws_managed_policies: bool = True,
        run_queues: bool = True,
    ) -> LocalStack:
        """Start the emulator, deploy ``template`` into it, and serve its API and schedules.

        ``schedule_interval`` overrides every schedule's rate (seconds), or some of them by logical id.
        ``load_aws_managed_policies`` makes moto know AWS managed policies (about 0.2 s per account),
        so roles get ``AWSLambdaBasicExecutionRole`` and friends attached as in AWS.
        ``run_queues``: poll the SQS event sources in the background (else only through ``drain_queue``).
        """
        stack = cls()
        if not _ACTIVE.acquire(blocking=False):
            raise RuntimeError("another LocalStack is running in this process; stop it first")
        stack._owns_process = True
        try:
            stack._start(
                Path(project_root),
                Path(template),
                parameter_overrides,
                stack_name,
                region,
                api_port,
                emulator_port,
                run_schedules,
                schedule_interval,
                load_aws_managed_policies,
                run_queues,
            )
        except BaseException:
            stack.stop()
            raise
        return stack

    def _start(
        self,
        project_root: Path,
        template: Path,
        parameter_overrides: dict[str, Any] | None,
        stack_name: str,
        region: str,
        api_port: int,
        emulator_port: int,
        run_schedules: bool,
        schedule_interval: float | dict[str, float] | None,
        load_aws_managed_policies: bool,
        run_queues: bool = True,
    ) -> None:
        template_path = template if template.is_absolute() else project_root / template
        use_utc(self._env)
        # Powertools keeps one parameters/secrets provider per process, bound to the endpoint it first
        # saw: a provider from an earlier stack would call an emulator that is gone.
        from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

        DEFAULT_PROVIDERS.clear()
        self.emulator = Emulator(emulator_port)
        self._env.set("MOTO_PORT", str(self.emulator.port))
        self._env.set("MOTO_IAM_LOAD_MANAGED_POLICIES", "true" if load_aws_managed_policies else None)
        self.runtime = LambdaRuntime()
        moto_patches.install(self.runtime)
        self.emulator.start()
        self._set_client_environment(region)

        translated = translate(template_path, region, parameter_overrides)
        provisioner = Provisioner(
            translated,
            self.session(region),
            self.emulator.endpoint_url,
            stack_name,
            parameter_overrides,
            account_id=DEFAULT_ACCOUNT_ID,
            skip_missing_aws_managed_policies=not load_aws_managed_policies,
        )
        self.deployment = provisioner.deploy()
        for name, value in merged_function_environment(self.deployment.functions).items():
            self._env.set(name, value)
        code_dirs = [f["code_dir"] for f in self.deployment.functions.values() if f["code_dir"] is not None]
        self._modules.isolate([*self.deployment.layer_dirs, *code_dirs])
        for path in self.deployment.layer_dirs:
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
                self._sys_path_added.append(str(path))
        for logical_id, function in self.deployment.functions.items():
            if function["code_dir"] is None:
                log.warning("%s has no local code; invoking it fails with Runtime.HandlerNotFound", logical_id)
                continue
            self.runtime.register(
                FunctionSpec(
                    logical_id=logical_id,
                    function_name=function["name"],
                    function_arn=function["arn"],
                    code_dir=function["code_dir"],
                    handler=function["handler"],
                    timeout_seconds=function["timeout"],
                    memory_mb=function["memory"],
                    environment=function["environment"],
                )
            )

        self.api = LocalApi(
            routes_from_deployment(self.deployment),
            self.runtime,
            region,
            DEFAULT_ACCOUNT_ID,
            lambda key, token: moto_patches.resolve_credentials(key, token, [DEFAULT_ACCOUNT_ID]),
            port=api_port,
        )
        self.api.start()
        self._localise_outputs()
        self.scheduler = LocalScheduler(
            self.deployment.schedules, self.runtime, region, DEFAULT_ACCOUNT_ID, schedule_interval
        )
        if run_schedules:
            self.scheduler.start()
        self.queues = LocalQueuePoller(
            self.deployment.queue_sources, self.runtime, self.client("sqs"), region, DEFAULT_ACCOUNT_ID
        )
        if run_queues:
            self.queues.start()
        self.reset_api_call_counts()

    def _set_client_environment(self, region: str) -> None:
        assert self.emulator is not None
        self._env.set("AWS_ENDPOINT_URL", self.emulator.endpoint_url)
        self._env.set("AWS_DEFAULT_REGION", region)
        self._env.set("AWS_REGION", region)
        self._env.set("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY)
        self._env.set("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_KEY)
        for name in _UNSET_ENV:
            self._env.set(name, None)
        # No X-Ray daemon here: keep Powertools' tracer from trying to reach one.
        self._env.set("POWERTOOLS_TRACE_DISABLED", os.environ.get("POWERTOOLS_TRACE_DISABLED", "true"))

    def _localise_outputs(self) -> None:
        """Point outputs that name an API Gateway URL at the local API instead."""
        assert self.deployment is not None and self.api is not None
        for resource in self.deployment.resources.values():
            if resource.type != "AWS::ApiGateway::RestApi":
                continue
            remote = f"https://{resource.physical_id}.execute-api.{self.deployment.region}.amazonaws.com"
            for name, value in self.deployment.outputs.items():
                if isinstance(value, str) and value.startswith(remote):
                    self.deployment.outputs[name] = self.api.base_url + value[len(remote) :]

    def stop(self) -> None:
        """Stop schedules, API, running executions and the emulator; undo patches and environment."""
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.queues is not None:
            self.queues.stop()
        if self.api is not None:
            self.api.stop()
        if self.emulator is not None:
            try:
                self._stop_executions()
            except Exception:
                log.warning("could not stop running executions", exc_info=True)
            moto_patches.drain_background()
            try:
                self.emulator.reset()
            except Exception:
                log.warning("could not reset the emulator", exc_info=True)
            self.emulator.stop()
        moto_patches.uninstall()
        self._modules.restore()
        for path in self._sys_path_added:
            if path in sys.path:
                sys.path.remove(path)
        self._sys_path_added.clear()
        self._env.restore()
        self.scheduler = self.api = self.emulator = None
        self.queues = None
        if self._owns_process:
            self._owns_process = False
            _ACTIVE.release()

    def _stop_executions(self) -> None:
        sfn = self.client("stepfunctions")
        for machine in sfn.list_state_machines().get("stateMachines", []):
            running = sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")
            for execution in running.get("executions", []):
                sfn.stop_execution(executionArn=execution["executionArn"], cause="local stack stopping")

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -------------------------------------------------------------- what tests and tools use

    @property
    def endpoint_url(self) -> str:
        """The emulator's URL, for ``AWS_ENDPOINT_URL``."""
        assert self.emulator is not None, "stack not running"
        return self.emulator.endpoint_url

    @property
    def api_url(self) -> str:
        """Base URL of the local API, stage included (``http://127.0.0.1:PORT/v1``)."""
        assert self.api is not None, "stack not running"
        return self.api.url()

    @property
    def region(self) -> str:
        assert self.deployment is not None
        return self.deployment.region

    @property
    def account_id(self) -> str:
        return DEFAULT_ACCOUNT_ID

    @property
    def outputs(self) -> dict[str, Any]:
        assert self.deployment is not None
        return dict(self.deployment.outputs)

    @property
    def resources(self) -> dict[str, str]:
        """Logical id -> physical id (table names, function names, ARNs for topics/state machines...)."""
        assert self.deployment is not None
        return self.deployment.physical_ids()

    def attribute(self, logical_id: str, name: str) -> Any:
        """A resource's ``Fn::GetAtt`` value, e.g. ``attribute("GrantsTable", "Arn")``."""
        assert self.deployment is not None
        return self.deployment.resources[logical_id].attributes[name]

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        """Logical id -> function (name, ARN, code dir, handler)."""
        assert self.runtime is not None
        return {spec.logical_id: spec for spec in self.runtime.functions.values()}

    def session(self, region: str | None = None) -> boto3.Session:
        """A boto3 Session with the dummy credentials; its clients need ``endpoint_url`` or the env var."""
        return boto3.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            region_name=region or (self.deployment.region if self.deployment else "us-east-1"),
        )

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client pointed at the emulator."""
        return self.session().client(service, endpoint_url=self.endpoint_url, **kwargs)

    def invoke(self, function: str, event: Any) -> Invocation:
        """Run a function in-process directly (no emulator round trip)."""
        assert self.runtime is not None
        return self.runtime.invoke(function, event)

    def fire_schedule(self, name: str) -> Invocation:
        """Run a schedule once, now (by schedule or target function logical id)."""
        assert self.scheduler is not None
        return self.scheduler.fire(name)

    def drain_queue(self, name: str | None = None) -> list[Invocation]:
        """Poll an SQS event source (mapping or function logical id), or all, until their queues are empty."""
        assert self.queues is not None
        return self.queues.drain(name)

    def inject_failure(
        self,
        function: str,
        exception: BaseException | type[BaseException] | None = None,
        times: int = 1,
        before: Callable[[Any, LambdaContext], None] | None = None,
    ) -> None:
        """Make ``function`` (logical id, name or ARN) raise ``exception`` on its next ``times`` invocations."""
        assert self.runtime is not None
        self.runtime.inject_failure(function, exception, times, before)

    def clear_failures(self, function: str | None = None) -> None:
        assert self.runtime is not None
        self.runtime.clear_failures(function)

    def api_call_counts(self) -> dict[tuple[str, str], int]:
        """AWS API calls the emulator served since start (after deploy) or the last reset: (service, action) -> n."""
        return moto_patches.api_call_counter().snapshot()

    def reset_api_call_counts(self) -> None:
        moto_patches.api_call_counter().reset()

    def invocation_counts(self) -> dict[str, int]:
        assert self.runtime is not None
        return self.runtime.invocation_counts()

    def describe(self) -> str:
        """Human-readable summary: URLs and resource names."""
        assert self.deployment is not None
        lines = [
            f"API:       {self.api_url}",
            f"Emulator:  {self.endpoint_url}   (export AWS_ENDPOINT_URL={self.endpoint_url})",
            f"Region:    {self.region}   Account: {self.account_id}",
            "Outputs:",
            *(f"  {k} = {v}" for k, v in sorted(self.outputs.items())),
            "Resources:",
            *(
                f"  {lid:<40} {r.type:<34} {r.physical_id}{'  (local)' if r.local_only else ''}"
                for lid, r in sorted(self.deployment.resources.items())
            ),
        ]
        if self.api is not None:
            lines.append("Routes:")
            lines.extend(
                f"  {r.method:<6} {self.api.base_url}/{r.stage}{r.resource}{'  [AWS_IAM]' if r.iam_auth else ''}"
                for r in self.api.routes
            )
        if self.scheduler is not None:
            lines.append("Schedules:")
            lines.extend(
                f"  {s.logical_id}: {s.expression} -> {s.target_arn}"
                + (
                    f" (every {self.scheduler.intervals[s.logical_id]:g}s locally)"
                    if s.logical_id in self.scheduler.intervals
                    else " (fire_schedule only)"
                )
                for s in self.scheduler.schedules
            )
        if self.queues is not None and self.queues.sources:
            lines.append("Queue event sources:")
            lines.extend(
                f"  {q.logical_id}: {q.queue_arn} -> {q.function} (batch {q.batch_size})" for q in self.queues.sources
            )
        return "\n".join(lines)
