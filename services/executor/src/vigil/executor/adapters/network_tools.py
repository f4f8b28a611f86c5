"""The agent's network tools: `http_get`, `runbook`, `dns`, `tcp_check`. All of them read.

Every address a tool would reach is resolved first and refused if it is link-local or a
cloud metadata endpoint (169.254.169.254 and its kin): a model steered by planted text
cannot make the executor fetch credentials. `http_get` and `runbook` reach only the hosts
allow-listed in the settings, follow no redirect (the answer names where it points), and
read at most a bounded number of bytes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from vigil.executor.tools import ToolError

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
READ_LIMIT = 256 * 1024
TIMEOUT_SECONDS = 10.0


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        msg = f"cannot resolve {host}: {exc}"
        raise ToolError(msg) from exc
    return [ipaddress.ip_address(info[4][0]) for info in found]


async def guarded(host: str, port: int) -> None:
    """Raise ToolError unless every address of `host` may be reached."""
    if host.lower().rstrip(".") in METADATA_HOSTS:
        msg = f"{host} is a cloud metadata endpoint: refused"
        raise ToolError(msg)
    for address in await _addresses(host, port):
        if address in METADATA_ADDRESSES or address.is_link_local:
            msg = f"{host} resolves to {address}, a link-local or metadata address: refused"
            raise ToolError(msg)


def _allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == entry or host.endswith(f".{entry.lstrip('.')}") for entry in allowed)


async def _get(client: httpx.AsyncClient, url: str, allowed: Sequence[str]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{url!r} is not an http(s) URL"
        raise ToolError(msg)
    if not _allowed(parts.hostname, allowed):
        msg = f"host {parts.hostname} is not allow-listed (allowed: {', '.join(allowed) or 'none'})"
        raise ToolError(msg)
    await guarded(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    try:
        async with client.stream(
            "GET", url, follow_redirects=False, timeout=TIMEOUT_SECONDS
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= READ_LIMIT:
                    break
    except httpx.HTTPError as exc:
        msg = f"GET {url} failed: {type(exc).__name__}: {exc}"
        raise ToolError(msg) from exc
    head = f"HTTP {response.status_code} {response.headers.get('content-type', '')}".rstrip()
    if response.is_redirect:
        head += f"\nLocation: {response.headers.get('location', '')} (not followed)"
    return f"{head}\n\n{bytes(body[:READ_LIMIT]).decode(errors='replace')}"


class HttpGetArguments(_Arguments):
    url: str = Field(description="An http(s) URL on an allow-listed host.", max_length=2048)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpGet:
    client: httpx.AsyncClient
    allowed_hosts: Sequence[str]
    name: str = "http_get"
    description: str = "GET an http(s) URL on an allow-listed host; returns status and body."
    arguments: type[BaseModel] = HttpGetArguments

    async def __call__(self, arguments: BaseModel) -> str:
        assert isinstance(arguments, HttpGetArguments)
        return await _get(self.client, arguments.url, self.allowed_hosts)


class NoArguments(_Arguments):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Runbook:
    """The alert's runbook (its `runbook_url` annotation), if its host is allow-listed."""

    client: httpx.AsyncClient
    url: str | None
    allowed_hosts: Sequence[str]
    name: str = "runbook"
    description: str = "Read the alert's runbook (its runbook_url annotation)."
    arguments: type[BaseModel] = NoArguments

    async def __call__(self, arguments: BaseModel) -> str:
        if not self.url:
            raise ToolError("the alert has no runbook_url annotation")
        return await _get(self.client, self.url, self.allowed_hosts)


class DnsArguments(_Arguments):
    name: str = Field(description="A host name to resolve.", min_length=1, max_length=253)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dns:
    name: str = "dns"
    description: str = "Resolve a host name to its addresses (as this executor sees them)."
    arguments: type[BaseModel] = DnsArguments

    async def __call__(self, arguments: BaseModel) -> str:
        assert isinstance(arguments, DnsArguments)
        addresses = sorted({str(a) for a in await _addresses(arguments.name, 0)})
        return f"{arguments.name}: " + ", ".join(addresses)


class TcpCheckArguments(_Arguments):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpCheck:
    timeout: float = 3.0
    name: str = "tcp_check"
    description: str = "Whether a TCP connection to host:port opens, and how fast."
    arguments: type[BaseModel] = TcpCheckArguments

    async def __call__(self, arguments: BaseModel) -> str:
        assert isinstance(arguments, TcpCheckArguments)
        target = f"{arguments.host}:{arguments.port}"
        await guarded(arguments.host, arguments.port)
        started = time.monotonic()
        verdict: Literal["open", "refused", "timed out"]
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(arguments.host, arguments.port)
            writer.close()
            await writer.wait_closed()
            verdict = "open"
        except TimeoutError:
            verdict = "timed out"
        except OSError as exc:
            return f"{target}: refused ({exc.strerror or exc})"
        return f"{target}: {verdict} in {(time.monotonic() - started) * 1000:.0f} ms"


SERIES_SHOWN = 20


class PrometheusArguments(_Arguments):
    query: str = Field(description="A PromQL expression.", min_length=1, max_length=2000)
    minutes: int | None = Field(
        default=None,
        ge=1,
        le=24 * 60,
        description="Omitted: the value now. Given: the range over the last N minutes.",
    )


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _summary(result: dict[str, object]) -> str:
    kind = result.get("resultType")
    series = result.get("result")
    if not isinstance(series, list):
        return f"{kind}: {series}"
    lines = []
    for item in series[:SERIES_SHOWN]:
        metric = _labels(item.get("metric") or {})
        if "values" in item:
            values = [float(v) for _, v in item["values"]]
            last = values[-1] if values else float("nan")
            lines.append(
                f"{metric}: last {last:g}, min {min(values, default=last):g}, "
                f"max {max(values, default=last):g} over {len(values)} points"
            )
        else:
            lines.append(f"{metric}: {item.get('value', [None, '?'])[1]}")
    if len(series) > SERIES_SHOWN:
        lines.append(f"… {len(series) - SERIES_SHOWN} more series")
    return "\n".join(lines) or "no series"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusTool:
    """Instant and range PromQL queries against the configured Prometheus, summarised."""

    client: httpx.AsyncClient
    url: str
    name: str = "prometheus"
    description: str = (
        "Run a PromQL query against Prometheus: the value now, or min/max/last over the "
        "last N minutes."
    )
    arguments: type[BaseModel] = PrometheusArguments

    async def __call__(self, arguments: BaseModel) -> str:
        assert isinstance(arguments, PrometheusArguments)
        base = self.url.rstrip("/")
        params: dict[str, str | float] = {"query": arguments.query}
        path = "/api/v1/query"
        if arguments.minutes is not None:
            end = time.time()
            params |= {
                "start": end - arguments.minutes * 60,
                "end": end,
                "step": max(15, arguments.minutes * 60 // 100),
            }
            path = "/api/v1/query_range"
        try:
            response = await self.client.get(base + path, params=params, timeout=TIMEOUT_SECONDS)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            msg = f"Prometheus at {base} did not answer: {exc}"
            raise ToolError(msg) from exc
        if body.get("status") != "success":
            msg = f"Prometheus refused the query: {body.get('error', response.status_code)}"
            raise ToolError(msg)
        return _summary(body.get("data") or {})
