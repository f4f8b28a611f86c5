"""Controller composition root (file mode): read, validate, publish, watch for changes."""

from __future__ import annotations

import asyncio

import structlog
import watchfiles

from vigil.common.adapters.service import connected_bus, ops_server, readiness_checks
from vigil.common.definitions import ConfigBucket
from vigil.common.errors import TransientError
from vigil.common.runtime import run_tasks
from vigil.common.validation import read_documents, validate_documents
from vigil.controller.publishing import publish_report
from vigil.controller.settings import ControllerSettings

log = structlog.get_logger(__name__)

WATCH_TICK_MS = 500


async def reconcile(settings: ControllerSettings, bucket: ConfigBucket) -> None:
    documents, errors = await asyncio.to_thread(read_documents, settings.definitions)
    report = validate_documents(documents)
    report.errors[:0] = errors
    await publish_report(bucket, report)
    log.info(
        "definitions_published",
        path=str(settings.definitions),
        valid=len(report.definitions),
        invalid=sum(1 for s in report.statuses if not s.ready),
    )


async def run(settings: ControllerSettings, stop: asyncio.Event) -> None:
    async with connected_bus(settings, service="controller") as bus:
        bucket = await bus.config_bucket()
        published = asyncio.Event()

        async def definitions_published() -> None:
            if not published.is_set():
                raise TransientError("definitions not published yet")

        checks = {**readiness_checks(bus=bus), "definitions": definitions_published}
        log.info("controller_starting", definitions=str(settings.definitions))

        async def watch() -> None:
            await reconcile(settings, bucket)
            published.set()
            if not settings.watch:
                return
            watching = False
            async for changes in watchfiles.awatch(
                settings.definitions,
                stop_event=stop,
                yield_on_timeout=True,
                rust_timeout=WATCH_TICK_MS,
            ):
                if changes:
                    log.info("definitions_changed", files=sorted({path for _, path in changes}))
                elif watching:
                    continue
                # The first tick (changes or not) proves the watcher runs: read once more,
                # so an edit made between the first read and the watcher is not missed.
                watching = True
                await reconcile(settings, bucket)

        await run_tasks(stop, ops_server(settings, checks).serve(), watch())
