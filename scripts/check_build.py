"""Import every built Lambda handler the way Lambda would, with nothing from this machine's packages.

For each function in the built template (default .aws-sam/build/template.yaml) this starts a fresh
interpreter with `python -I -S` (isolated: no PYTHON* variables, no user or site packages, so only
the standard library), then puts on sys.path, in the order the Lambda Python runtime does:

1. the function's built folder (Lambda's /var/task),
2. each of its layers' built `python/lib/pythonX.Y/site-packages` and `python/` folders (/opt/python),
3. the AWS SDK folder given by --runtime-sdk: boto3 and its closure only, standing in for the SDK that
   the Lambda runtime provides and the layer deliberately does not ship.

It then imports the handler module, checks the handler is callable, and checks that every module
loaded came from one of those folders or the standard library. A handler that imports something
the layer does not ship fails here, instead of at its first invocation in AWS.

A layer that ships accessctl's reduced service models (``accessctl/service_models``, written by
``make service-models``) is checked the same way once more: with only the layer and the SDK on the
path, each model the remediator's clients need must be there and usable with the botocore the build
loads (else those clients would read each service's whole model in Lambda).

What this does not prove: the build it checks was made for this machine's interpreter and
architecture (see scripts/build_template.py), so it shows the layer is complete, not that its
compiled wheels fit python3.13/arm64; `make build-check` checks that separately by installing the
layer's lock for the deployed platform. Code that runs only inside a call (not at import) is not run.

Usage: python scripts/check_build.py --runtime-sdk .build/lambda-runtime [--template .aws-sam/build/template.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER_PREFIX = "build-check-"

# Runs in the child interpreter. argv: handler, json(list of sys.path entries to prepend),
# json(list of entries to append), json(list of allowed roots).
_CHILD = r"""
import importlib, json, sys
handler, front, back, roots = sys.argv[1], *map(json.loads, sys.argv[2:5])
sys.path[:0] = front
sys.path.extend(back)
module_name, _, attr = handler.rpartition(".")
module = importlib.import_module(module_name)
if not callable(getattr(module, attr, None)):
    sys.exit(f"{handler}: {attr!r} is not a callable in {module.__file__}")
stdlib = {sys.base_prefix, sys.prefix}
counts = dict.fromkeys(roots, 0)
strays = []
for name, mod in sorted(sys.modules.items()):
    origin = getattr(mod, "__file__", None)
    if not origin:
        continue
    root = next((r for r in roots if origin.startswith(r + "/")), None)
    if root is not None:
        counts[root] += 1
    elif "site-packages" in origin or not any(origin.startswith(p) for p in stdlib):
        strays.append(f"{name} ({origin})")
print(json.dumps({"counts": counts, "strays": strays,
                  "botocore": getattr(sys.modules.get("botocore"), "__file__", None)}))
sys.exit(1 if strays else 0)
"""


# Runs in a child interpreter for a built layer that ships accessctl's reduced service models
# (accessctl/service_models, `make service-models`): each of the remediator's clients finds its model
# there, made from the botocore this build loads (the layer's, which shadows the runtime's in Lambda),
# so in Lambda no client of those operations reads a service's whole model.
# argv: json(list of sys.path entries to prepend), json(list of entries to append).
_SHIPPED_MODELS_CHILD = r"""
import json, sys
front, back = map(json.loads, sys.argv[1:3])
sys.path[:0] = front
sys.path.extend(back)
import botocore
from accessctl import aws
from accessctl.remediation.engine import CLIENT_OPERATIONS
loader = aws._data_loader()
unused = [name for name, operations in sorted(CLIENT_OPERATIONS.items())
          if aws.shipped_model(loader, name, operations, None) is None]
print(json.dumps({"botocore": botocore.__version__, "services": sorted(CLIENT_OPERATIONS), "unused": unused}))
sys.exit(1 if unused else 0)
"""
SHIPPED_MODELS = Path("accessctl") / "service_models"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short-form tags (!Ref, !Sub...) into their long form."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


@dataclass
class FunctionUnderCheck:
    logical_id: str
    code_dir: Path
    handler: str
    layer_dirs: list[Path] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


def _resolve(value: Any, parameters: dict[str, Any]) -> str:
    """A plausible string for an environment value: parameter defaults, placeholders for resources."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((intrinsic, argument),) = value.items()
        if intrinsic == "Ref":
            default = parameters.get(argument, {}).get("Default")
            if default is not None:
                return str(default)
            return f"{PLACEHOLDER_PREFIX}{argument}"
        if intrinsic == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            separator, items = argument
            if isinstance(items, list):
                return str(separator).join(_resolve(item, parameters) for item in items)
            return _resolve(items, parameters)
    return f"{PLACEHOLDER_PREFIX}value"


