"""Write the reduced botocore service models that the layer ships, from the pinned botocore.

The remediator's clients know only the operations it calls (``accessctl.aws.client(service,
operations)``). Made at run time, each such model costs reading and parsing the service's whole model
once (EC2's: 4.2 MB of JSON); the layer ships them made already, one file per service and operation
set (``accessctl.remediation.engine.CLIENT_OPERATIONS``), in ``layers/accessctl/accessctl/service_models/``.
Each file is what ``accessctl.aws.operations_only`` makes of the model botocore's own data holds, read
as the shared loader reads it (``LeanJSONFileLoader``: no documentation), with the botocore version and
API version it was made from; the client uses it only when both match what it would load (else it
reads the whole model, as before).

``make service-models`` runs this with the dev environment, whose botocore is the version the layer's
lock pins (``tests/tooling/test_lock_files.py`` holds the two locks equal); it refuses any other
version. Files of sets no longer used are removed. ``tests/tooling/test_service_models.py`` fails
when the committed files differ from what the installed botocore gives: after a botocore bump
(``make lock-upgrade``), run ``make service-models`` and commit the result.

Usage: python scripts/service_models.py [--output layers/accessctl/accessctl/service_models]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAYER = PROJECT_ROOT / "layers" / "accessctl"
LAYER_LOCK = LAYER / "requirements.txt"
REGENERATE = "make service-models"
_BOTOCORE_PIN = re.compile(r"^botocore==(?P<version>[^\s;\\]+)", re.MULTILINE)

sys.path.insert(0, str(LAYER))

from accessctl import aws  # noqa: E402  (the layer package, from its source folder)
from accessctl.remediation.engine import CLIENT_OPERATIONS  # noqa: E402


def pinned_botocore(lock: Path = LAYER_LOCK) -> str:
    match = _BOTOCORE_PIN.search(lock.read_text(encoding="utf-8"))
    if match is None:
        raise SystemExit(f"no botocore pin in {lock}")
    return match["version"]


def builtin_loader() -> botocore.loaders.Loader:
    """botocore's own data only (no ``AWS_DATA_PATH``, no ``~/.aws/models``), read as the layer reads it."""
    return botocore.loaders.Loader(
        extra_search_paths=[botocore.loaders.Loader.BUILTIN_DATA_PATH],
        include_default_search_paths=False,
        file_loader=aws.LeanJSONFileLoader(),
    )


def reduced_model(loader: botocore.loaders.Loader, service_name: str, operations: frozenset[str]) -> dict[str, Any]:
    """The shipped file's content for one service and operation set, from the installed botocore."""
    model = aws.operations_only(loader.load_service_model(service_name, "service-2"), operations)
    return {
        "generated_by": f"{REGENERATE} (scripts/service_models.py): do not edit",
        "botocore": botocore.__version__,
        "service": service_name,
        "api_version": model["metadata"]["apiVersion"],
        "operations": sorted(operations),
        "model": model,
    }


def render(document: dict[str, Any]) -> str:
    """One member a line (reviewable diffs); key order as botocore's, so the client's operation order is too."""
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def expected_files(operations_by_service: dict[str, frozenset[str]] = CLIENT_OPERATIONS) -> dict[str, str]:
    """File name -> text of every model the layer ships, as the installed botocore gives them."""
    loader = builtin_loader()
    return {
        aws.shipped_model_path(service_name, operations).name: render(reduced_model(loader, service_name, operations))
        for service_name, operations in sorted(operations_by_service.items())
    }


def write(output: Path) -> list[str]:
    """Write the files, remove stale ones; return one line per file."""
    pinned = pinned_botocore()
    if botocore.__version__ != pinned:
        raise SystemExit(
            f"botocore {botocore.__version__} is installed, the layer pins {pinned}: run `make install` first"
        )
    files = expected_files()
    output.mkdir(parents=True, exist_ok=True)
    for stale in sorted({path.name for path in output.glob("*.json")} - files.keys()):
        (output / stale).unlink()
    lines = []
    for name, text in files.items():
        (output / name).write_text(text, encoding="utf-8")
        document = json.loads(text)
        lines.append(
            f"{name}: {document['service']} {document['api_version']}, {len(document['model']['operations'])} "
            f"operations, {len(document['model']['shapes'])} shapes, {len(text.encode()):,} bytes"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=aws.SERVICE_MODELS_DIR)
    args = parser.parse_args(argv)
    for line in write(args.output):
        print(f"service-models: {line}")
    print(f"service-models: botocore {botocore.__version__}, written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
