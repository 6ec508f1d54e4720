"""The shared tracer: no X-Ray SDK when tracing is off, the real Powertools tracer when it is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.template import PROJECT_ROOT

PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
from accessctl.observability import tracer

def handler(event, context):
    return "answer"

decorated = tracer.capture_lambda_handler(capture_response=False)(handler)
method = tracer.capture_method(handler)
print(json.dumps({
    "xray_imported": "aws_xray_sdk.core" in sys.modules,
    "unchanged": decorated is handler and method is handler,
    "real_tracer": tracer._tracer is not None,
}))
"""


def probe(**environment: str) -> dict[str, bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "LAMBDA_", "AWS_SAM"))}
    env.update(environment)
    layer = str(PROJECT_ROOT / "layers" / "accessctl")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, layer], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "environment",
    [
        {"POWERTOOLS_TRACE_DISABLED": "true", "LAMBDA_TASK_ROOT": "/var/task"},
        {"POWERTOOLS_TRACE_DISABLED": "1", "LAMBDA_TASK_ROOT": "/var/task"},
        {},  # outside Lambda
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"},
    ],
)
def test_given_tracing_off_then_handlers_are_left_as_they_are_and_the_xray_sdk_is_not_imported(
    environment: dict[str, str],
) -> None:
    assert probe(**environment) == {"xray_imported": False, "unchanged": True, "real_tracer": False}


def test_given_tracing_on_in_lambda_then_the_handler_is_captured_by_the_powertools_tracer() -> None:
    found = probe(LAMBDA_TASK_ROOT="/var/task", POWERTOOLS_TRACE_DISABLED="false")

    assert found == {"xray_imported": True, "unchanged": False, "real_tracer": True}
