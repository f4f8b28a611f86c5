"""The HTTP edge's limits (`vigil.common.adapters.http_limits`) against real sockets: a
client slow with its headers or its body is answered 408 and closed within the configured
deadline; a client answered early must finish its body within the deadline; connections
over the cap are answered 503 and closed; a malformed request is a 400 in JSON; and each
refusal is reported by its reason. Clients are raw asyncio streams on loopback, and the
tests wait for the server to close the socket, never for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from vigil.common.adapters.http_limits import HttpLimits, HttpRefusal
from vigil.common.adapters.ops import HttpServer

pytestmark = pytest.mark.integration

HEADER_SECONDS = 0.5
BODY_SECONDS = 0.5
CLOSE_WITHIN_SECONDS = 20.0  # a generous bound: the failure this guards against is "never"


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def early(request: Request) -> JSONResponse:
    """Refuses on the declared length without reading the body (as ingest's 413 does)."""
    if int(request.headers.get("content-length", "0")) > 10:
        return JSONResponse({"error": "too large"}, status_code=413)
    return JSONResponse({"size": len(await request.body())})


ABANDONED = asyncio.Event()


async def reading(request: Request) -> JSONResponse:
    try:
        body = await request.body()
    except ClientDisconnect:
        ABANDONED.set()
        raise
    return JSONResponse({"size": len(body)})


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/early", early, methods=["POST"]),
        Route("/reading", reading, methods=["POST"]),
    ]
)


