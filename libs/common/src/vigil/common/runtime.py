"""Process life cycle shared by the services: signals, graceful shutdown with a deadline.

`run_until_signalled` hands the service a stop event set on SIGTERM/SIGINT; `run_tasks`
runs the service's loops until then and cancels them (consumers nak what they hold).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from vigil.common.logging import configure_logging
from vigil.common.settings import ServiceSettings
from vigil.common.telemetry import configure_tracing

log = structlog.get_logger(__name__)


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)`; `stop` is set on SIGTERM/SIGINT, and a second signal cancels."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set() and task is not None:
            task.cancel()
            return
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await main(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def run_tasks(stop: asyncio.Event, *work: Coroutine[Any, Any, None]) -> None:
    """Run `work` in one TaskGroup until `stop` is set, then cancel it all.

    Should any task fail, the group cancels the rest and the error propagates, so the
    process exits non-zero and its supervisor (Kubernetes, `vigil up`) restarts it.
    """
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(item) for item in work]
        await stop.wait()
        log.info("shutting_down")
        for task in tasks:
            task.cancel()


def service_main[S: ServiceSettings](
    *, service: str, settings: S, run: Callable[[S, asyncio.Event], Awaitable[None]]
) -> None:
    """The body of every service's `__main__`: logging, tracing, signals, run, exit.

    A service that fails exits non-zero at once, for its supervisor (Kubernetes, `vigil up`)
    to restart it: a worker thread left behind (aiosqlite's) must not keep it half alive.
    """
    configure_logging(service=service, level=settings.log_level, fmt=settings.log_format)
    provider = configure_tracing(service=f"vigil-{service}")
    code = 0
    try:
        asyncio.run(run_until_signalled(lambda stop: run(settings, stop)))
    except KeyboardInterrupt:
        pass
    except Exception:  # the outermost frame of the process: log it, exit non-zero
        log.exception("service_crashed", service=service)
        code = 1
    finally:
        provider.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