def load_functions(template_path: Path) -> list[FunctionUnderCheck]:
    """Every AWS::Serverless::Function of a built template, with its folders and environment."""
    template = yaml.load(template_path.read_text(encoding="utf-8"), Loader=_CfnLoader)
    base = template_path.parent
    resources: dict[str, Any] = template.get("Resources", {})
    parameters: dict[str, Any] = template.get("Parameters", {}) or {}
    global_function: dict[str, Any] = (template.get("Globals") or {}).get("Function", {}) or {}

    functions = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = {**global_function, **resource.get("Properties", {})}
        variables = {
            **((global_function.get("Environment") or {}).get("Variables") or {}),
            **((resource.get("Properties", {}).get("Environment") or {}).get("Variables") or {}),
        }
        layer_dirs = []
        for layer in properties.get("Layers", []) or []:
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            if layer_id is None or layer_id not in resources:
                raise SystemExit(f"{logical_id}: layer {layer!r} is not a layer of this template; cannot check it")
            layer_dirs.append(base / resources[layer_id]["Properties"]["ContentUri"])
        functions.append(
            FunctionUnderCheck(
                logical_id=logical_id,
                code_dir=base / properties["CodeUri"],
                handler=properties["Handler"],
                layer_dirs=layer_dirs,
                environment={name: _resolve(value, parameters) for name, value in variables.items()},
            )
        )
    return functions


def _lambda_like_environment(function: FunctionUnderCheck) -> dict[str, str]:
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Fake credentials, and an endpoint nobody listens on: an import must not call AWS.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{python}",
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "LAMBDA_TASK_ROOT": str(function.code_dir),
        **function.environment,
    }


def check_function(function: FunctionUnderCheck, runtime_sdk: Path) -> tuple[bool, str]:
    """Import one handler in a clean interpreter; return (ok, one-line report)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    front = [str(function.code_dir.resolve())]
    for layer in function.layer_dirs:
        front += [
            str((layer / "python" / "lib" / version / "site-packages").resolve()),
            str((layer / "python").resolve()),
        ]
    back = [str(runtime_sdk.resolve())]
    roots = front + back
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _CHILD,
            function.handler,
            json.dumps(front),
            json.dumps(back),
            json.dumps(roots),
        ],
        cwd=function.code_dir,
        env=_lambda_like_environment(function),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return False, f"FAIL {function.logical_id} ({function.handler}):\n    " + "\n    ".join(detail[-15:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    labels = {str(function.code_dir.resolve()): "function", back[0]: "runtime-sdk"}
    counts = ", ".join(f"{labels.get(root, 'layer')}={count}" for root, count in report["counts"].items() if count)
    botocore = report["botocore"]
    botocore_note = ""
    if botocore:
        source = "runtime-sdk" if botocore.startswith(back[0]) else "layer (shadows the runtime's)"
        botocore_note = f"; botocore from {source}"
    return True, f"ok   {function.logical_id} ({function.handler}): modules {counts}{botocore_note}"


def _layer_path(layer: Path) -> list[str]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [str((layer / "python" / "lib" / version / "site-packages").resolve()), str((layer / "python").resolve())]


def check_shipped_models(layer: Path, runtime_sdk: Path) -> tuple[bool, str]:
    """In a clean interpreter with only the built layer and the SDK: every reduced service model the
    remediator's clients need is in the layer and is used (made from the botocore this build loads)."""
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _SHIPPED_MODELS_CHILD,
            json.dumps(_layer_path(layer)),
            json.dumps([str(runtime_sdk.resolve())]),
        ],
        cwd=layer,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return False, f"FAIL {layer.name}: shipped service models not checked:\n    " + "\n    ".join(detail[-15:])
    if report["unused"]:
        return False, (
            f"FAIL {layer.name}: no shipped service model made from its botocore {report['botocore']} for "
            f"{', '.join(report['unused'])}: run `make service-models`, then build again"
        )
    return True, (
        f"ok   {layer.name}: the remediator's clients are made from its shipped service models "
        f"({', '.join(report['services'])}; botocore {report['botocore']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=Path(".aws-sam/build/template.yaml"))
    parser.add_argument("--runtime-sdk", type=Path, required=True, help="folder holding boto3 and its closure only")
    args = parser.parse_args(argv)

    if not args.template.is_file():
        print(f"{args.template} not found: run `make build` first", file=sys.stderr)
        return 2
    functions = load_functions(args.template)
    if not functions:
        print(f"no AWS::Serverless::Function in {args.template}", file=sys.stderr)
        return 2
    print(f"stdlib: {sysconfig.get_paths()['stdlib']}; runtime SDK: {args.runtime_sdk}")
    failures = 0
    for function in functions:
        ok, line = check_function(function, args.runtime_sdk)
        failures += not ok
        print(line)
    print(f"build-check: {len(functions) - failures} of {len(functions)} handlers import cleanly")
    layers = dict.fromkeys(layer for function in functions for layer in function.layer_dirs)
    model_failures = 0
    for layer in layers:
        if (layer / "python" / SHIPPED_MODELS).is_dir():
            ok, line = check_shipped_models(layer, args.runtime_sdk)
            model_failures += not ok
            print(line)
    return 1 if failures or model_failures else 0


if __name__ == "__main__":
    sys.exit(main())
