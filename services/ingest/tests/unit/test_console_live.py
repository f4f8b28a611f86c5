"""The console's live feed: execution events fanned out to open pages as Server-Sent
Events, over the real HTTP server (uvicorn on loopback, as ingest serves it) with the
shipped fakes behind it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from tests.support.bus import eventually
from tests.support.definitions import alertmanager_source
from tests.support.documents import make_execution
from tests.support.ingest import fake_ingest
from vigil.common.adapters.ops import HttpServer
from vigil.common.messages import ExecutionEvent, ExecutionState
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import CONSOLE_COOKIE, FixedTokens, cookie_value, parse_tokens
from vigil.ingest.api import build_app
from vigil.ingest.console.live import LiveEvents, sse

READER = "reader-token-0123456789"
TOKENS = FixedTokens(parse_tokens(f"{READER} read\n", origin="t"))
WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    url: str
    live: LiveEvents
    store: Store


@contextlib.asynccontextmanager
async def served(folder: Path) -> AsyncIterator[Served]:
    async with sqlite_store(folder) as store:
        ingest = fake_ingest(
            store,
            definitions_view(alertmanager_source("ops")),
            clock=FakeClock(EPOCH + timedelta(minutes=1)),
        )
        live = LiveEvents()

        async def subscribed(ready: asyncio.Event) -> None:
            """The bus's part: in place at once (the events come from `on_event` here)."""
            ready.set()
            await asyncio.Event().wait()

        following = asyncio.create_task(live.follow(subscribed))
        server = HttpServer(
            build_app(ingest, checks={}, tokens=TOKENS, live=live), host="127.0.0.1", port=0
        )
        task = asyncio.create_task(server.serve())
        await server.listening.wait()
        try:
            yield Served(url=f"http://127.0.0.1:{server.port}", live=live, store=store)
        finally:
            for running in (task, following):
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running


def event(execution_id: str, state: ExecutionState, namespace: str = "ops") -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=execution_id, namespace=namespace, workflow="disk", state=state, at=EPOCH
    )


async def next_event(lines: AsyncIterator[str]) -> list[str]:
    """The lines of the next event (comments and the retry hint skipped)."""
    found: list[str] = []
    async with asyncio.timeout(WAIT_SECONDS):
        async for line in lines:
            if line == "":
                if any(part.startswith("event:") for part in found):
                    return found
                found = []
            elif not line.startswith(":"):
                found.append(line)
    raise AssertionError(f"the stream ended after {found}")


async def test_an_open_page_gets_a_rendered_row_per_event_its_filters_let_through(
    tmp_path: Path,
) -> None:
    async with (
        served(tmp_path) as app,
        httpx.AsyncClient(base_url=app.url, cookies={CONSOLE_COOKIE: cookie_value(READER)}) as http,
    ):
        await app.store.insert_execution(
            make_execution("01NEW", at=EPOCH, namespace="ops", workflow="disk", state="running")
        )
        async with http.stream("GET", "/live/executions?namespace=ops&state=running") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            await eventually(lambda: _true(app.live.pages == 1), "the page is subscribed")

            await app.live.on_event(event("01OTHER", "running", namespace="shop"))
            await app.live.on_event(event("01NEW", "running"))
            first = await next_event(lines)
            assert first[:2] == ["event: execution", "id: 01NEW"]
            row = "".join(line.removeprefix("data: ") for line in first[2:])
            assert '<tr id="execution-01NEW" data-state="running">' in row
            assert '<a href="/executions/01NEW">ops/disk</a>' in row

            await app.live.on_event(event("01NEW", "succeeded"))
            gone = await next_event(lines)
            assert gone[:2] == ["event: gone", "id: 01NEW"]
        await eventually(lambda: _true(app.live.pages == 0), "the closed page is forgotten")


async def test_the_feed_needs_a_token_like_every_page(tmp_path: Path) -> None:
    async with served(tmp_path) as app, httpx.AsyncClient(base_url=app.url) as http:
        answer = await http.get("/live/executions")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


async def test_a_page_that_falls_behind_is_told_to_start_over() -> None:
    live = LiveEvents(queued_per_page=3)
    with live.subscribed() as queue:
        for n in range(3):
            await live.on_event(event(f"01E{n}", "running"))
        assert live.pages == 0  # no longer fed
        got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [e.execution_id if e else None for e in got] == ["01E0", "01E1", None]


def test_an_event_of_several_lines_is_one_data_line_each() -> None:
    assert sse("execution", "<tr>\n<td>a</td>\n</tr>", event_id="01X") == (
        "event: execution\nid: 01X\ndata: <tr>\ndata: <td>a</td>\ndata: </tr>\n\n"
    )


async def _true(value: bool) -> bool:
    return value


async def test_a_page_searching_label_text_gets_only_the_executions_that_contain_it(
    tmp_path: Path,
) -> None:
    async with (
        served(tmp_path) as app,
        httpx.AsyncClient(base_url=app.url, cookies={CONSOLE_COOKIE: cookie_value(READER)}) as http,
    ):
        plain = make_execution("01PLAIN", at=EPOCH, namespace="ops", workflow="disk")
        other = plain.alert.model_copy(update={"labels": {"alertname": "Disk", "pod": "web-1"}})
        await app.store.insert_execution(plain.model_copy(update={"alert": other}))
        await app.store.insert_execution(
            make_execution("01API", at=EPOCH, namespace="ops", workflow="disk")  # pod=api-7f9c
        )
        async with http.stream("GET", "/live/executions?q=POD%3Dapi") as stream:
            lines = stream.aiter_lines()
            await eventually(lambda: _true(app.live.pages == 1), "the page is subscribed")
            await app.live.on_event(event("01PLAIN", "running"))
            await app.live.on_event(event("01API", "running"))
            first = await next_event(lines)
    assert first[:2] == ["event: execution", "id: 01API"]


async def test_the_events_are_heard_only_while_a_page_is_open() -> None:
    live = LiveEvents()
    started, stopped = asyncio.Queue[int](), asyncio.Queue[int]()
    runs = 0

    async def listen(ready: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        ready.set()
        started.put_nowait(runs)
        try:
            await asyncio.Event().wait()
        finally:
            stopped.put_nowait(runs)

    following = asyncio.create_task(live.follow(listen))
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert runs == 0, "nobody is watching: no subscription"
        with live.subscribed(), live.subscribed():
            assert await asyncio.wait_for(started.get(), WAIT_SECONDS) == 1
            assert await live.heard(WAIT_SECONDS)
        # Both pages closed: the subscription ends; the next page starts a new one.
        assert await asyncio.wait_for(stopped.get(), WAIT_SECONDS) == 1
        assert not live.hearing.is_set()
        with live.subscribed():
            assert await asyncio.wait_for(started.get(), WAIT_SECONDS) == 2
        assert await asyncio.wait_for(stopped.get(), WAIT_SECONDS) == 2
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following


async def test_a_subscription_that_fails_is_not_hidden() -> None:
    live = LiveEvents()

    async def refused(_: asyncio.Event) -> None:
        raise PermissionError("permissions violation for subscription to vigil.events.>")

    following = asyncio.create_task(live.follow(refused))
    with live.subscribed():
        done, _ = await asyncio.wait({following}, timeout=WAIT_SECONDS)
    assert following in done
    assert isinstance(following.exception(), PermissionError)
