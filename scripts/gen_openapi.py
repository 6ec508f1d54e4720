"""Generate docs/openapi.json from the API function's resolver (the routes and models it serves).

python scripts/gen_openapi.py          # rewrite docs/openapi.json
python scripts/gen_openapi.py --check  # exit 1 if the committed document has drifted
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT / "docs" / "openapi.json"


def generate() -> str:
    # The resolver reads no AWS state at import; table names only need to be present.
    for name in ("GRANTS_TABLE", "AUDIT_TABLE"):
        os.environ.setdefault(name, "unused")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sys.path.insert(0, str(ROOT / "layers" / "accessctl"))
    spec = importlib.util.spec_from_file_location("accessctl_api_app", ROOT / "functions" / "api" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schema = module.openapi_schema()
    return json.dumps(json.loads(schema), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/openapi.json is out of date")
    args = parser.parse_args()
    document = generate()
    if args.check:
        if not OPENAPI.exists() or OPENAPI.read_text(encoding="utf-8") != document:
            print("docs/openapi.json is out of date: run `make openapi` and commit it", file=sys.stderr)
            return 1
        return 0
    OPENAPI.write_text(document, encoding="utf-8")
    print(f"wrote {OPENAPI.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
