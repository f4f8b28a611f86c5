"""How large the labels and annotations of one alert may be.

Each label and annotation, name or value, is at most `max_label_bytes`; all of an alert's
labels and annotations together at most `max_alert_label_bytes`; the same two limits hold
for the group context every alert carries (`groupLabels`, `commonLabels`,
`commonAnnotations`). Sizes are UTF-8 bytes. `Ingest.receive` checks the whole body
before publishing any of it, so a body over a limit is refused whole, with a 413 naming
the alert and the key: a body that can never be accepted must not be answered 5xx, which
Alertmanager retries forever. The bus's own largest message (`max_payload`) is checked
by the bus as it publishes (`MessageTooLarge`); these limits keep an alert well below it
and name what is too large.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from vigil.common.errors import InvalidInput
from vigil.common.messages import Alert
from vigil.ingest.sources import AlertBatch

SHOWN_KEY_CHARACTERS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertLimits:
    max_label_bytes: int = 16 * 1024
    max_alert_label_bytes: int = 64 * 1024


class AlertTooLarge(InvalidInput):
    """A label, an annotation, or all of an alert's, over its limit (a 413)."""

    def __init__(self, message: str, *, reason: Literal["label_too_large", "labels_too_large"]):
        super().__init__(message)
        self.reason: Literal["label_too_large", "labels_too_large"] = reason


def check_alert_sizes(batch: AlertBatch, limits: AlertLimits) -> None:
    """Raises AlertTooLarge naming the first alert (`alerts[i]`) and key over a limit."""
    group = batch.group
    _check(
        "",
        {
            "groupLabels": group.labels,
            "commonLabels": group.common_labels,
            "commonAnnotations": group.common_annotations,
        },
        limits,
        whole="the group's labels and annotations (groupLabels, commonLabels, commonAnnotations)",
    )
    for index, alert in enumerate(batch.alerts):
        check_alert(alert, limits, where=f"alerts[{index}]")


def check_alert(alert: Alert, limits: AlertLimits, *, where: str) -> None:
    """Raises AlertTooLarge naming `where` and the key over a limit."""
    _check(
        f"{where}.",
        {"labels": alert.labels, "annotations": alert.annotations},
        limits,
        whole=f"{where}: its labels and annotations",
    )


def _check(
    prefix: str, fields: Mapping[str, Mapping[str, str]], limits: AlertLimits, *, whole: str
) -> None:
    total = 0
    for field, entries in fields.items():
        for key, value in entries.items():
            name_bytes, value_bytes = len(key.encode()), len(value.encode())
            if max(name_bytes, value_bytes) > limits.max_label_bytes:
                part, size = (
                    ("name", name_bytes) if name_bytes > value_bytes else ("value", value_bytes)
                )
                msg = (
                    f"{prefix}{field}.{_shown(key)}: the {part} is {size} bytes, over the "
                    f"limit of {limits.max_label_bytes} bytes per label or annotation"
                )
                raise AlertTooLarge(msg, reason="label_too_large")
            total += name_bytes + value_bytes
    if total > limits.max_alert_label_bytes:
        msg = (
            f"{whole} are {total} bytes together, over the limit of "
            f"{limits.max_alert_label_bytes} bytes"
        )
        raise AlertTooLarge(msg, reason="labels_too_large")


def _shown(key: str) -> str:
    """A key as an error names it: a huge one cut short, never echoed whole."""
    if len(key) <= SHOWN_KEY_CHARACTERS:
        return key
    return key[:SHOWN_KEY_CHARACTERS] + "…"
