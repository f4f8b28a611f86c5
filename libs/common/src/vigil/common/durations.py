"""Go-style durations (`90s`, `10m`, `1h30m`, `500ms`) as used in Workflow specs."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError naming the problem."""
    compact = text.strip()
    if not compact:
        raise ValueError("duration is empty")
    position = 0
    total = 0.0
    for part in _PART.finditer(compact):
        if part.start() != position:
            break
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if position != len(compact):
        msg = f"{text!r} is not a duration; use e.g. 500ms, 30s, 10m, 1h30m, 2d"
        raise ValueError(msg)
    return total
