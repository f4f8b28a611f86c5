"""Request and response bodies of the HTTP API (what `/docs` shows), in camelCase.

Documents (`Execution`, `AlertRecord`, `DeliveryRecord`, `Artifact`) are shown as they are
stored, under their camelCase aliases; the models here are the API's own envelopes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from vigil.common.alertmanager import AlertStatus, label_fingerprint
from vigil.common.definitions import DefinitionStatus
from vigil.common.documents import AlertRecord, DeliveryRecord, Execution
from vigil.common.messages import Alert, ExecutionState


def _unicode(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        msg = "holds invalid Unicode (a lone surrogate)"
        raise ValueError(msg) from None
    return value


# Request text: JSON may carry a lone surrogate (`"\ud800"`), which no message can.
type Text = Annotated[str, AfterValidator(_unicode)]


class View(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class ErrorBody(View):
    """Every 4xx and 5xx answer: what is wrong, in a sentence."""

    error: str


class AlertsAccepted(View):
    accepted: int = Field(description="Alerts in the body, all stored durably.")
    new: int = Field(description="Of those, the ones not seen before (the rest are re-sends).")


class CancelBody(View):
    reason: Text | None = Field(default=None, max_length=1000)


class CancelAccepted(View):
    id: str
    state: ExecutionState
    cancel_requested: bool


class ManualAlert(View):
    """The alert a manual run starts with; only `labels` is required."""

    labels: dict[Text, Text] = Field(min_length=1)
    annotations: dict[Text, Text] = Field(default_factory=dict)
    status: AlertStatus = "firing"
    starts_at: datetime | None = None
    fingerprint: Text | None = None

    def to_alert(self, now: datetime) -> Alert:
        return Alert(
            status=self.status,
            fingerprint=self.fingerprint or label_fingerprint(self.labels),
            labels=self.labels,
            annotations=self.annotations,
            starts_at=self.starts_at or now,
        )


class RunAccepted(View):
    execution_id: str


class AlertCounts(View):
    received: int = Field(description="Alerts the ALERTS stream ever stored.")
    recorded: int = Field(description="Of those, the ones the engine has recorded.")


class ConsumerLag(View):
    stream: str
    consumer: str
    lag: int
    pending: int
    in_flight: int


class Stats(View):
    alerts: AlertCounts
    executions: dict[str, int] = Field(description="Executions by state.")
    consumers: list[ConsumerLag]


class DeliveryList(View):
    items: list[DeliveryRecord]


class ExecutionSummary(View):
    id: str
    workflow: str
    state: ExecutionState
    created_at: datetime


class AlertDetail(AlertRecord):
    """An alert's history with the executions it started."""

    executions: list[ExecutionSummary]


class DefinitionList(View):
    items: list[DefinitionStatus]


class ExecutionDetail(Execution):
    """An execution as the API shows it: the document, and a link to its trace."""

    trace_url: str | None = Field(
        default=None,
        description="The execution's trace in the trace UI (VIGIL_TRACE_URL); null when "
        "no trace UI is configured or the execution has no trace id.",
    )
