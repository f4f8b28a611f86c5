"""Controller composition root (file mode): read, validate, publish, watch for changes."""

from __future__ import annotations

import asyncio

import structlog
import watchfiles

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.definitions import ConfigBucket
from vigil.common.errors import TransientError
from vigil.common.ops import HttpServer, ops_app
from vigil.common.runtime import run_tasks
from vigil.common.streams import stream_specs
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
    bus = await JetStreamBus.connect(settings.nats_url, name="vigil-controller")
    try:
        await bus.ensure_streams(stream_specs(alerts_max_age_days=settings.stream_max_age_days))
        bucket = await bus.config_bucket()
        published = asyncio.Event()

        async def ready() -> None:
            if not bus.connected:
                raise TransientError("not connected to NATS")
            if not published.is_set():
                raise TransientError("definitions not published yet")

        ops = HttpServer(
            ops_app({"controller": ready}), host=settings.ops_host, port=settings.ops_port
        )
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

        await run_tasks(stop, ops.serve(), watch())
    finally:
        await bus.close()
