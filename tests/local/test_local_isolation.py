"""Each stack's handlers get their own copy of the layer package, like a fresh Lambda container."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from accessctl_local import LocalStack

from .conftest import write_project


def test_the_host_processes_copy_of_the_layer_package_is_set_aside_and_restored(tmp_path: Path) -> None:
    # Given the test process imported the layer package itself and cached state in it
    project = write_project(tmp_path)
    layer = str(project / "layers" / "shared")
    sys.path.insert(0, layer)
    try:
        host_copy = importlib.import_module("shared")
        host_copy.cached = "host state"  # type: ignore[attr-defined]
        # When a stack runs a handler that imports the same package
        with LocalStack.start(project, run_schedules=False, load_aws_managed_policies=False) as stack:
            assert not stack.invoke("StepFunction", {}).errored
            handler_copy = sys.modules["shared"]
            # Then the handler got a fresh copy without the host's state
            assert handler_copy is not host_copy
            assert not hasattr(handler_copy, "cached")
        # And afterwards the host has its own copy back
        assert sys.modules["shared"] is host_copy
    finally:
        sys.path.remove(layer)
        sys.modules.pop("shared", None)
