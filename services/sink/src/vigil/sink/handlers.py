"""Sink handler: deliver a notify step to each of its sinks and publish the result.

Every delivery carries the idempotency key `{execution}/{step}/{attempt}/{sink}`, so a
receiver can drop the repeat of a redelivered step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter
from pydantic import JsonValue

from vigil.common import subjects
from vigil.common.adapters.jetstream import Delivery, JetStreamBus
from vigil.common.definitions import Definition, DefinitionsView
from vigil.common.durations import parse_duration
from vigil.common.errors import InvalidInput, PermanentError, TransientError
from vigil.common.messages import NotifyStep, StepRequest, StepResult
from vigil.common.resources import Sink
from vigil.sink.adapters.webhook import WebhookSender

log = structlog.get_logger(__name__)
notifications = structlog.get_logger("vigil.notifications")

DELIVERIES = Counter(
    "vigil_deliveries_total", "Deliveries by sink type and outcome.", ["type", "outcome"]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkHandlers:
    bus: JetStreamBus
    definitions: DefinitionsView
    webhook: WebhookSender
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def on_notify(self, request: StepRequest, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            execution_id=request.execution_id, step=request.step, attempt=request.attempt
        )
        notify = request.notify
        if notify is None:
            raise InvalidInput("notify step request without a `notify` body")
        started = self.clock()
        deliveries: list[JsonValue] = []
        errors: list[str] = []
        for name in notify.sinks:
            definition = self.definitions.sink(request.namespace, name)
            if definition is None:
                if not self.definitions.ready.is_set():
                    raise TransientError("definitions not loaded yet", retry_after=1.0)
                errors.append(f"sink {request.namespace}/{name} is not defined")
                deliveries.append({"sink": name, "status": "failed", "id": None})
                continue
            key = f"{request.idempotency_key}/{name}"
            try:
                await self._deliver(definition, request, notify, key)
            except TransientError as exc:
                if not delivery.is_last:
                    raise
                # Out of deliveries: report the failure so the execution does not hang.
                errors.append(f"sink {name}: gave up after {delivery.delivery} deliveries: {exc}")
                deliveries.append({"sink": name, "status": "failed", "id": key})
                DELIVERIES.labels(type=_type(definition), outcome="failed").inc()
            except PermanentError as exc:
                errors.append(f"sink {name}: {exc}")
                deliveries.append({"sink": name, "status": "failed", "id": key})
                DELIVERIES.labels(type=_type(definition), outcome="failed").inc()
            else:
                deliveries.append({"sink": name, "status": "delivered", "id": key})
                DELIVERIES.labels(type=_type(definition), outcome="delivered").inc()
        result = StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            outcome="failed" if errors else "succeeded",
            output={"deliveries": deliveries},
            error="; ".join(errors) or None,
            started_at=started,
            finished_at=self.clock(),
        )
        await self.bus.publish(
            subjects.results(), result, msg_id=f"{request.idempotency_key}/result"
        )
        log.info("notify_finished", outcome=result.outcome, sinks=len(notify.sinks))

    async def _deliver(
        self, definition: Definition, request: StepRequest, notify: NotifyStep, key: str
    ) -> None:
        sink = definition.resource
        assert isinstance(sink, Sink)
        spec = sink.spec
        if spec.type == "log":
            notifications.info(
                "notification",
                sink=sink.metadata.name,
                title=notify.title,
                message=notify.message,
                execution_id=request.execution_id,
                idempotency_key=key,
            )
            return
        if spec.type == "webhook" and spec.webhook is not None:
            hook = spec.webhook
            url = hook.url
            if hook.url_secret_ref is not None:
                url = definition.secret(hook.url_secret_ref.name, hook.url_secret_ref.key)
            assert url is not None
            await self.webhook.send(
                url,
                _webhook_body(request, notify, key),
                idempotency_key=key,
                headers=dict(hook.headers),
                timeout=parse_duration(hook.timeout),
            )
            return
        msg = f"sink type {spec.type} is not available in this build"
        raise PermanentError(msg)


def _type(definition: Definition) -> str:
    resource = definition.resource
    return resource.spec.type if isinstance(resource, Sink) else "unknown"


def _webhook_body(request: StepRequest, notify: NotifyStep, key: str) -> dict[str, JsonValue]:
    return {
        "title": notify.title,
        "message": notify.message,
        "alert": notify.alert.model_dump(mode="json", by_alias=True),
        "executionId": request.execution_id,
        "workflow": {"namespace": request.namespace, "name": request.workflow},
        "step": request.step,
        "attempt": request.attempt,
        "idempotencyKey": key,
    }
