"""The project's own template.yaml and ASL deploy locally, and every handler imports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from accessctl_local import LocalStack
from accessctl_local.sam import load_template

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAM = load_template(PROJECT_ROOT / "template.yaml")
FUNCTIONS = [lid for lid, r in SAM["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]


@pytest.fixture(scope="module")
def real_stack() -> Iterator[LocalStack]:
    with LocalStack.start(PROJECT_ROOT, run_schedules=False) as running:
        yield running


def test_every_template_resource_is_deployed(real_stack: LocalStack) -> None:
    # Given the SAM template's own resources (before translation)
    # Then each exists locally (serverless ones under their translated logical ids)
    deployed = real_stack.resources
    for logical_id, resource in SAM["Resources"].items():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            assert any(k.startswith(logical_id) for k in deployed), logical_id
        else:
            assert logical_id in deployed, logical_id
    assert set(SAM["Outputs"]) <= set(real_stack.outputs)


def test_the_state_machine_has_every_substitution_resolved(real_stack: LocalStack) -> None:
    described = real_stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=real_stack.outputs["StateMachineArn"]
    )
    assert "${" not in described["definition"]
    tasks = [s for s in json.loads(described["definition"])["States"].values() if s["Type"] == "Task"]
    arns = {t["Parameters"]["FunctionName"] for t in tasks}
    assert arns <= {f.function_arn for f in real_stack.functions.values()}


def test_api_routes_and_schedule_come_from_the_template(real_stack: LocalStack) -> None:
    assert real_stack.api is not None and real_stack.scheduler is not None
    routes = {(r.method, r.resource) for r in real_stack.api.routes}
    expected = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in SAM["Resources"].values()
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "Api"
    }
    assert routes == expected
    # Every route is SigV4-authorised unless the template gives it its own scheme (Authorizer: NONE).
    own_scheme = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in SAM["Resources"].values()
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert {(r.method, r.resource) for r in real_stack.api.routes if not r.iam_auth} == own_scheme
    assert sorted(s.expression for s in real_stack.scheduler.schedules) == sorted(_template_schedules())


def _template_schedules() -> list[str]:
    """Every ScheduleV2 event's expression, parameter references resolved to their defaults."""
    expressions = []
    for resource in SAM["Resources"].values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "ScheduleV2":
                expression = event["Properties"]["ScheduleExpression"]
                if isinstance(expression, dict):
                    expression = SAM["Parameters"][expression["Ref"]]["Default"]
                expressions.append(expression)
    return expressions


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_handler_imports_in_process(real_stack: LocalStack, logical_id: str) -> None:
    spec = real_stack.functions.get(logical_id)
    if spec is None or not (spec.code_dir / "app.py").exists():
        pytest.skip(f"{logical_id} has no code yet")
    assert callable(real_stack.runtime._handler(spec))  # type: ignore[union-attr]
