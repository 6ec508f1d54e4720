"""Duration parsing: the forms the CLI accepts for --duration, and the ones it refuses."""

from __future__ import annotations

import pytest

from accessctl_client import parse_duration


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("15m", 15),
        ("2h", 120),
        ("1h30m", 90),
        ("90", 90),
        ("1", 1),
        (" 45 ", 45),
        ("1H", 60),
        ("0h5m", 5),
        ("90m", 90),
        ("720", 720),  # the server enforces its own upper bound
    ],
)
def test_given_a_supported_form_when_parsing_then_it_is_whole_minutes(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "0",
        "0m",
        "0h0m",
        "15s",
        "1.5h",
        "1d",
        "h",
        "m",
        "hm",
        "-5",
        "+5",
        "30m1h",
        "1h 30m",
        "15 m",
        "²",
        "PT15M",
    ],
)
def test_given_an_unsupported_form_when_parsing_then_a_clear_error_is_raised(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*(15m, 2h, 1h30m|at least 1 minute)"):
        parse_duration(text)
