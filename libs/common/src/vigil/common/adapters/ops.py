"""The operations endpoints every service serves: `/healthz`, `/readyz`, `/metrics`.

`/healthz` answers while the process runs; `/readyz` answers 200 only when every
dependency check passes (NATS connected, store answering, definitions loaded), so a
Kubernetes readiness probe and `vigil up` see the same truth.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping

import prometheus_client
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vigil.common.adapters.http_limits import (
    BodyDeadline,
    HttpLimits,
    OnReject,
    guarded_protocol,
    ignore_rejection,
)
from vigil.common.errors import VigilError

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
Refresh = Callable[[], Awaitable[None]]


async def readiness(checks: Mapping[str, ReadinessCheck]) -> tuple[bool, dict[str, str]]:
    """Run every check; a check passes by returning and fails by raising VigilError."""
    report: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=2.0)
        except (VigilError, TimeoutError) as exc:
            report[name] = f"failing: {exc or type(exc).__name__}"
        else:
            report[name] = "ok"
    return all(v == "ok" for v in report.values()), report


def ops_routes(
    checks: Mapping[str, ReadinessCheck], *, before_scrape: Refresh | None = None
) -> list[BaseRoute]:
    """The ops routes; `before_scrape` updates gauges read from elsewhere (the bus)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ready, report = await readiness(checks)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": report},
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        if before_scrape is not None:
            await before_scrape()
        return Response(
            prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )

    return [
        Route("/healthz", healthz, include_in_schema=False),
        Route("/readyz", readyz, include_in_schema=False),
        Route("/metrics", metrics, include_in_schema=False),
    ]


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so a port of 0 is resolved and can be logged."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it Nagle plus delayed ACKs add ~40 ms to every keep-alive
    # response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class HttpServer:
    """uvicorn serving an ASGI app, run inside a TaskGroup.

    The socket is bound when serving starts and closed when it ends, so a server cancelled
    before it ever ran holds no socket. Cancelled while serving, it shuts down as on a
    signal: no new connections, requests in flight answered (within 5 s), every connection
    closed. A port of 0 is resolved and logged (and kept in `port` once `listening` is
    set). `limits` bound what slow or greedy clients may hold
    (`vigil.common.adapters.http_limits`); each refusal is reported to `on_reject`.
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        host: str,
        port: int,
        limits: HttpLimits | None = None,
        on_reject: OnReject = ignore_rejection,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._limits = limits or HttpLimits()
        self._on_reject = on_reject
        self.port: int | None = None
        self.listening = asyncio.Event()

    async def serve(self) -> None:
        sock = bind_socket(self._host, self._port)
        try:
            self.port = sock.getsockname()[1]
            log.info("http_listening", host=self._host, port=self.port)
            limits = self._limits
            config = uvicorn.Config(
                BodyDeadline(
                    self._app, seconds=limits.body_timeout_seconds, on_reject=self._on_reject
                ),
                http=guarded_protocol(limits, self._on_reject),
                timeout_keep_alive=limits.keep_alive_seconds,
                h11_max_incomplete_event_size=limits.max_header_bytes,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
            server = uvicorn.Server(config)
            self.listening.set()
            try:
                await server.serve(sockets=[sock])
            except asyncio.CancelledError:
                # uvicorn shuts down on its signals only; cancelled, it would leave every
                # open connection to the garbage collector, a request in flight unanswered.
                if server.started:
                    await server.shutdown(sockets=[sock])
                raise
        finally:
            sock.close()


def ops_app(checks: Mapping[str, ReadinessCheck]) -> Starlette:
    return Starlette(routes=ops_routes(checks))
