"""Parsing of human durations (``15m``, ``2h``, ``1h30m``, ``90``) into whole minutes."""

from __future__ import annotations

import re

# ASCII only: str.isdigit() and a Unicode \d would accept digits such as "²" that int() then rejects.
_MINUTES = re.compile(r"\d+", re.ASCII)
_DURATION = re.compile(r"(?:(?P<hours>\d+)h)?(?:(?P<minutes>\d+)m)?", re.ASCII)


def parse_duration(text: str) -> int:
    """Return the number of minutes in ``text``.

    Accepts bare minutes (``90``), ``15m``, ``2h`` and ``1h30m`` (case-insensitive, surrounding spaces
    ignored). Raises ``ValueError`` with a message fit for a person otherwise, including for zero.
    """
    value = text.strip().lower()
    if _MINUTES.fullmatch(value):
        minutes = int(value)
    else:
        match = _DURATION.fullmatch(value)
        if not value or match is None or not any(match.groupdict().values()):
            raise ValueError(f"invalid duration {text!r}: use minutes (90) or a form like 15m, 2h, 1h30m")
        minutes = int(match["hours"] or 0) * 60 + int(match["minutes"] or 0)
    if minutes < 1:
        raise ValueError(f"invalid duration {text!r}: must be at least 1 minute")
    return minutes
