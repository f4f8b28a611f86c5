"""The HTTP app of ingest: webhooks in (`vigil.ingest.hooks`), the read and operate API,
the ops endpoints. Every `/api/v1` answer has a response model (`vigil.ingest.views`), so
`/docs` shows real schemas; JSON keys are camelCase throughout. Every error is an
`ErrorBody` (`{"error": "..."}`), FastAPI's own request validation and routing errors too,
and every refusal is counted by reason (`vigil.ingest.rejections`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette import types as asgi
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from ulid import ULID

from vigil.common import subjects
from vigil.common.adapters.consumer_metrics import refresh_consumer_lag
from vigil.common.adapters.ops import ReadinessCheck, ops_routes
from vigil.common.alertmanager import AlertStatus, WebhookPayload
from vigil.common.documents import (
    AlertFilter,
    AlertPage,
    Artifact,
    ExecutionFilter,
    ExecutionPage,
)
from vigil.common.errors import InvalidInput, MessageTooLarge, TransientError
from vigil.common.matchers import parse_matcher
from vigil.common.messages import CancelRequested, ExecutionState, RunRequested
from vigil.common.streams import MONITORED
from vigil.ingest.access import RequireTokens, TokenSource, required_scope
from vigil.ingest.alert_limits import AlertTooLarge, check_alert
from vigil.ingest.console.live import LiveEvents
from vigil.ingest.console.pages import MAX_SEARCH_CHARS, SINCE, Console, ExecutionScan
from vigil.ingest.hooks import Ingest
from vigil.ingest.rejections import Reason, count_rejection
from vigil.ingest.statuses import definition_statuses
from vigil.ingest.views import (
    AlertCounts,
    AlertDetail,
    AlertsAccepted,
    CancelAccepted,
    CancelBody,
    ConsumerLag,
    DefinitionList,
    DeliveryList,
    ErrorBody,
    ExecutionDetail,
    ExecutionSummary,
    ManualAlert,
    RunAccepted,
    Stats,
)

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Path(pattern=DNS_LABEL, max_length=63)]
_IS_DNS_LABEL = re.compile(DNS_LABEL).fullmatch  # not `match`: its `$` lets "ops\n" through
Limit = Annotated[int, Query(ge=1, le=500)]
Since = Literal["15m", "1h", "6h", "24h", "7d"]

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
ERROR_CONTENT = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
}


class WebhookRoute:
    """ASGI app of `POST /hooks/{namespace}/{source}` without FastAPI's request handling;
    a path whose names are not DNS labels goes to `invalid` (FastAPI's 422)."""

    def __init__(self, ingest: Ingest, invalid: asgi.ASGIApp) -> None:
        self._ingest = ingest
        self._invalid = invalid

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        namespace, source = scope["path_params"]["namespace"], scope["path_params"]["source"]
        if not (_dns_label(namespace) and _dns_label(source)):
            await self._invalid(scope, receive, send)
            return
        response = await self._ingest.receive(namespace, source, Request(scope, receive, send))
        await response(scope, receive, send)


def _dns_label(name: str) -> bool:
    return len(name) <= 63 and _IS_DNS_LABEL(name) is not None


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # A message may quote the request, and a lone surrogate in it could not be encoded.
    printable = message.encode("utf-8", "backslashreplace").decode()
    return JSONResponse(
        ErrorBody(error=printable).model_dump(), status_code=status, headers=headers
    )


def _refused(
    status: int, reason: Reason, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    count_rejection(reason)
    return _error(status, message, headers)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """FastAPI's request validation errors as one sentence naming each field, e.g.
    `query parameter limit: Input should be a valid integer, unable to parse string as an
    integer` or `body.labels: Field required`."""
    parts = []
    for error in errors:
        where, *path = error.get("loc", ("request",))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            detail = error.get("ctx", {}).get("error", "")
            parts.append(f"body is not valid JSON: {detail} at character {path[0] if path else 0}")
            continue
        if where in {"query", "path", "header", "cookie"}:
            parts.append(f"{where} parameter {'.'.join(map(str, path))}: {message}")
            continue
        location = "".join(f"[{item}]" if isinstance(item, int) else f".{item}" for item in path)
        parts.append(f"{where}{location}: {message}")
    return "; ".join(parts)


def build_app(
    ingest: Ingest,
    *,
    checks: Mapping[str, ReadinessCheck],
    tokens: TokenSource | None,
    live: LiveEvents | None = None,
) -> FastAPI:
    """The app; `tokens` None serves the API without authentication (`--no-auth`); `live`
    feeds the console's open pages (the composition root subscribes it to the events)."""
    app = FastAPI(
        title="Vigil",
        summary="Alert-response platform: webhooks in, executions out.",
        version="0.1.0",
        # Each scrape reads the consumers' lag from the bus (ingest may ask; see /stats).
        routes=ops_routes(
            checks, before_scrape=partial(refresh_consumer_lag, ingest.bus, MONITORED)
        ),
    )

    @app.post(
        "/hooks/{namespace}/{source}",
        tags=["webhooks"],
        response_model=AlertsAccepted,
        responses={code: {"model": ErrorBody} for code in (400, 401, 404, 408, 413, 415, 422, 503)},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}
                },
            }
        },
    )
    async def receive_alerts(
        namespace: DnsLabel, source: DnsLabel, request: Request
    ) -> JSONResponse:
        """Receive a webhook for Source `namespace/source` (Alertmanager v4 for its type)."""
        return await ingest.receive(namespace, source, request)

    # Served first by a plain route: FastAPI's request handling (dependencies, parameter
    # models) cost ~0.25 ms CPU per single-alert webhook. The route above stays for /docs
    # and answers the 422 of a path that is no DNS label, exactly as before.
    documented = app.router.routes[-1]
    assert isinstance(documented, APIRoute), "the webhook route was just added"
    served = Route(documented.path, WebhookRoute(ingest, documented.app), methods=["POST"])
    app.router.routes.insert(0, served)

    app.include_router(_executions(ingest))
    app.include_router(_alerts_and_definitions(ingest))
    Console(ingest=ingest, tokens=tokens, live=live or LiveEvents()).install(app)

    _answer_errors_as_error_bodies(app)
    if tokens is not None:
        app.add_middleware(RequireTokens, tokens=tokens)
    _document_errors(app, bearer=tokens is not None)
    # The server span of each request: where an alert's trace starts.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
    )
    return app


