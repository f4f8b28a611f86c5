"""Sink handler: deliver a notify step to each of its sinks and publish the result.

Every delivery carries the idempotency key `{execution}/{step}/{attempt}/{sink}`, so a
receiver can drop the repeat of a redelivered step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog
from prometheus_client import Counter
from pydantic import JsonValue

from vigil.common import subjects
from vigil.common.adapters.jetstream import Delivery, JetStreamBus
from vigil.common.definitions import Definition, DefinitionsView
from vigil.common.documents import DeliveryRecord
from vigil.common.durations import parse_duration
from vigil.common.errors import InvalidInput, PermanentError, TransientError
from vigil.common.messages import NotifyStep, StepRequest, StepResult
from vigil.common.resources import Sink
from vigil.common.store import Store
from vigil.sink.adapters.webhook import WebhookSender

log = structlog.get_logger(__name__)
notifications = structlog.get_logger("vigil.notifications")

DELIVERIES = Counter(
    "vigil_deliveries_total", "Deliveries by sink type and outcome.", ["type", "outcome"]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkHandlers:
    bus: JetStreamBus
    store: Store
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
            key = f"{request.idempotency_key}/{name}"
            definition = self.definitions.sink(request.namespace, name)
            if definition is None:
                if not self.definitions.ready.is_set():
                    raise TransientError("definitions not loaded yet", retry_after=1.0)
                errors.append(f"sink {request.namespace}/{name} is not defined")
                deliveries.append({"sink": name, "status": "failed", "id": key})
                continue
            error = await self._deliver_once(definition, request, notify, key, delivery)
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
            output={"deliveries": deliveries},
            error="; ".join(errors) or None,
            started_at=started,
            finished_at=self.clock(),
        )
        await self.bus.publish(
            subjects.results(), result, msg_id=f"{request.idempotency_key}/result"
        )
        log.info("notify_finished", outcome=result.outcome, sinks=len(notify.sinks))

    async def _deliver_once(
        self,
        definition: Definition,
        request: StepRequest,
        notify: NotifyStep,
        key: str,
        delivery: Delivery,
    ) -> str | None:
        """Deliver unless a delivery with this key already succeeded; record the attempt.

        Returns None when delivered, or the reason it failed for good. Raises
        TransientError (the step is redelivered) while deliveries are left.
        """
        previous = await self.store.deliveries(idempotency_key=key)
        if any(d.status == "delivered" for d in previous):
            log.info("delivery_already_done", sink=definition.resource.metadata.name, key=key)
            return None
        attempt = len(previous) + 1
        sink_type = _type(definition)
        outcome: Literal["delivered", "failed"]
        detail: str | None
        try:
            await self._deliver(definition, request, notify, key)
        except TransientError as exc:
            if not delivery.is_last:
                await self._record(
                    request, definition, key, attempt=attempt, status="retrying", detail=str(exc)
                )
                raise
            # Out of deliveries: report the failure so the execution does not hang.
            reason = f"gave up after {delivery.delivery} deliveries: {exc}"
            outcome, detail = "failed", reason
        except PermanentError as exc:
            outcome, detail = "failed", str(exc)
        else:
            outcome, detail = "delivered", None
        await self._record(request, definition, key, attempt=attempt, status=outcome, detail=detail)
        DELIVERIES.labels(type=sink_type, outcome=outcome).inc()
        return None if detail is None else f"sink {definition.resource.metadata.name}: {detail}"

    async def _record(
        self,
        request: StepRequest,
        definition: Definition,
        key: str,
        *,
        attempt: int,
        status: Literal["delivered", "failed", "retrying"],
        detail: str | None,
    ) -> None:
        await self.store.record_delivery(
            DeliveryRecord(
                id=f"{key}#{attempt}",
                idempotency_key=key,
                execution_id=request.execution_id,
                step=request.step,
                sink=definition.resource.metadata.name,
                sink_type=_type(definition),
                attempt=attempt,
                status=status,
                detail=detail,
                at=self.clock(),
            )
        )

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
