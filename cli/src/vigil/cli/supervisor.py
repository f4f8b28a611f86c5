"""A small process supervisor for `vigil up`: start, prefix logs, restart, stop.

Each service is a separate OS process, as in Kubernetes. A process that exits while the
platform runs is restarted with exponential backoff (reset after a healthy minute); on
shutdown every process gets SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import structlog

log = structlog.get_logger("vigil.up")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
BACKOFF_START_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0


@dataclass(slots=True, kw_only=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    unset_env: tuple[str, ...] = ()  # inherited variables the service must not see
    ready_url: str | None = None
    tier: int = 1  # stopped in descending tier order: services (1) before NATS (0)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, *, grace_seconds: float = 10.0, width: int = 10) -> None:
        self._grace = grace_seconds
        self._width = width
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.services: list[Service] = []

    def _write(self, name: str, line: str) -> None:
        sys.stdout.write(f"{name:<{self._width}}| {line}")
        if not line.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()

    async def _spawn(self, service: Service) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *service.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={
                **{k: v for k, v in os.environ.items() if k not in service.unset_env},
                **service.env,
            },
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the rest
            preexec_fn=_die_with(os.getpid()),
        )
        service.process = process
        return process

    async def _pump(self, service: Service, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            self._write(service.name, line.decode(errors="replace"))

    async def _keep_running(self, service: Service) -> None:
        backoff = BACKOFF_START_SECONDS
        while not self._stopping.is_set():
            started = time.monotonic()
            process = await self._spawn(service)
            await self._pump(service, process)
            code = await process.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            if lived > HEALTHY_AFTER_SECONDS:
                backoff = BACKOFF_START_SECONDS
            service.restarts += 1
            log.warning(
                "service_exited", service=service.name, code=code, restart_in=round(backoff, 1)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def run_once(self, service: Service) -> int:
        """Run a one-shot process (its output prefixed like the services'); its exit code.

        `stop` ends it like a service if it is still running then.
        """
        self.services.append(service)
        process = await self._spawn(service)
        await self._pump(service, process)
        return await process.wait()

    def start(self, service: Service) -> None:
        self.services.append(service)
        self._tasks.append(asyncio.create_task(self._keep_running(service)))

    async def wait_ready(self, service: Service, *, timeout: float) -> None:
        """Wait until `service.ready_url` answers 200; raise TimeoutError otherwise."""
        assert service.ready_url is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(service.ready_url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        msg = f"{service.name} was not ready within {timeout:g}s"
        raise TimeoutError(msg)

    async def stop(self) -> None:
        """SIGTERM each tier (services, then NATS); SIGKILL what outlives the grace period."""
        self._stopping.set()
        for tier in sorted({s.tier for s in self.services}, reverse=True):
            members = [s for s in self.services if s.tier == tier]
            for service in members:
                _signal(service, signal.SIGTERM)
            deadline = time.monotonic() + self._grace
            for service in members:
                await self._reap(service, deadline)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _reap(self, service: Service, deadline: float) -> None:
        process = service.process
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), timeout=max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            log.warning("service_killed", service=service.name)
            _signal(service, signal.SIGKILL)
            await process.wait()


def _signal(service: Service, signum: signal.Signals) -> None:
    process = service.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _die_with(parent: int) -> Callable[[], None]:
    """Run in the child before exec: SIGKILL it when the supervisor dies, however it dies,
    so no service outlives `vigil up` (Linux: PR_SET_PDEATHSIG). Not SIGTERM: with the
    supervisor gone, so is the pipe a service logs to, and a graceful stop has nowhere to
    write; every service is safe under SIGKILL (work in flight is redelivered)."""

    def arrange() -> None:
        if sys.platform == "linux":
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the line above
            os._exit(1)

    return arrange
