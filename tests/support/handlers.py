"""Load a function's real handler module (every function has an app.py) and call it."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType

from tests.support.template import PROJECT_ROOT


def load_handler(function_dir: str) -> ModuleType:
    """Import functions/<function_dir>/app.py freshly, under a name of its own."""
    path = PROJECT_ROOT / "functions" / function_dir / "app.py"
    name = f"handler_{function_dir}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeLambdaContext:
    function_name: str = "accessctl-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:accessctl-test"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/accessctl-test"
    log_stream_name: str = "2026/12/03/[$LATEST]test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
