"""The HTTP edge: webhooks in (`/hooks/{namespace}/{source}`), the read API, ops endpoints.

Status codes are promises to Alertmanager: 2xx only after JetStream acknowledged every alert
of the body; 5xx when that could not be ensured (Alertmanager retries); 4xx, with a message
naming the problem, when the request itself is wrong (Alertmanager drops it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ulid import ULID

from vigil.common import subjects
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.alertmanager import AlertStatus, WebhookPayload, label_fingerprint
from vigil.common.definitions import DefinitionsView
from vigil.common.documents import AlertFilter, Artifact, Execution, ExecutionFilter
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.matchers import parse_matcher
from vigil.common.messages import Alert, CancelRequested, ExecutionState, RunRequested
from vigil.common.ops import ReadinessCheck, ops_routes
from vigil.common.store import Store
from vigil.common.validation import format_validation_error
from vigil.ingest.alerts import alert_messages
from vigil.ingest.auth import authorized

log = structlog.get_logger(__name__)

ALERTS_RECEIVED = Counter(
    "vigil_alerts_received_total", "Alerts accepted (acknowledged by JetStream)."
)
ALERTS_DEDUPLICATED = Counter(
    "vigil_alerts_deduplicated_total", "Accepted alerts JetStream already had (re-sends)."
)
REQUESTS_REJECTED = Counter(
    "vigil_webhook_rejected_total", "Webhook requests answered 4xx or 5xx.", ["status"]
)

DnsLabel = Annotated[str, Path(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


CONSUMERS = (
    (subjects.ALERTS_STREAM, "engine"),
    (subjects.RESULTS_STREAM, "engine"),
    (subjects.STEPS_STREAM, "executor-cli"),
    (subjects.STEPS_STREAM, "sink-notify"),
)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


class ManualAlert(BaseModel):
    """The alert a manual run starts with; only `labels` is required."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: AlertStatus = "firing"
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    fingerprint: str | None = None

    def to_alert(self, now: datetime) -> Alert:
        return Alert(
            status=self.status,
            fingerprint=self.fingerprint or label_fingerprint(self.labels),
            labels=self.labels,
            annotations=self.annotations,
            starts_at=self.starts_at or now,
        )


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    REQUESTS_REJECTED.labels(status=str(status)).inc()
    return JSONResponse({"error": message, **extra}, status_code=status)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingest:
    bus: JetStreamBus
    store: Store
    definitions: DefinitionsView
    max_body_bytes: int
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def receive(self, namespace: str, source: str, request: Request) -> JSONResponse:
        if not self.definitions.ready.is_set():
            return _error(503, "definitions are not loaded yet; retry shortly")
        definition = self.definitions.source_definition(namespace, source)
        if definition is None:
            return _error(404, f"no Source {namespace}/{source} is defined")
        if not authorized(definition, request.headers.get("authorization")):
            return _error(401, f"Source {namespace}/{source} requires valid credentials")
        body = await request.body()
        if len(body) > self.max_body_bytes:
            return _error(413, f"body is larger than {self.max_body_bytes} bytes")
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        try:
            payload = WebhookPayload.model_validate(document)
        except ValidationError as exc:
            return _error(
                422,
                "body is not an Alertmanager webhook payload (version 4): "
                + format_validation_error(exc),
            )
        messages = alert_messages(
            payload, namespace=namespace, source=source, received_at=self.clock()
        )
        try:
            new = await self.bus.publish_all(messages)
        except TransientError as exc:
            log.warning("alerts_not_accepted", source=source, error=str(exc))
            response = _error(503, f"alerts could not be stored durably: {exc}")
            response.headers["Retry-After"] = "1"
            return response
        ALERTS_RECEIVED.inc(len(messages))
        ALERTS_DEDUPLICATED.inc(len(messages) - new)
        log.info(
            "alerts_accepted", namespace=namespace, source=source, alerts=len(messages), new=new
        )
        return JSONResponse({"accepted": len(messages), "new": new}, status_code=200)


