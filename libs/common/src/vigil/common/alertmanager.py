"""The Alertmanager webhook payload (version 4) and the alert identity derived from it.

Alertmanager is a foreign producer: unknown fields are ignored (it may add some), but every
field Vigil relies on is validated, so a wrongly-shaped body is rejected with a message that
names the field instead of being half-accepted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

AlertStatus = Literal["firing", "resolved"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = b"\xff"


def label_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted name/value pairs.

    Used when a payload omits `fingerprint`, so the identity matches what Alertmanager
    itself would have sent.
    """
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), _SEPARATOR, labels[name].encode(), _SEPARATOR):
            for byte in part:
                digest ^= byte
                digest = (digest * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def _unicode_text(value: str) -> str:
    """Refuse a lone surrogate: JSON can carry one ("\\ud800"), Unicode text cannot, and it
    would fail later, when the alert is fingerprinted or published."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"holds a lone surrogate at position {exc.start}, which is not Unicode text"
        raise ValueError(msg) from exc
    return value


type Text = Annotated[str, AfterValidator(_unicode_text)]


class _Foreign(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class WebhookAlert(_Foreign):
    status: AlertStatus
    labels: dict[Text, Text]
    annotations: dict[Text, Text] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint: Text = ""

    def identity(self) -> str:
        return self.fingerprint or label_fingerprint(self.labels)


class WebhookPayload(_Foreign):
    """`POST` body of Alertmanager's webhook receiver, version 4."""

    # Alertmanager (and Mimir's, Cortex's) send "4"; Grafana Alerting's webhook contact
    # point sends "1" in the same shape, with extra fields (ignored).
    version: Literal["4", "1"] = "4"
    group_key: Text = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    status: AlertStatus
    receiver: Text = ""
    group_labels: dict[Text, Text] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[Text, Text] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[Text, Text] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    alerts: list[WebhookAlert] = Field(min_length=1)
