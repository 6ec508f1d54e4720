"""The in-process Lambda runtime: real handlers, Lambda-shaped errors, fault injection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from accessctl_local import LocalStack

from .support import history_errors, run_execution


class Boom(Exception):
    pass


def test_step_functions_lambda_invoke_dispatches_to_the_real_handler(stack: LocalStack) -> None:
    # Given the workflow whose only task is the StepFunction handler from the template
    # When an execution runs with a plain payload
    result = run_execution(stack, stack.outputs["WorkflowArn"], {"x": 1})
    # Then the handler ran in-process with its environment, context and layer import
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])["result"]
    assert output["echo"] == {"x": 1}
    assert output["topic"] == stack.resources["Topic"]
    assert output["function"] == stack.resources["StepFunction"]
    assert output["arn"] == stack.attribute("StepFunction", "Arn")
    assert output["memory"] == 256
    assert 0 < output["remaining_ms"] <= 30_000


def test_a_raised_exception_is_a_lambda_error_named_after_its_class(stack: LocalStack) -> None:
    # Given a handler that raises PermanentError for this payload
    # When it is invoked through the Lambda API
    response = stack.client("lambda").invoke(
        FunctionName=stack.resources["StepFunction"], Payload=b'{"raise": "permanent"}'
    )
    # Then Lambda reports a function error whose type is the exception's class name
    assert response["FunctionError"]
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "PermanentError"
    assert payload["errorMessage"] == "give up"
    assert payload["stackTrace"]


def test_asl_retry_matches_the_exception_name_then_catch_sees_it(stack: LocalStack) -> None:
    # Given a task that retries TransientError twice and catches everything
    stack.runtime.reset_counts()
    # When the handler raises TransientError every time
    result = run_execution(stack, stack.outputs["WorkflowArn"], {"raise": "transient"})
    # Then Retry ran it three times and Catch received the same error name
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["error"]["Error"] == "TransientError"
    assert history_errors(stack, result["executionArn"]) == ["TransientError"] * 3
    assert stack.invocation_counts()["StepFunction"] == 3


def test_an_error_retry_does_not_match_goes_straight_to_catch(stack: LocalStack) -> None:
    # Given the same workflow
    # When the handler raises PermanentError (not in the Retry list)
    result = run_execution(stack, stack.outputs["WorkflowArn"], {"raise": "permanent"})
    # Then there is exactly one attempt and Catch has the error
    assert history_errors(stack, result["executionArn"]) == ["PermanentError"]
    assert json.loads(result["output"])["error"]["Error"] == "PermanentError"


def test_injected_failures_hit_the_next_n_invocations_only(stack: LocalStack) -> None:
    # Given two injected TransientErrors on the workflow's step
    class TransientError(Exception):
        pass

    stack.inject_failure("StepFunction", TransientError("injected"), times=2)
    # When an execution runs with a payload the handler would accept
    result = run_execution(stack, stack.outputs["WorkflowArn"], {"ok": True})
    # Then Retry absorbed both injected failures and the third attempt ran the real handler
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["result"]["echo"] == {"ok": True}
    assert history_errors(stack, result["executionArn"]) == ["TransientError", "TransientError"]


def test_a_before_hook_sees_the_event_and_context(stack: LocalStack) -> None:
    # Given a hook on the step function
    seen: list[tuple[object, str]] = []
    stack.inject_failure("StepFunction", before=lambda event, context: seen.append((event, context.function_name)))
    # When the function is invoked directly
    invocation = stack.invoke("StepFunction", {"hello": "world"})
    # Then the hook ran first, and the handler still ran
    assert seen == [({"hello": "world"}, stack.resources["StepFunction"])]
    assert not invocation.errored


def test_an_injected_exception_class_is_reported_by_name(stack: LocalStack) -> None:
    # Given an injected exception class (not instance)
    stack.inject_failure(stack.resources["StepFunction"], Boom)
    # When invoked
    invocation = stack.invoke("StepFunction", {})
    # Then the error type is the class name
    assert invocation.errored and invocation.error_type == "Boom"


def test_a_handler_that_cannot_import_fails_like_lambda(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given a function whose code has a syntax error
    from accessctl_local.runtime import FunctionSpec, LambdaRuntime

    code = tmp_path_factory.mktemp("broken")
    (code / "app.py").write_text("def lambda_handler(event, context) return 1\n")
    runtime = LambdaRuntime()
    runtime.register(
        FunctionSpec(
            "Broken", "broken", "arn:aws:lambda:us-east-1:123456789012:function:broken", code, "app.lambda_handler"
        )
    )
    # When invoked
    invocation = runtime.invoke("Broken", {})
    # Then the error is Runtime.ImportModuleError
    assert invocation.errored and invocation.error_type == "Runtime.ImportModuleError"


def test_two_functions_with_app_py_load_as_separate_modules(stack: LocalStack) -> None:
    # Given the api and step functions, both app.py
    # When both run
    assert not stack.invoke("StepFunction", {}).errored
    swept = stack.fire_schedule("SweepFunction")
    # Then each ran its own module (the sweep handler returns its own shape)
    assert "swept" in swept.payload


def test_executions_run_handlers_concurrently(stack: LocalStack) -> None:
    # Given a handler that waits until three invocations are inside it at once
    barrier = threading.Barrier(3, timeout=30)
    stack.inject_failure("StepFunction", before=lambda event, context: barrier.wait(), times=3)
    # When three executions start together
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda n: run_execution(stack, stack.outputs["WorkflowArn"], {"n": n}), range(3)))
    # Then all three got through the barrier (no serialisation) and succeeded
    assert [r["status"] for r in results] == ["SUCCEEDED"] * 3
    assert not barrier.broken


@pytest.fixture
def one_second_timeout(stack: LocalStack) -> Iterator[None]:
    """The step function's Timeout lowered to 1 s through the Lambda API (the template says 30)."""
    lambda_client = stack.client("lambda")
    name = stack.resources["StepFunction"]
    lambda_client.update_function_configuration(FunctionName=name, Timeout=1)
    yield
    lambda_client.update_function_configuration(FunctionName=name, Timeout=30)


