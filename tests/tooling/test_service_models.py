"""The reduced service models shipped in the layer (scripts/service_models.py, `make service-models`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore
import botocore.loaders
import pytest

from accessctl import aws
from accessctl.remediation.engine import CLIENT_OPERATIONS
from tests.support.botocore_models import without_documentation
from tests.tooling.conftest import load_script

STALE = "after a botocore bump, run `make service-models` and commit layers/accessctl/accessctl/service_models/"


@pytest.fixture(scope="module")
def service_models() -> ModuleType:
    return load_script("service_models")


def shipped() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in aws.SERVICE_MODELS_DIR.glob("*.json")}


@pytest.mark.parametrize("service_name", sorted(CLIENT_OPERATIONS))
def test_each_shipped_model_is_what_operations_only_makes_of_the_installed_botocores_model(service_name: str) -> None:
    # Given botocore's own model of the service, as botocore itself parses it, less its documentation
    operations = CLIENT_OPERATIONS[service_name]
    stock = botocore.loaders.Loader(
        extra_search_paths=[botocore.loaders.Loader.BUILTIN_DATA_PATH], include_default_search_paths=False
    )
    whole = without_documentation(stock.load_service_model(service_name, "service-2"))

    # When the layer's file for these operations is read
    path = aws.shipped_model_path(service_name, operations)
    assert path.is_file(), f"{path.name} is missing: {STALE}"
    document = json.loads(path.read_text(encoding="utf-8"))

    # Then it was made from this botocore, for its latest API version, and is its operations-only model
    assert (document["botocore"], document["api_version"]) == (
        botocore.__version__,
        stock.determine_latest_version(service_name, "service-2"),
    ), STALE
    assert document["operations"] == sorted(operations), STALE
    assert document["model"] == aws.operations_only(whole, operations), STALE


def test_the_layer_ships_no_model_the_remediator_does_not_use() -> None:
    expected = {aws.shipped_model_path(name, operations).name for name, operations in CLIENT_OPERATIONS.items()}

    assert set(shipped()) == expected, STALE


def test_the_generator_writes_the_committed_files_byte_for_byte_and_removes_stale_ones(
    service_models: ModuleType, tmp_path: Path
) -> None:
    # Given an output folder holding a model of an operation set no longer used
    (tmp_path / "ec2.000000000000.json").write_text("{}", encoding="utf-8")

    # When the generator runs
    service_models.write(tmp_path)

    # Then it holds exactly the committed files, with the same bytes
    written = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    committed = {path.name: path.read_bytes() for path in aws.SERVICE_MODELS_DIR.iterdir()}
    assert written == committed, STALE


def test_the_generator_refuses_a_botocore_other_than_the_layers_pin_and_writes_nothing(
    service_models: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(botocore, "__version__", "1.0.0")

    with pytest.raises(SystemExit, match=r"botocore 1\.0\.0 is installed, the layer pins .*make install"):
        service_models.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_pin_the_generator_reads_is_the_layer_locks(service_models: ModuleType, repo_root: Path) -> None:
    lock = (repo_root / "layers/accessctl/requirements.txt").read_text(encoding="utf-8")

    assert f"botocore=={service_models.pinned_botocore()} " in lock
    assert service_models.pinned_botocore() == botocore.__version__, "dev.lock and the layer's lock disagree"