def _answer_errors_as_error_bodies(app: FastAPI) -> None:
    @app.exception_handler(TransientError)
    async def transient(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _refused(422, "invalid_request", describe_validation_errors(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _refused(404, "no_route", f"no such path: {request.url.path}", exc.headers)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            return _refused(405, "no_route", message, exc.headers)
        if isinstance(exc.__cause__, ClientDisconnect):  # gone: nobody reads this answer
            return _error(400, "the client left before sending its body")
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's "error parsing the body"
            return _refused(400, "invalid_request", "body is nested too deeply", exc.headers)
        if exc.status_code < 500:
            return _refused(exc.status_code, "invalid_request", str(exc.detail), exc.headers)
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(MessageTooLarge)
    async def too_large_for_the_bus(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MessageTooLarge)
        message = (
            f"the request makes a message of {exc.size} bytes, over the bus's largest "
            f"({exc.limit} bytes)"
        )
        return _refused(413, "over_max_payload", message)


def _document_errors(app: FastAPI, *, bearer: bool) -> None:
    """Say in the OpenAPI document that a 422 is an ErrorBody, what a webhook's body is (the
    handler reads it itself, after its limits) and, with `bearer`, which operations need a
    token, and with which scope."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        components = schema.setdefault("components", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        webhook = WebhookPayload.model_json_schema(ref_template="#/components/schemas/{model}")
        components.setdefault("schemas", {}).update(webhook.pop("$defs", {}))
        components["schemas"]["WebhookPayload"] = webhook
        if bearer:
            components["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token; GET needs scope `read`, POST scope `operate`.",
                }
            }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = {"description": "The request is not valid.", **ERROR_CONTENT}
                needed = required_scope(method.upper(), path) if bearer else None
                if needed is None:
                    continue
                operation["security"] = [{"bearer": [needed]}]
                responses.update(
                    {
                        "401": {"description": "No valid bearer token.", **ERROR_CONTENT},
                        "403": {"description": f"The token lacks scope {needed}.", **ERROR_CONTENT},
                    }
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _executions(ingest: Ingest) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.get("/executions", tags=["executions"])
    async def list_executions(
        namespace: str | None = None,
        workflow: str | None = None,
        state: ExecutionState | None = None,
        q: Annotated[str | None, Query(max_length=MAX_SEARCH_CHARS)] = None,
        since: Since | None = None,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """Executions, newest first; pass `next` back as `cursor` for the next page.

        `q` keeps those whose alert has a label containing it (`name=value`, any case);
        `since` those started in the last `15m`, `1h`, `6h`, `24h` or `7d`. With either, a
        page examines at most 2,000 executions: it may come back short with `next` set.
        """
        scan = ExecutionScan(
            query=ExecutionFilter(namespace=namespace, workflow=workflow, state=state),
            text=q.strip() if q and q.strip() else None,
            since=ingest.clock.now() - SINCE[since] if since else None,
            limit=limit,
        )
        items, resume = await scan.page(ingest.store, cursor)
        return ExecutionPage(items=items, next=resume)

    @router.get(
        "/executions/{execution_id}",
        tags=["executions"],
        response_model=ExecutionDetail,
        responses=NOT_FOUND,
    )
    async def get_execution(execution_id: str) -> ExecutionDetail | JSONResponse:
        """One execution with its steps, their state and output, and its trace's link."""
        found = await ingest.store.get_execution(execution_id)
        if found is None:
            return _error(404, f"no execution {execution_id}")
        link = None
        if ingest.trace_url is not None and found.trace_id is not None:
            link = ingest.trace_url.replace("{trace_id}", found.trace_id)
        return ExecutionDetail(**dict(found), trace_url=link)

    @router.post(
        "/executions/{execution_id}/cancel",
        tags=["executions"],
        status_code=202,
        response_model=CancelAccepted,
        responses={**NOT_FOUND, 409: {"model": ErrorBody}},
    )
    async def cancel_execution(
        execution_id: str, body: CancelBody | None = None
    ) -> CancelAccepted | JSONResponse:
        """Cancel a running execution: its running step is stopped, nothing further runs."""
        found = await ingest.store.get_execution(execution_id)
        if found is None:
            return _error(404, f"no execution {execution_id}")
        if found.finished:
            return _error(409, f"execution {execution_id} already finished ({found.state})")
        reason = (body.reason if body else None) or "cancelled through the API"
        await ingest.bus.publish(
            subjects.control("cancel"),
            CancelRequested(
                execution_id=execution_id, reason=reason, requested_at=ingest.clock.now()
            ),
            msg_id=f"cancel/{execution_id}",
        )
        return CancelAccepted(id=execution_id, state=found.state, cancel_requested=True)

    @router.get("/executions/{execution_id}/deliveries", tags=["executions"])
    async def execution_deliveries(execution_id: str) -> DeliveryList:
        """Every notification delivery attempt of an execution, oldest first."""
        return DeliveryList(items=await ingest.store.deliveries(execution_id=execution_id))

    @router.get(
        "/artifacts/{artifact_id:path}",
        tags=["executions"],
        response_model=Artifact,
        responses=NOT_FOUND,
    )
    async def get_artifact(artifact_id: str) -> Artifact | JSONResponse:
        """A large step output (full logs) linked from a step's `output.artifactId`."""
        found = await ingest.store.get_artifact(artifact_id)
        return found or _error(404, f"no artifact {artifact_id}")

    @router.post(
        "/workflows/{namespace}/{name}/run",
        tags=["workflows"],
        status_code=202,
        response_model=RunAccepted,
        responses={**NOT_FOUND, 413: {"model": ErrorBody}},
    )
    async def run_workflow(
        namespace: DnsLabel, name: DnsLabel, alert: ManualAlert
    ) -> RunAccepted | JSONResponse:
        """Start workflow `namespace/name` now with this alert; matching is not applied."""
        if ingest.definitions.workflow(namespace, name) is None:
            return _error(404, f"no Workflow {namespace}/{name}")
        execution_id = str(ULID())
        now = ingest.clock.now()
        try:
            check_alert(alert.to_alert(now), ingest.alert_limits, where="body")
        except AlertTooLarge as exc:
            return _refused(413, exc.reason, str(exc))
        await ingest.bus.publish(
            subjects.control("run"),
            RunRequested(
                execution_id=execution_id,
                namespace=namespace,
                workflow=name,
                alert=alert.to_alert(now),
                requested_at=now,
            ),
            msg_id=f"run/{execution_id}",
        )
        return RunAccepted(execution_id=execution_id)

    @router.get("/stats", tags=["operations"])
    async def stats() -> Stats:
        """Alerts received and recorded, executions by state, consumer lag per stream."""
        consumers = [
            await ingest.bus.consumer_stats(spec.stream, spec.durable) for spec in MONITORED
        ]
        alerts = next(c for c in consumers if c.stream == subjects.ALERTS_STREAM)
        return Stats(
            alerts=AlertCounts(received=alerts.stream_messages, recorded=alerts.acknowledged),
            executions=await ingest.store.count_executions(),
            consumers=[
                ConsumerLag(
                    stream=c.stream,
                    consumer=c.consumer,
                    lag=c.lag,
                    pending=c.pending,
                    in_flight=c.in_flight,
                )
                for c in consumers
                if c.exists
            ],
        )

    return router


def _alerts_and_definitions(ingest: Ingest) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.get(
        "/alerts", tags=["alerts"], response_model=AlertPage, responses={400: {"model": ErrorBody}}
    )
    async def list_alerts(
        namespace: str | None = None,
        source: str | None = None,
        status: AlertStatus | None = None,
        match: Annotated[list[str] | None, Query()] = None,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> AlertPage | JSONResponse:
        """Alert history, most recently seen first.

        `match` takes Alertmanager matchers over labels and may repeat, e.g.
        `?match=severity=~"critical|warning"&match=team="db"`; regexes are RE2, anchored,
        at most 1 KiB. A page filtered by `match` examines a bounded number of alerts: it
        may come back short, even empty, with `next` set; follow `next` until it is null.
        """
        try:
            query = AlertFilter(
                namespace=namespace, source=source, status=status, matchers=match or []
            )
            for matcher in query.matchers:
                parse_matcher(matcher)
        except InvalidInput as exc:
            return _refused(400, "invalid_request", f"match: {exc}")
        return await ingest.store.list_alerts(query, limit=limit, cursor=cursor)

    @router.get(
        "/alerts/{alert_id:path}", tags=["alerts"], response_model=AlertDetail, responses=NOT_FOUND
    )
    async def get_alert(alert_id: str) -> AlertDetail | JSONResponse:
        """One alert (`namespace/source/fingerprint`) with the executions it started."""
        found = await ingest.store.get_alert(alert_id)
        if found is None:
            return _error(404, f"no alert {alert_id}")
        started = await ingest.store.list_executions(ExecutionFilter(alert_id=alert_id), limit=100)
        return AlertDetail(
            **dict(found),
            executions=[
                ExecutionSummary(
                    id=e.id, workflow=e.workflow, state=e.state, created_at=e.created_at
                )
                for e in started.items
            ],
        )

    @router.get("/definitions", tags=["definitions"])
    async def list_definitions() -> DefinitionList:
        """Every definition the controller saw, valid or not, with its validation message;
        a schedule Source with its next fire time."""
        return DefinitionList(items=await definition_statuses(ingest))

    return router