def stopped_threads(stack: LocalStack) -> bool:
    return not any(thread.name.startswith("lambda-StepFunction-") for thread in threading.enumerate())


def test_a_handler_past_its_timeout_is_a_sandbox_timedout_error_and_stops_where_it_was(
    stack: LocalStack, one_second_timeout: None
) -> None:
    # Given a handler that records a side effect, then works for longer than its 1 s Timeout
    effects: list[str] = []

    def slow(event: object, context: object) -> None:
        effects.append("before the timeout")
        for _ in range(200):  # 10 s of work, in small steps
            time.sleep(0.05)
        effects.append("after the timeout")

    stack.inject_failure("StepFunction", before=slow)
    # When the workflow runs it
    result = run_execution(stack, stack.outputs["WorkflowArn"], {"n": 1})
    # Then Step Functions saw the Lambda error Sandbox.Timedout (not retried: only TransientError is)
    assert history_errors(stack, result["executionArn"]) == ["Sandbox.Timedout"]
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in error["Cause"]
    # and the handler's side effect from before the timeout stays, while nothing after it ran
    deadline = time.monotonic() + 30
    while not stopped_threads(stack) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopped_threads(stack)
    assert effects == ["before the timeout"]


def test_a_timed_out_invocation_through_the_lambda_api_is_a_function_error(
    stack: LocalStack, one_second_timeout: None
) -> None:
    stack.inject_failure("StepFunction", before=lambda event, context: time.sleep(3))

    response = stack.client("lambda").invoke(FunctionName=stack.resources["StepFunction"], Payload=b"{}")

    assert response["FunctionError"]
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"].endswith("Task timed out after 1.00 seconds")
