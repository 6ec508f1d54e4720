"""The audit chain's hashing, as the controller computes it, for checking exports without the controller.

This must agree byte for byte with ``accessctl.audit`` (the controller's layer, which the client does
not install): ``record_hash`` is sha256 of the canonical JSON (sorted keys, compact separators, UTF-8
unescaped) of a stored record without its ``record_hash``; a stream's first record links to
``genesis_hash(stream)``. ``tests/audit/test_audit_client_hash.py`` holds the two to each other.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def plain(value: Any) -> Any:
    """Numbers read from DynamoDB are Decimals: hash them as the ints they were written as."""
    if isinstance(value, dict):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else str(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(item: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a stored record, ``record_hash`` itself excluded."""
    body = {key: value for key, value in plain(item).items() if key != "record_hash"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def genesis_hash(stream: str) -> str:
    """The ``previous_hash`` of a stream's first record (sequence 1)."""
    return hashlib.sha256(f"accessctl-audit-genesis#{stream}".encode()).hexdigest()
