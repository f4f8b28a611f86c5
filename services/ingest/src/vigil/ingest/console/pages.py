"""The console's pages: server-rendered HTML over the same store, definitions and bus as
the API, on the same port, behind the same tokens (`vigil.ingest.access`).

Every page works without JavaScript; an action (cancel, re-run, sign in) is a form that
POSTs and is answered with a redirect, and an action that changes something asks first on
a page of its own. Bad query parameters get a page that names them, never a stack trace.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route
from ulid import ULID

from vigil.common import subjects
from vigil.common.documents import (
    AlertFilter,
    AlertRecord,
    DeliveryRecord,
    Execution,
    ExecutionFilter,
)
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.matchers import parse_matcher
from vigil.common.messages import CancelRequested, ExecutionEvent, ExecutionState, RunRequested
from vigil.common.presenting import duration_text, key_labels
from vigil.common.resources import Sink
from vigil.common.store import ExecutionStore
from vigil.common.streams import MONITORED
from vigil.ingest.access import (
    CONSOLE_COOKIE,
    CSRF_FIELD,
    SCOPES,
    ApiScope,
    TokenSource,
    bearer_token,
    console_token,
    cookie_token,
    cookie_value,
    csrf_token,
)
from vigil.ingest.console import present
from vigil.ingest.console.live import LiveEvents, sse
from vigil.ingest.hooks import Ingest
from vigil.ingest.statuses import definition_statuses

HERE = Path(__file__).parent
STATES: tuple[str, ...] = get_args(ExecutionState)
ALERT_STATUSES = ("firing", "resolved")
PAGE_SIZE = 50
MAX_FORM_BYTES = 16 * 1024
COOKIE_MAX_AGE = 12 * 3600  # a sign-in lasts a working day
ASSETS = {
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
    "live.js": "text/javascript",
}
RECENT_FOR_RATE = 50  # a Workflow's success rate is over its last 50 finished executions
KEEPALIVE_SECONDS = 15.0
HEARD_WITHIN_SECONDS = 5.0
OVERVIEW_ITEMS = 2000  # read for a chart, at most: a storm shows as a full chart, not a slow page
SCAN_LIMIT = 2000  # executions read for one page of a text or time-range search
SCAN_BATCH = 200
MAX_SEARCH_CHARS = 200
SINCE = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
FAILING_LOOKED_AT = 20  # running and failed executions whose deliveries the overview reads


class BadRequest(Exception):
    """A query parameter or form field the console cannot use; the page says which."""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = duration_text
    env.filters["stamp"] = _stamp
    env.globals["STATES"] = STATES
    return env


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


@dataclass(slots=True, kw_only=True)
class Console:
    ingest: Ingest
    tokens: TokenSource | None  # None: the API and the console are open (`--no-auth`)
    live: LiveEvents = field(default_factory=LiveEvents)
    env: jinja2.Environment = field(default_factory=_environment)
    keepalive_seconds: float = KEEPALIVE_SECONDS

    def install(self, app: Starlette) -> None:
        """The console's routes on `app`, and its problems answered as pages."""
        app.router.routes.extend(self.routes())

        async def forbidden(request: Request, exc: Exception) -> Response:
            return self._problem(request, 403, "Refused", str(exc))

        async def bad_request(request: Request, exc: Exception) -> Response:
            return self._problem(request, 400, "Bad request", str(exc))

        app.add_exception_handler(Forbidden, forbidden)
        app.add_exception_handler(BadRequest, bad_request)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.overview, methods=["GET"], include_in_schema=False),
            Route("/login", self.login_page, methods=["GET"], include_in_schema=False),
            Route("/login", self.login, methods=["POST"], include_in_schema=False),
            Route("/logout", self.logout, methods=["POST"], include_in_schema=False),
            Route("/static/{asset}", self.asset, include_in_schema=False),
            Route("/executions", self.executions, methods=["GET"], include_in_schema=False),
            Route(
                "/live/executions", self.live_executions, methods=["GET"], include_in_schema=False
            ),
            Route(
                "/executions/{execution_id}",
                self.execution,
                methods=["GET"],
                include_in_schema=False,
            ),
            Route(
                "/executions/{execution_id}/{action:str}",
                self.confirm,
                methods=["GET"],
                include_in_schema=False,
            ),
            Route(
                "/executions/{execution_id}/cancel",
                self.cancel,
                methods=["POST"],
                include_in_schema=False,
            ),
            Route(
                "/executions/{execution_id}/rerun",
                self.rerun,
                methods=["POST"],
                include_in_schema=False,
            ),
            Route("/alerts", self.alerts, methods=["GET"], include_in_schema=False),
            Route("/alerts/{alert_id:path}", self.alert, methods=["GET"], include_in_schema=False),
            Route("/definitions", self.definitions, methods=["GET"], include_in_schema=False),
            Route(
                "/artifacts/{artifact_id:path}",
                self.artifact,
                methods=["GET"],
                include_in_schema=False,
            ),
        ]

    # --- rendering ---------------------------------------------------------------------

    def _page(
        self, request: Request, template: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        scopes = self._scopes(request)
        token = console_token(request.scope["headers"]) or ""
        body = self.env.get_template(template).render(
            auth=self.tokens is not None,
            signed_in=self.tokens is not None and bool(scopes),
            can_operate="operate" in scopes,
            csrf=csrf_token(token),
            csrf_field=CSRF_FIELD,
            path=request.url.path,
            **values,
        )
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def _problem(self, request: Request, status: int, title: str, detail: str) -> HTMLResponse:
        return self._page(request, "problem.html", status=status, title=title, detail=detail)

    def _scopes(self, request: Request) -> frozenset[ApiScope]:
        if self.tokens is None:
            return SCOPES
        token = console_token(request.scope["headers"])
        return (self.tokens.scopes(token) if token else None) or frozenset()

    # --- sign in -------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.tokens is None:
            return RedirectResponse("/executions", status_code=303)
        target = _safe_next(request.query_params.get("next"))
        return self._page(request, "login.html", next=target, error=None)

    async def login(self, request: Request) -> Response:
        if self.tokens is None:
            return RedirectResponse("/executions", status_code=303)
        form = await _form(request)
        target = _safe_next(form.get("next"))
        token = form.get("token", "").strip()
        if not token or self.tokens.scopes(token) is None:
            error = "That token is not valid (unknown, revoked or rotated)."
            if not token:
                error = "Paste an API token to sign in."
            return self._page(request, "login.html", status=401, next=target, error=error)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            CONSOLE_COOKIE,
            cookie_value(token),
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        await self._checked_form(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(CONSOLE_COOKIE, httponly=True, samesite="strict")
        return response

    async def asset(self, request: Request) -> Response:
        """The console's own files (no CDN, nothing fetched from elsewhere)."""
        kind = ASSETS.get(request.path_params["asset"])
        if kind is None:
            return self._problem(request, 404, "No such file", f"No file {request.url.path}.")
        path = HERE / "static" / request.path_params["asset"]
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "max-age=300"})

    # --- overview ------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        """The last hour at a glance: executions by state, executions and alerts per
        minute, the consumers' lag, and the deliveries that are failing."""
        store = self.ingest.store
        now = self.ingest.clock.now()
        since = now - timedelta(minutes=present.CHART_MINUTES)
        started: list[Execution] = await _newest(
            lambda cursor: store.list_executions(ExecutionFilter(), limit=500, cursor=cursor),
            lambda e: e.created_at,
            since,
        )
        seen: list[AlertRecord] = await _newest(
            lambda cursor: store.list_alerts(AlertFilter(), limit=500, cursor=cursor),
            lambda a: a.last_seen,
            since,
        )
        lag, lag_error = [], None
        try:
            for spec in MONITORED:
                stats = await self.ingest.bus.consumer_stats(spec.stream, spec.durable)
                if stats.exists:
                    lag.append(stats)
        except TransientError as exc:
            lag_error = str(exc)
        return self._page(
            request,
            "overview.html",
            by_state=present.shares(await store.count_executions(), STATES),
            started=present.per_minute([e.created_at for e in started], now),
            seen=present.per_minute([a.last_seen for a in seen], now),
            lag=lag,
            lag_error=lag_error,
            failing=await self._failing_deliveries(),
        )

    async def _failing_deliveries(self) -> list[tuple[Execution, DeliveryRecord]]:
        """The latest attempt of each delivery that did not get through, of the newest
        running and failed executions."""
        store = self.ingest.store
        looked: list[Execution] = []
        for query in (ExecutionFilter(active=True), ExecutionFilter(state="failed")):
            looked += (await store.list_executions(query, limit=FAILING_LOOKED_AT)).items
        failing = []
        for execution in looked:
            latest: dict[tuple[str, str], DeliveryRecord] = {}
            for attempt in await store.deliveries(execution_id=execution.id):
                latest[(attempt.step, attempt.sink)] = attempt
            failing += [(execution, d) for d in latest.values() if d.status != "delivered"]
        return sorted(failing, key=lambda pair: pair[1].at, reverse=True)

    # --- executions ----------------------------------------------------------------------

    async def executions(self, request: Request) -> Response:
        query = request.query_params
        state = query.get("state") or None
        if state is not None and state not in STATES:
            return self._problem(
                request,
                400,
                "Unknown state",
                f"state {state!r} is not one of {', '.join(STATES)}.",
            )
        since = query.get("since") or None
        if since is not None and since not in SINCE:
            return self._problem(
                request,
                400,
                "Unknown time range",
                f"since {since!r} is not one of {', '.join(SINCE)}.",
            )
        chosen = {
            "namespace": query.get("namespace") or None,
            "workflow": query.get("workflow") or None,
            "state": state,
        }
        text = (query.get("q") or "").strip()[:MAX_SEARCH_CHARS] or None
        now = self.ingest.clock.now()
        scan = ExecutionScan(
            query=ExecutionFilter.model_validate(chosen),
            text=text,
            since=now - SINCE[since] if since else None,
        )
        items, resume = await scan.page(self.ingest.store, query.get("cursor") or None)
        rows = [_row(e, now) for e in items]
        filters = {k: v for k, v in {**chosen, "q": text, "since": since}.items() if v}
        more = f"/executions?{urlencode({**filters, 'cursor': resume})}" if resume else None
        # Only the first page follows what happens: older pages stay as they were read.
        live_filters = {k: v for k, v in filters.items() if k != "since"}
        live = None if query.get("cursor") else f"/live/executions?{urlencode(live_filters)}"
        return self._page(
            request,
            "executions.html",
            live_url=live,
            rows=rows,
            filters={**chosen, "q": text, "since": since},
            filtered=bool(filters),
            next_page=more,
            namespaces=self._namespaces(),
            workflows=self._workflow_names(),
            since_choices=SINCE,
        )

    async def live_executions(self, request: Request) -> Response:
        """The executions page's live feed: a rendered row per execution event that the
        page's filters let through, `gone` for a row that no longer matches them."""
        query = request.query_params
        wanted = {k: query.get(k) or None for k in ("namespace", "workflow", "state", "q")}
        queue = self.live.join()
        try:
            # The answer starting (the browser's `open`) means the page is live: events
            # published from then on reach it. A slow subscription is not waited for long.
            await self.live.heard(HEARD_WITHIN_SECONDS)
        except BaseException:
            self.live.leave(queue)
            raise
        return StreamingResponse(
            self._live_rows(wanted, queue),
            media_type="text/event-stream",
            headers={**PAGE_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def _live_rows(
        self, wanted: Mapping[str, str | None], queue: asyncio.Queue[ExecutionEvent | None]
    ) -> AsyncIterator[str]:
        row_of = self.env.get_template("rows.html").module.execution_row  # type: ignore[attr-defined]
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), self.keepalive_seconds)
                except TimeoutError:
                    yield ": still here\n\n"  # keeps proxies from closing an idle stream
                    continue
                if event is None:
                    yield sse("behind", "reload")
                    return
                if any(
                    wanted[key] not in (None, getattr(event, key))
                    for key in ("namespace", "workflow")
                ):
                    continue
                if wanted["state"] not in (None, event.state):
                    yield sse("gone", "", event_id=event.execution_id)
                    continue
                execution = await self.ingest.store.get_execution(event.execution_id)
                if execution is None or not labels_contain(execution, wanted["q"]):
                    continue
                row = str(row_of(_row(execution, self.ingest.clock.now())))
                yield sse("execution", row, event_id=event.execution_id)
        finally:
            self.live.leave(queue)

    async def execution(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        found = await self.ingest.store.get_execution(execution_id)
        if found is None:
            if request.query_params.get("requested"):
                return self._page(request, "requested.html", execution_id=execution_id)
            return self._problem(request, 404, "No such execution", f"No execution {execution_id}.")
        now = self.ingest.clock.now()
        deliveries = await self.ingest.store.deliveries(execution_id=execution_id)
        link = None
        if self.ingest.trace_url is not None and found.trace_id is not None:
            link = self.ingest.trace_url.replace("{trace_id}", found.trace_id)
        steps = [
            {
                "record": step,
                "output": present.command_output(step),
                "finding": present.finding(step),
                "notification": present.notification(step),
                "deliveries": [d for d in deliveries if d.step == step.name],
            }
            for step in found.steps
        ]
        return self._page(
            request,
            "execution.html",
            execution=found,
            seconds=present.execution_seconds(found, now),
            bars=present.timeline(found, now),
            steps=steps,
            trace_link=link,
            notice=request.query_params.get("notice"),
        )

    async def confirm(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        action = request.path_params["action"]
        if action not in ("cancel", "rerun"):
            return self._problem(request, 404, "No such page", f"No page {request.url.path}.")
        found = await self.ingest.store.get_execution(execution_id)
        if found is None:
            return self._problem(request, 404, "No such execution", f"No execution {execution_id}.")
        if "operate" not in self._scopes(request):
            return self._problem(
                request, 403, "Not allowed", "Your token has scope read only; this needs operate."
            )
        if action == "cancel" and found.finished:
            return self._problem(
                request,
                409,
                "Already finished",
                f"Execution {execution_id} already finished ({found.state}).",
            )
        return self._page(request, "confirm.html", execution=found, action=action)

    async def cancel(self, request: Request) -> Response:
        form = await self._checked_form(request)
        execution_id = request.path_params["execution_id"]
        found = await self.ingest.store.get_execution(execution_id)
        if found is None:
            return self._problem(request, 404, "No such execution", f"No execution {execution_id}.")
        if found.finished:
            return self._problem(
                request,
                409,
                "Already finished",
                f"Execution {execution_id} already finished ({found.state}).",
            )
        reason = (form.get("reason") or "").strip()[:1000] or "cancelled from the console"
        await self.ingest.bus.publish(
            subjects.control("cancel"),
            CancelRequested(
                execution_id=execution_id, reason=reason, requested_at=self.ingest.clock.now()
            ),
            msg_id=f"cancel/{execution_id}",
        )
        notice = urlencode({"notice": "Cancellation requested."})
        return RedirectResponse(f"/executions/{execution_id}?{notice}", status_code=303)

    async def rerun(self, request: Request) -> Response:
        await self._checked_form(request)
        execution_id = request.path_params["execution_id"]
        found = await self.ingest.store.get_execution(execution_id)
        if found is None:
            return self._problem(request, 404, "No such execution", f"No execution {execution_id}.")
        if self.ingest.definitions.workflow(found.namespace, found.workflow) is None:
            return self._problem(
                request,
                409,
                "Workflow is gone",
                f"Workflow {found.namespace}/{found.workflow} is no longer defined.",
            )
        new_id = str(ULID())
        now = self.ingest.clock.now()
        await self.ingest.bus.publish(
            subjects.control("run"),
            RunRequested(
                execution_id=new_id,
                namespace=found.namespace,
                workflow=found.workflow,
                alert=found.alert,
                requested_at=now,
            ),
            msg_id=f"run/{new_id}",
        )
        return RedirectResponse(f"/executions/{new_id}?requested=1", status_code=303)

    async def artifact(self, request: Request) -> Response:
        artifact_id = request.path_params["artifact_id"]
        found = await self.ingest.store.get_artifact(artifact_id)
        if found is None:
            return self._problem(request, 404, "No such artifact", f"No artifact {artifact_id}.")
        return self._page(request, "artifact.html", artifact=found)

    # --- alerts and definitions ----------------------------------------------------------

    async def alerts(self, request: Request) -> Response:
        query = request.query_params
        matchers = [m for m in query.getlist("match") if m.strip()]
        status = query.get("status") or None
        if status is not None and status not in ALERT_STATUSES:
            return self._problem(
                request, 400, "Unknown status", f"status {status!r} is not firing or resolved."
            )
        try:
            for matcher in matchers:
                parse_matcher(matcher)
        except InvalidInput as exc:
            return self._page(
                request,
                "alerts.html",
                status=400,
                alerts=[],
                matchers=matchers,
                chosen_status=status,
                error=f"match: {exc}",
                next_page=None,
            )
        page = await self.ingest.store.list_alerts(
            AlertFilter.model_validate(
                {
                    "namespace": query.get("namespace") or None,
                    "status": status,
                    "matchers": matchers,
                }
            ),
            limit=PAGE_SIZE,
            cursor=query.get("cursor") or None,
        )
        more = None
        if page.next:
            params = [("match", m) for m in matchers] + ([("status", status)] if status else [])
            more = f"/alerts?{urlencode([*params, ('cursor', page.next)])}"
        return self._page(
            request,
            "alerts.html",
            alerts=[(a, key_labels(a.labels)) for a in page.items],
            matchers=matchers,
            chosen_status=status,
            error=None,
            next_page=more,
        )

    async def alert(self, request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        found = await self.ingest.store.get_alert(alert_id)
        if found is None:
            return self._problem(request, 404, "No such alert", f"No alert {alert_id}.")
        started = await self.ingest.store.list_executions(
            ExecutionFilter(alert_id=alert_id), limit=100
        )
        return self._page(request, "alert.html", alert=found, executions=started.items)

    async def definitions(self, request: Request) -> Response:
        statuses = await definition_statuses(self.ingest)
        rates: dict[str, tuple[int, int]] = {}
        for status in statuses:
            if status.kind == "Workflow" and status.ready:
                recent = await self.ingest.store.list_executions(
                    ExecutionFilter(namespace=status.namespace, workflow=status.name, active=False),
                    limit=RECENT_FOR_RATE,
                )
                done = recent.items
                succeeded = sum(1 for e in done if e.state == "succeeded")
                rates[f"{status.namespace}/{status.name}"] = (succeeded, len(done))
        base = f"{request.url.scheme}://{request.url.netloc}"
        kinds = ("Source", "Workflow", "Sink")
        sink_types = {
            f"{s.namespace}/{s.name}": found.resource.spec.type
            for s in statuses
            if s.kind == "Sink"
            and (found := self.ingest.definitions.sink(s.namespace, s.name)) is not None
            and isinstance(found.resource, Sink)
        }
        hooks = {
            f"{s.namespace}/{s.name}"
            for s in statuses
            if s.kind == "Source"
            and (source := self.ingest.definitions.source(s.namespace, s.name)) is not None
            and source.spec.type != "schedule"
        }
        return self._page(
            request,
            "definitions.html",
            groups=[(kind, [s for s in statuses if s.kind == kind]) for kind in kinds],
            rates=rates,
            hook_base=base,
            hooks=hooks,
            sink_types=sink_types,
        )

    # --- helpers -------------------------------------------------------------------------

    def _namespaces(self) -> list[str]:
        return sorted({s.namespace for s in self.ingest.definitions.statuses()})

    def _workflow_names(self) -> list[str]:
        return sorted({s.name for s in self.ingest.definitions.statuses() if s.kind == "Workflow"})

    async def _checked_form(self, request: Request) -> Mapping[str, str]:
        """The form of a console POST, once it is shown to come from a console page: the
        Origin (when sent) is this server, and a cookie-signed form carries its CSRF token."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Forbidden(f"the form was posted from {origin}, not from this console")
        form = await _form(request)
        headers = request.scope["headers"]
        if self.tokens is not None and bearer_token(headers) is None:
            token = cookie_token(headers) or ""
            if not hmac.compare_digest(form.get(CSRF_FIELD, ""), csrf_token(token)):
                raise Forbidden("the form is stale or was not posted from this console; reload it")
        return form


class Forbidden(Exception):
    """A console POST that did not come from a console page."""


# Pages hold what a token may read: not cached, not framed, nothing fetched from elsewhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _newest[T](
    page: Callable[[str | None], Awaitable[Any]], moment: Callable[[T], datetime], since: datetime
) -> list[T]:
    """Items of a newest-first listing down to `since`, at most `OVERVIEW_ITEMS` of them."""
    found: list[T] = []
    cursor: str | None = None
    while len(found) < OVERVIEW_ITEMS:
        listed = await page(cursor)
        for item in listed.items:
            if moment(item) < since:
                return found
            found.append(item)
        if listed.next is None:
            break
        cursor = listed.next
    return found[:OVERVIEW_ITEMS]


def labels_contain(execution: Execution, text: str | None) -> bool:
    """Whether `text` (any case) is in one of the alert's `name=value` labels."""
    if not text:
        return True
    wanted = text.casefold()
    return any(
        wanted in f"{name}={value}".casefold() for name, value in execution.alert.labels.items()
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionScan:
    """A page of executions that the store's filters cannot express alone: a text over
    the alert's labels, a time range. The store's newest-first listing is read in
    batches and filtered here, at most `SCAN_LIMIT` executions per page: a page may
    come back short, with a link to read on."""

    query: ExecutionFilter
    text: str | None
    since: datetime | None
    limit: int = PAGE_SIZE

    async def page(
        self, store: ExecutionStore, cursor: str | None
    ) -> tuple[list[Execution], str | None]:
        if self.text is None and self.since is None:
            listed = await store.list_executions(self.query, limit=self.limit, cursor=cursor)
            return listed.items, listed.next
        found: list[Execution] = []
        scanned = 0
        while scanned < SCAN_LIMIT:
            batch = await store.list_executions(self.query, limit=SCAN_BATCH, cursor=cursor)
            for execution in batch.items:
                scanned += 1
                cursor = execution.id
                if self.since is not None and execution.created_at < self.since:
                    return found, None  # newest first: nothing older can match
                if labels_contain(execution, self.text):
                    found.append(execution)
                    if len(found) == self.limit:
                        return found, cursor
            if batch.next is None:
                return found, None
        return found, cursor


def _row(execution: Execution, now: datetime) -> dict[str, Any]:
    """What a row of the executions list shows."""
    return {
        "execution": execution,
        "labels": key_labels(execution.alert.labels),
        "seconds": present.execution_seconds(execution, now),
    }


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this server only, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/executions"
    return target


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form, bounded (the console's forms are a few fields)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest(f"a console form is application/x-www-form-urlencoded, not {kind!r}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadRequest(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the form cannot be read: {exc}") from exc
    return {key: values[0] for key, values in fields.items()}