@dataclass(slots=True)
class Served:
    port: int
    refused: list[HttpRefusal] = field(default_factory=list)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def serving(
    *,
    max_connections: int = 512,
    max_header_bytes: int = 16_384,
    keep_alive_seconds: int = 5,
    body_timeout_seconds: float = BODY_SECONDS,
) -> AsyncIterator[Served]:
    refused: list[HttpRefusal] = []
    limits = HttpLimits(
        header_timeout_seconds=HEADER_SECONDS,
        body_timeout_seconds=body_timeout_seconds,
        keep_alive_seconds=keep_alive_seconds,
        max_connections=max_connections,
        max_header_bytes=max_header_bytes,
    )
    server = HttpServer(APP, host="127.0.0.1", port=0, limits=limits, on_reject=refused.append)
    task = asyncio.create_task(server.serve())
    await server.listening.wait()
    assert server.port is not None
    try:
        yield Served(port=server.port, refused=refused)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = bytearray()
    async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with our last bytes unread: closed all the same
    return bytes(received)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines if line)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def error_of(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_a_client_that_trickles_its_headers_is_answered_408_and_closed() -> None:
    async with serving() as served:
        loop = asyncio.get_running_loop()
        started = loop.time()  # before connecting: the server's deadline starts on accepting
        reader, writer = await served.connect()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"POST /echo HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 10_000:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)  # the client's pace, not a wait of the test

        trickler = asyncio.create_task(trickle())
        answer = await until_closed(reader)
        elapsed = loop.time() - started
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickler
        await close(writer)

    assert error_of(answer) == (408, "request headers not received within 0.5 seconds")
    assert elapsed >= HEADER_SECONDS - 0.01  # the timer's own resolution
    assert served.refused == ["header_timeout"]


async def test_a_connection_that_never_sends_a_request_is_closed_after_the_header_deadline() -> (
    None
):
    async with serving() as served:
        reader, writer = await served.connect()
        answer = await until_closed(reader)
        await close(writer)

    assert answer == b""
    assert served.refused == ["header_timeout"]


async def test_a_body_that_never_finishes_is_answered_408_and_closed() -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        writer.write(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n" + b"x" * 10
        )
        await writer.drain()
        answer = await until_closed(reader)
        await close(writer)

    assert error_of(answer) == (408, "request body not received within 0.5 seconds")
    assert served.refused == ["body_timeout"]


async def test_a_client_answered_early_must_finish_its_body_within_the_deadline() -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        writer.write(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        status, _, _ = await read_response(reader)
        rest = await until_closed(reader)
        await close(writer)

    assert status == 413
    assert rest == b""
    assert served.refused == ["body_timeout"]


async def test_a_client_answered_early_that_sends_its_whole_body_keeps_its_connection() -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        writer.write(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\n" + b"x" * 20)
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd")
        await writer.drain()
        first = await read_response(reader)
        second = await read_response(reader)
        await close(writer)

    assert first[0] == 413
    assert (second[0], json.loads(second[2])) == (200, {"size": 4})
    assert served.refused == []


async def test_a_client_answered_early_that_finished_its_body_is_then_idle_as_any_other() -> None:
    # A body deadline far longer than the idle one: the close must come from idling.
    async with serving(keep_alive_seconds=1, body_timeout_seconds=30) as served:
        reader, writer = await served.connect()
        writer.write(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\n" + b"x" * 10)
        await writer.drain()
        status, _, _ = await read_response(reader)
        writer.write(b"x" * 10)  # the rest of the body, after the answer
        await writer.drain()
        rest = await until_closed(reader)  # closed once idle for keep_alive_seconds
        await close(writer)

    assert (status, rest) == (413, b"")
    assert served.refused == [], "an idle connection is no refusal"


async def test_connections_over_the_cap_are_answered_503_and_closed() -> None:
    async with serving(max_connections=2) as served:
        held = [await served.connect() for _ in range(2)]
        for reader, writer in held:  # each is served: the server holds both connections
            writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            assert (await read_response(reader))[0] == 200
        reader, writer = await served.connect()
        answer = await until_closed(reader)
        await close(writer)
        for _, held_writer in held:
            await close(held_writer)

    assert error_of(answer) == (503, "more than 2 connections are open; retry")
    assert b"\r\nretry-after: 1\r\n" in answer
    assert served.refused == ["too_many_connections"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="malformed"),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n",
            id="headers over max_header_bytes",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nokBROKEN /echo\r\n\r\n",
            id="malformed second request on a kept-alive connection",
        ),
    ],
)
async def test_a_bad_request_line_or_header_block_is_a_400_in_json(request_bytes: bytes) -> None:
    async with serving(max_header_bytes=4096) as served:
        reader, writer = await served.connect()
        writer.write(request_bytes)
        await writer.drain()
        answer = await until_closed(reader)
        await close(writer)

    status, message = error_of(answer[answer.rindex(b"HTTP/1.1 ") :])  # the last answer
    assert status == 400
    assert message == "invalid HTTP request (malformed, or headers over 4096 bytes)"
    assert served.refused == ["bad_http"]


async def test_requests_within_the_limits_share_one_kept_alive_connection() -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        answers = []
        for body in (b"[1]", b"[1, 2]"):
            writer.write(
                b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
            answers.append(await read_response(reader))
        await close(writer)

    assert [(status, json.loads(body)) for status, _, body in answers] == [
        (200, {"size": 3}),
        (200, {"size": 6}),
    ]
    assert served.refused == []


async def test_a_client_gone_in_the_middle_of_its_body_is_one_log_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ABANDONED.clear()
    async with serving() as served:
        _, writer = await served.connect()
        writer.write(b"POST /reading HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        await writer.drain()
        with capture_logs() as logs:
            await close(writer)
            async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
                await ABANDONED.wait()  # the app saw the client leave and raised

    assert [entry["event"] for entry in logs] == ["request_abandoned"]
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []
    assert served.refused == []


async def test_a_cancelled_server_answers_the_request_in_flight_and_closes_every_connection() -> (
    None
):
    """A service stopping cancels its server: that must not leave a client unanswered or a
    connection open (left to the garbage collector, it would never be closed at all)."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(_: Request) -> JSONResponse:
        arrived.set()
        await release.wait()
        return JSONResponse({"answered": True})

    app = Starlette(routes=[Route("/held", held), Route("/echo", echo, methods=["POST"])])
    kept = HttpLimits(keep_alive_seconds=3600)  # no connection closes on its own meanwhile
    server = HttpServer(app, host="127.0.0.1", port=0, limits=kept)
    task = asyncio.create_task(server.serve())
    await server.listening.wait()
    assert server.port is not None
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    idle_writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n[]")
    await idle_writer.drain()
    assert (await read_response(idle_reader))[0] == 200  # then kept alive, idle
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", server.port)
    busy_writer.write(b"GET /held HTTP/1.1\r\nhost: x\r\n\r\n")
    await busy_writer.drain()
    async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
        await arrived.wait()

    task.cancel()
    assert await until_closed(idle_reader) == b""  # closed while the server shuts down
    release.set()
    status, _, body = await read_response(busy_reader)
    assert await until_closed(busy_reader) == b""
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await close(idle_writer)
    await close(busy_writer)

    assert (status, json.loads(body)) == (200, {"answered": True})
    assert task.cancelled()