def build_app(ingest: Ingest, *, checks: Mapping[str, ReadinessCheck]) -> FastAPI:
    app = FastAPI(
        title="Vigil",
        summary="Alert-response platform: webhooks in, executions out.",
        version="0.1.0",
        routes=ops_routes(checks),
    )

    @app.post("/hooks/{namespace}/{source}", tags=["webhooks"], status_code=200)
    async def receive_alerts(
        namespace: DnsLabel, source: DnsLabel, request: Request
    ) -> JSONResponse:
        """Receive an Alertmanager webhook (v4) for Source `namespace/source`."""
        return await ingest.receive(namespace, source, request)

    @app.get("/api/v1/executions", tags=["executions"])
    async def list_executions(
        namespace: str | None = None,
        workflow: str | None = None,
        state: ExecutionState | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Executions, newest first; pass `next` back as `cursor` for the next page."""
        page = await ingest.store.list_executions(
            ExecutionFilter(namespace=namespace, workflow=workflow, state=state),
            limit=limit,
            cursor=cursor,
        )
        return {
            "items": [e.model_dump(mode="json", by_alias=True) for e in page.items],
            "next": page.next,
        }

    @app.get("/api/v1/executions/{execution_id}", tags=["executions"], response_model=None)
    async def get_execution(execution_id: str) -> Execution | JSONResponse:
        """One execution with its steps, their state and output."""
        found = await ingest.store.get_execution(execution_id)
        if found is None:
            return JSONResponse({"error": f"no execution {execution_id}"}, status_code=404)
        return found

    @app.post(
        "/api/v1/executions/{execution_id}/cancel",
        tags=["executions"],
        status_code=202,
        response_model=None,
    )
    async def cancel_execution(
        execution_id: str, body: CancelBody | None = None
    ) -> dict[str, Any] | JSONResponse:
        """Cancel a running execution: its running step is stopped, nothing further runs."""
        found = await ingest.store.get_execution(execution_id)
        if found is None:
            return JSONResponse({"error": f"no execution {execution_id}"}, status_code=404)
        if found.finished:
            return JSONResponse(
                {"error": f"execution {execution_id} already finished ({found.state})"},
                status_code=409,
            )
        reason = (body.reason if body else None) or "cancelled through the API"
        await ingest.bus.publish(
            subjects.control("cancel"),
            CancelRequested(execution_id=execution_id, reason=reason, requested_at=ingest.clock()),
            msg_id=f"cancel/{execution_id}",
        )
        return {"id": execution_id, "state": found.state, "cancelRequested": True}

    @app.post(
        "/api/v1/workflows/{namespace}/{name}/run",
        tags=["workflows"],
        status_code=202,
        response_model=None,
    )
    async def run_workflow(
        namespace: DnsLabel, name: DnsLabel, alert: ManualAlert
    ) -> dict[str, Any] | JSONResponse:
        """Start workflow `namespace/name` now with this alert; matching is not applied."""
        if ingest.definitions.workflow(namespace, name) is None:
            return JSONResponse({"error": f"no Workflow {namespace}/{name}"}, status_code=404)
        execution_id = str(ULID())
        await ingest.bus.publish(
            subjects.control("run"),
            RunRequested(
                execution_id=execution_id,
                namespace=namespace,
                workflow=name,
                alert=alert.to_alert(ingest.clock()),
                requested_at=ingest.clock(),
            ),
            msg_id=f"run/{execution_id}",
        )
        return {"executionId": execution_id}

    @app.get("/api/v1/stats", tags=["operations"])
    async def stats() -> dict[str, Any]:
        """Alerts received and recorded, executions by state, consumer lag per stream."""
        consumers = [
            await ingest.bus.consumer_stats(stream, durable) for stream, durable in CONSUMERS
        ]
        alerts = next(c for c in consumers if c.stream == subjects.ALERTS_STREAM)
        return {
            "alerts": {"received": alerts.stream_messages, "recorded": alerts.acknowledged},
            "executions": await ingest.store.count_executions(),
            "consumers": [
                {
                    "stream": c.stream,
                    "consumer": c.consumer,
                    "lag": c.lag,
                    "pending": c.pending,
                    "inFlight": c.in_flight,
                }
                for c in consumers
                if c.exists
            ],
        }

    @app.get("/api/v1/executions/{execution_id}/deliveries", tags=["executions"])
    async def execution_deliveries(execution_id: str) -> dict[str, Any]:
        """Every notification delivery attempt of an execution, oldest first."""
        found = await ingest.store.deliveries(execution_id=execution_id)
        return {"items": [d.model_dump(mode="json") for d in found]}

    @app.get("/api/v1/artifacts/{artifact_id:path}", tags=["executions"], response_model=None)
    async def get_artifact(artifact_id: str) -> Artifact | JSONResponse:
        """A large step output (full logs) linked from a step's `output.artifactId`."""
        found = await ingest.store.get_artifact(artifact_id)
        if found is None:
            return JSONResponse({"error": f"no artifact {artifact_id}"}, status_code=404)
        return found

    @app.get("/api/v1/alerts", tags=["alerts"], response_model=None)
    async def list_alerts(
        namespace: str | None = None,
        source: str | None = None,
        status: AlertStatus | None = None,
        match: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any] | JSONResponse:
        """Alert history, most recently seen first.

        `match` takes Alertmanager matchers over labels and may repeat, e.g.
        `?match=severity=~"critical|warning"&match=team="db"`.
        """
        try:
            query = AlertFilter(
                namespace=namespace, source=source, status=status, matchers=match or []
            )
            for matcher in query.matchers:
                parse_matcher(matcher)
        except InvalidInput as exc:
            return JSONResponse({"error": f"match: {exc}"}, status_code=400)
        page = await ingest.store.list_alerts(query, limit=limit, cursor=cursor)
        return {"items": [a.model_dump(mode="json") for a in page.items], "next": page.next}

    @app.get("/api/v1/alerts/{alert_id:path}", tags=["alerts"], response_model=None)
    async def get_alert(alert_id: str) -> dict[str, Any] | JSONResponse:
        """One alert (`namespace/source/fingerprint`) with the executions it started."""
        found = await ingest.store.get_alert(alert_id)
        if found is None:
            return JSONResponse({"error": f"no alert {alert_id}"}, status_code=404)
        started = await ingest.store.list_executions(ExecutionFilter(alert_id=alert_id), limit=100)
        return {
            **found.model_dump(mode="json"),
            "executions": [
                {"id": e.id, "workflow": e.workflow, "state": e.state, "created_at": e.created_at}
                for e in started.items
            ],
        }

    @app.get("/api/v1/definitions", tags=["definitions"])
    async def list_definitions() -> dict[str, Any]:
        """Every definition the controller saw, valid or not, with its validation message."""
        return {"items": [s.model_dump(mode="json") for s in ingest.definitions.statuses()]}

    @app.exception_handler(TransientError)
    async def transient(_: Request, exc: Exception) -> JSONResponse:
        response = JSONResponse({"error": str(exc)}, status_code=503)
        response.headers["Retry-After"] = "1"
        return response

    return app
