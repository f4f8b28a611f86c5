"""Go-style durations as written in Workflow specs."""

from __future__ import annotations

import pytest

from vigil.common.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2d", 172800.0),
        ("1h0m500ms", 3600.5),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("  45s ", 45.0),
    ],
)
def test_parses_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_duration_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="duration is empty"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["10", "ten minutes", "10x", "-5s", "1h 30m", "30s10", "m10", "1.h", "5M", "10mins"]
)
def test_malformed_duration_is_rejected_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; use e\.g\. 500ms, 30s"):
        parse_duration(text)
