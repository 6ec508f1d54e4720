"""Tracing from the API through the workflow to every function, and logs only through the structured logger."""

from __future__ import annotations

import re

from tests.support.template import PROJECT_ROOT, resources, template

# The policy tool is a command-line program (`accessctl policy ...`): it prints for its user.
CLI_MODULES = {PROJECT_ROOT / "layers" / "accessctl" / "accessctl" / "policy" / "tool.py"}


def test_the_api_the_workflow_and_every_function_are_traced() -> None:
    assert template()["Globals"]["Function"]["Tracing"] == "Active"
    functions = resources("AWS::Serverless::Function")
    assert functions and all(body["Properties"].get("Tracing", "Active") == "Active" for body in functions.values())
    apis = resources("AWS::Serverless::Api")
    assert apis and all(body["Properties"].get("TracingEnabled") is True for body in apis.values())
    machines = resources("AWS::Serverless::StateMachine")
    assert machines and all(body["Properties"]["Tracing"]["Enabled"] is True for body in machines.values())


def test_no_function_or_domain_module_prints_or_hand_rolls_json_log_lines() -> None:
    sources = [
        *(PROJECT_ROOT / "functions").rglob("*.py"),
        *(PROJECT_ROOT / "layers" / "accessctl" / "accessctl").rglob("*.py"),
    ]
    offending = []
    for path in sources:
        if path in CLI_MODULES:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"(?<![\w.])print\(", text) or re.search(r"logger\.\w+\(\s*json\.dumps", text):
            offending.append(str(path.relative_to(PROJECT_ROOT)))
    assert offending == []
