"""How executions and alerts read to a person, the same in the console and the terminal:
durations in words, and the few labels that say most about an alert."""

from __future__ import annotations

# The labels that say most about an alert, in this order, after its name.
KEY_LABELS = ("severity", "namespace", "service", "job", "pod", "instance", "node", "cluster")
SHOWN_LABELS = 3


def duration_text(seconds: float | None) -> str:
    """`850 ms`, `4.2 s`, `3 m 05 s`, `2 h 14 m`; an empty string for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def key_labels(labels: dict[str, str]) -> list[tuple[str, str]]:
    """The few labels shown beside an alert's name."""
    shown = [(name, labels[name]) for name in KEY_LABELS if name in labels]
    return shown[:SHOWN_LABELS]
