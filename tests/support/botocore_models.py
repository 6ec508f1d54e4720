"""botocore's parsed data as the lean loader should give it, built the plain way: the reference the
loader (accessctl.aws) and the shipped service models are checked against."""

from __future__ import annotations

from typing import Any


def without_documentation(value: Any) -> Any:
    """``value`` less every string-valued ``documentation`` member, at any depth."""
    if isinstance(value, dict):
        return {
            key: without_documentation(inner)
            for key, inner in value.items()
            if not (key == "documentation" and isinstance(inner, str))
        }
    if isinstance(value, list):
        return [without_documentation(inner) for inner in value]
    return value
