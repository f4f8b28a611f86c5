"""The agent's network tools against real sockets on loopback: what they read, and what
they refuse (hosts off the allow-list, link-local and metadata addresses, redirects)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.support.nats import free_port
from vigil.executor.adapters.network_tools import (
    Dns,
    DnsArguments,
    HttpGet,
    HttpGetArguments,
    NoArguments,
    PrometheusArguments,
    PrometheusTool,
    Runbook,
    TcpCheck,
    TcpCheckArguments,
)
from vigil.executor.tools import ToolError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on loopback for the block; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site() -> Iterator[str]:
    """A web server on loopback: /runbook answers a page, /moved redirects."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            body = b"# Disk full\n1. Check df -h\n2. Clean /var/log\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/markdown")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    with _serving(Handler) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def test_http_get_reads_an_allow_listed_page(site: str, client: httpx.AsyncClient) -> None:
    tool = HttpGet(client=client, allowed_hosts=["127.0.0.1"])
    page = await tool(HttpGetArguments(url=f"{site}/runbook"))
    assert page.startswith("HTTP 200 text/markdown\n\n# Disk full")


async def test_http_get_refuses_a_host_off_the_allow_list(
    site: str, client: httpx.AsyncClient
) -> None:
    tool = HttpGet(client=client, allowed_hosts=["runbooks.example.com"])
    with pytest.raises(ToolError, match=r"host 127\.0\.0\.1 is not allow-listed"):
        await tool(HttpGetArguments(url=f"{site}/runbook"))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_metadata_endpoints_are_refused_even_when_allow_listed(
    url: str, client: httpx.AsyncClient
) -> None:
    tool = HttpGet(client=client, allowed_hosts=["169.254.169.254", "metadata.google.internal"])
    with pytest.raises(ToolError, match="refused"):
        await tool(HttpGetArguments(url=url))


async def test_a_redirect_is_reported_not_followed(site: str, client: httpx.AsyncClient) -> None:
    tool = HttpGet(client=client, allowed_hosts=["127.0.0.1"])
    page = await tool(HttpGetArguments(url=f"{site}/moved"))
    assert page.startswith("HTTP 302")
    assert "Location: http://169.254.169.254/latest/meta-data/ (not followed)" in page


async def test_the_runbook_is_the_alerts_own_url(site: str, client: httpx.AsyncClient) -> None:
    assert "# Disk full" in await Runbook(
        client=client, url=f"{site}/runbook", allowed_hosts=["127.0.0.1"]
    )(NoArguments())
    with pytest.raises(ToolError, match="no runbook_url annotation"):
        await Runbook(client=client, url=None, allowed_hosts=["127.0.0.1"])(NoArguments())


async def test_dns_resolves_a_name() -> None:
    answer = await Dns()(DnsArguments(name="localhost"))
    assert answer.startswith("localhost: ")
    assert "127.0.0.1" in answer or "::1" in answer


async def test_tcp_check_tells_open_from_refused_and_refuses_metadata() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        opened = await TcpCheck()(TcpCheckArguments(host="127.0.0.1", port=port))
        closed = await TcpCheck()(TcpCheckArguments(host="127.0.0.1", port=free_port()))
    finally:
        server.close()
        await server.wait_closed()
    assert opened.startswith(f"127.0.0.1:{port}: open in ")
    assert "refused" in closed
    with pytest.raises(ToolError, match="link-local or metadata"):
        await TcpCheck()(TcpCheckArguments(host="169.254.169.254", port=80))


@pytest.fixture
def prometheus() -> Iterator[str]:
    """A Prometheus HTTP API on loopback answering one instant and one range query."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body: dict[str, Any]
            if "query=bad" in self.path:
                body = {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": "parse error at char 4",
                }
            elif self.path.startswith("/api/v1/query_range"):
                values = [[1, "0.5"], [2, "0.9"], [3, "0.7"]]
                body = {
                    "status": "success",
                    "data": {
                        "resultType": "matrix",
                        "result": [{"metric": {"pod": "api-7f9c"}, "values": values}],
                    },
                }
            else:
                body = {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {
                                "metric": {"__name__": "up", "job": "api"},
                                "value": [1, "0"],
                            }
                        ],
                    },
                }
            payload = json.dumps(body).encode()
            self.send_response(200 if body["status"] == "success" else 400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return

    with _serving(Handler) as url:
        yield url


async def test_prometheus_answers_now_and_over_a_range_summarised(
    prometheus: str, client: httpx.AsyncClient
) -> None:
    tool = PrometheusTool(client=client, url=prometheus)
    assert await tool(PrometheusArguments(query="up")) == 'up{job="api"}: 0'
    assert await tool(PrometheusArguments(query="rate(x[5m])", minutes=30)) == (
        '{pod="api-7f9c"}: last 0.7, min 0.5, max 0.9 over 3 points'
    )
    with pytest.raises(ToolError, match="parse error at char 4"):
        await tool(PrometheusArguments(query="bad"))
