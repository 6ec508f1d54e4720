"""The clean-interpreter import check that `make build-check` runs on the built functions."""

from __future__ import annotations

import shutil
import sysconfig
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BUILT_TEMPLATE = """\
Parameters:
  LogLevel:
    Type: String
    Default: INFO
  Admins:
    Type: CommaDelimitedList
    Default: "a,b"
Globals:
  Function:
    Handler: app.lambda_handler
    Layers:
      - !Ref SharedLayer
    Environment:
      Variables:
        LOG_LEVEL: !Ref LogLevel
        TABLE: !Ref Table
        ADMINS: !Join [",", !Ref Admins]
        FIXED: fixed-value
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: SharedLayer
  Table:
    Type: AWS::DynamoDB::Table
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: HelloFunction
      Environment:
        Variables:
          ONLY_HERE: "1"
"""


def _write_build(tmp_path: Path, handler_source: str, layer_modules: dict[str, str]) -> Path:
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE, encoding="utf-8")
    function_dir = tmp_path / "HelloFunction"
    function_dir.mkdir()
    (function_dir / "app.py").write_text(textwrap.dedent(handler_source), encoding="utf-8")
    layer_python = tmp_path / "SharedLayer" / "python"
    layer_python.mkdir(parents=True)
    for name, source in layer_modules.items():
        (layer_python / f"{name}.py").write_text(source, encoding="utf-8")
    return tmp_path / "template.yaml"


def test_functions_are_read_with_their_layers_and_environment(check_build: ModuleType, tmp_path: Path) -> None:
    template = _write_build(tmp_path, "def lambda_handler(event, context): ...\n", {})

    (function,) = check_build.load_functions(template)

    assert function.logical_id == "HelloFunction"
    assert function.handler == "app.lambda_handler"
    assert function.code_dir == tmp_path / "HelloFunction"
    assert function.layer_dirs == [tmp_path / "SharedLayer"]
    assert function.environment == {
        "LOG_LEVEL": "INFO",
        "TABLE": "build-check-Table",
        "ADMINS": "a,b",
        "FIXED": "fixed-value",
        "ONLY_HERE": "1",
    }


def test_a_handler_whose_imports_the_layer_ships_passes(check_build: ModuleType, tmp_path: Path) -> None:
    template = _write_build(
        tmp_path,
        """
        import os
        import shared

        assert os.environ["LOG_LEVEL"] == "INFO"

        def lambda_handler(event, context):
            return shared.VALUE
        """,
        {"shared": "VALUE = 1\n"},
    )
    (function,) = check_build.load_functions(template)

    ok, report = check_build.check_function(function, runtime_sdk=tmp_path / "sdk")

    assert ok, report
    assert "layer=1" in report


@pytest.mark.parametrize(
    "missing_import",
    [
        "import pytest",  # installed in the dev venv, shipped by nobody
        "import yaml",  # installed in the dev venv, not in this (empty) layer
        "import shared",  # the layer module this build lacks
    ],
)
def test_a_handler_importing_what_the_build_lacks_fails(
    check_build: ModuleType, tmp_path: Path, missing_import: str
) -> None:
    template = _write_build(tmp_path, f"{missing_import}\n\ndef lambda_handler(event, context): ...\n", {})
    (function,) = check_build.load_functions(template)

    ok, report = check_build.check_function(function, runtime_sdk=tmp_path / "sdk")

    assert not ok
    assert "ModuleNotFoundError" in report


def test_a_handler_that_is_not_callable_fails(check_build: ModuleType, tmp_path: Path) -> None:
    template = _write_build(tmp_path, "lambda_handler = None\n", {})
    (function,) = check_build.load_functions(template)

    ok, report = check_build.check_function(function, runtime_sdk=tmp_path / "sdk")

    assert not ok
    assert "not a callable" in report


def _layer_with_the_package(repo_root: Path, tmp_path: Path) -> Path:
    """A built layer holding the accessctl package from source (its dependencies: the dev venv's, as the SDK)."""
    layer = tmp_path / "AccessctlLayer"
    shutil.copytree(
        repo_root / "layers/accessctl/accessctl",
        layer / "python" / "accessctl",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return layer


def test_a_layer_shipping_the_remediators_service_models_passes(
    check_build: ModuleType, repo_root: Path, tmp_path: Path
) -> None:
    layer = _layer_with_the_package(repo_root, tmp_path)

    ok, report = check_build.check_shipped_models(layer, runtime_sdk=Path(sysconfig.get_paths()["purelib"]))

    assert ok, report
    assert "dynamodb, ec2, rds, sns" in report


def test_a_layer_missing_one_of_the_remediators_service_models_fails_naming_it(
    check_build: ModuleType, repo_root: Path, tmp_path: Path
) -> None:
    # Given a built layer whose EC2 model did not make it into the build
    layer = _layer_with_the_package(repo_root, tmp_path)
    (ec2,) = (layer / "python/accessctl/service_models").glob("ec2.*.json")
    ec2.unlink()

    ok, report = check_build.check_shipped_models(layer, runtime_sdk=Path(sysconfig.get_paths()["purelib"]))

    assert not ok
    assert "for ec2: run `make service-models`" in report
