"""`vigil up` as a user runs it, in a subprocess on free ports, plus a webhook receiver.

`Platform` starts the embedded platform against a folder of definitions, waits until the
API answers `/readyz`, and stops it with SIGTERM (as Ctrl-C would), recording how long the
shutdown took. `WebhookReceiver` is a real HTTP server that records every POST it gets.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.http_fake import FakeHTTPServer, Received, Reply
from tests.support.nats import free_port

READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedPost:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived


@dataclass(slots=True, kw_only=True)
class WebhookReceiver:
    """A real HTTP server recording JSON POSTs; answers `status` (204 unless changed)."""

    port: int
    posts: list[ReceivedPost] = field(default_factory=list)
    status: int = 204
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._answer, port=self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notifications"

    def _answer(self, request: Received) -> Reply:
        try:
            body = request.json()
        except json.JSONDecodeError:
            return Reply(status=400)  # a sender killed mid-request: nothing was delivered
        self.posts.append(
            ReceivedPost(path=request.path, headers=request.headers, body=body, at=request.at)
        )
        return Reply(status=self.status)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def wait_for(self, count: int, *, timeout: float) -> list[ReceivedPost]:
        """Block until at least `count` posts arrived; fail the test otherwise."""
        if not self._server.wait_until(lambda: len(self.posts) >= count, timeout=timeout):
            msg = f"expected {count} webhook posts within {timeout}s, got {len(self.posts)}"
            raise AssertionError(msg)
        with self._server.arrived:
            return list(self.posts)


@dataclass(slots=True, kw_only=True)
class Platform:
    """A running `vigil up`."""

    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path
    token: str | None = None  # the API token; None with --no-auth
    data_dir: Path | None = None
    stopped_in: float | None = None
    _client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def api(self) -> httpx.Client:
        """A client of the API that shows the platform's token (closed by `stop`)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, headers=self.headers)
        return self._client

    def service_pids(self, service: str) -> list[int]:
        """PIDs of the running `python -m vigil.<service>` (or nats-server) children."""
        return self.children(service)[service]

    def children(self, *services: str) -> dict[str, list[int]]:
        """PIDs of each of `services`' running processes, in one pass over /proc."""
        needles = {
            name: b"nats-server" if name == "nats" else f"vigil.{name}".encode()
            for name in services
        }
        found: dict[str, list[int]] = {name: [] for name in services}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if parent != self.process.pid:
                    continue
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            for name, needle in needles.items():
                if needle in cmdline:
                    found[name].append(int(stat.parent.name))
        return found

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def newest_finished(self, *, timeout: float = 60.0, **filters: str) -> dict[str, Any]:
        """The newest execution (matching the API's `filters`) once it has finished, in
        full; fails with the platform's log when none finishes within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.api.get("/api/v1/executions", params=filters, timeout=5)
            newest = items.json()["items"][:1]
            if newest and newest[0]["state"] not in ("pending", "running"):
                detail: dict[str, Any] = self.api.get(
                    f"/api/v1/executions/{newest[0]['id']}", timeout=5
                ).json()
                return detail
            time.sleep(0.2)
        raise AssertionError(self.logs()[-4000:])

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM, as Ctrl-C would; return the exit code (kill if it does not stop)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process.poll() is not None:
            return self.process.returncode
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        self.stopped_in = time.monotonic() - started
        return code


def start_platform(
    *,
    definitions: Path,
    data_dir: Path,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Platform:
    http_port = free_port()
    log_path = data_dir / "vigil-up.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vigil.cli",
                "up",
                "--definitions",
                str(definitions),
                "--data-dir",
                str(data_dir),
                "--http-port",
                str(http_port),
                *(extra_args or []),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "VIGIL_LOG_LEVEL": "info", **(env or {})},
        )
    platform = Platform(process=process, http_port=http_port, log_path=log_path, data_dir=data_dir)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"vigil up exited with {process.returncode}:\n{platform.logs()}"
            raise RuntimeError(msg)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{platform.url}/readyz", timeout=1.0).status_code == 200:
                platform.token = _api_token(data_dir, extra_args or [], env or {})
                return platform
        time.sleep(0.1)
    platform.stop()
    msg = f"vigil up was not ready within {READY_TIMEOUT_SECONDS}s:\n{platform.logs()}"
    raise RuntimeError(msg)


def _api_token(data_dir: Path, args: list[str], env: dict[str, str]) -> str | None:
    """The token `vigil up` uses: VIGIL_API_TOKEN, else the first of `<data-dir>/api-token`."""
    if "--no-auth" in args:
        return None
    given = {**os.environ, **env}.get("VIGIL_API_TOKEN")
    return given or (data_dir / "api-token").read_text().split()[0]


@contextlib.contextmanager
def running_platform(
    *,
    definitions: Path,
    data_dir: Path,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Platform]:
    platform = start_platform(
        definitions=definitions, data_dir=data_dir, extra_args=extra_args, env=env
    )
    try:
        yield platform
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            platform.stop()
