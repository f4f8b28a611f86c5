"""Sink handler: deliver a notify step to each of its sinks and publish the result.

Every delivery carries the idempotency key `{execution}/{step}/{attempt}/{sink}`, so a
receiver can drop the repeat of a redelivered step. How one delivery is made, retried and
recorded is `vigil.sink.delivering`.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from opentelemetry import trace
from pydantic import JsonValue

from vigil.common import subjects
from vigil.common.bus import Delivery, Publisher
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.messages import StepRequest, StepResult
from vigil.common.metrics import observe_step, start_timing
from vigil.sink.delivering import DeliveryLoop
from vigil.sink.notifiers import Notification

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("vigil.sink")
# A notify step's output keeps the start of its message: enough to recognise it.
NOTIFICATION_SHOWN_CHARS = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkHandlers:
    bus: Publisher
    definitions: DefinitionsView
    deliveries: DeliveryLoop
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        start_timing(["notify"])

    async def on_notify(self, request: StepRequest, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            execution_id=request.execution_id, step=request.step, attempt=request.attempt
        )
        notify = request.notify
        if notify is None:
            raise InvalidInput("notify step request without a `notify` body")
        started = self.clock.now()
        deliveries: list[JsonValue] = []
        errors: list[str] = []
        for name in notify.sinks:
            key = f"{request.idempotency_key}/{name}"
            definition = self.definitions.sink(request.namespace, name)
            if definition is None:
                if not self.definitions.ready.is_set():
                    raise TransientError("definitions not loaded yet", retry_after=1.0)
                error: str | None = f"sink {request.namespace}/{name} is not defined"
            else:
                notification = Notification(
                    sink=definition, request=request, notify=notify, idempotency_key=key
                )
                with tracer.start_as_current_span(
                    f"deliver {notification.sink_type}",
                    attributes={"vigil.sink.name": name, "vigil.step.name": request.step},
                ) as span:
                    error = await self.deliveries.deliver(notification, delivery)
                    if error is not None:
                        span.set_status(trace.StatusCode.ERROR, error)
            if error is not None:
                errors.append(error)
            deliveries.append(
                {"sink": name, "status": "failed" if error else "delivered", "id": key}
            )
        result = StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            outcome="failed" if errors else "succeeded",
            # What was sent, as rendered (the message cut to what a page shows), and where.
            output={
                "title": notify.title,
                "message": notify.message[:NOTIFICATION_SHOWN_CHARS],
                "deliveries": deliveries,
            },
            error="; ".join(errors) or None,
            started_at=started,
            finished_at=self.clock.now(),
        )
        await self.bus.publish(
            subjects.results(), result, msg_id=f"{request.idempotency_key}/result"
        )
        seconds = (result.finished_at - result.started_at).total_seconds()
        observe_step(kind=request.kind, outcome=result.outcome, seconds=seconds)
        log.info("notify_finished", outcome=result.outcome, sinks=len(notify.sinks))
