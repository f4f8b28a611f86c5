"""File mode: definitions from a folder of YAML, read again whenever a file changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
import watchfiles

from vigil.common.definitions import ConfigBucket
from vigil.common.validation import read_documents, validate_documents
from vigil.controller.publishing import publish_report

log = structlog.get_logger(__name__)

WATCH_TICK_MS = 500


async def reconcile(folder: Path, bucket: ConfigBucket) -> None:
    documents, errors = await asyncio.to_thread(read_documents, folder)
    report = validate_documents(documents)
    report.errors[:0] = errors
    await publish_report(bucket, report)
    log.info(
        "definitions_published",
        path=str(folder),
        valid=len(report.definitions),
        invalid=sum(1 for s in report.statuses if not s.ready),
    )


async def follow_folder(
    folder: Path,
    bucket: ConfigBucket,
    *,
    published: asyncio.Event,
    stop: asyncio.Event,
    watch: bool,
) -> None:
    """Publish the folder's definitions, then again after every change (if `watch`)."""
    await reconcile(folder, bucket)
    published.set()
    if not watch:
        return
    watching = False
    async for changes in watchfiles.awatch(
        folder, stop_event=stop, yield_on_timeout=True, rust_timeout=WATCH_TICK_MS
    ):
        if changes:
            log.info("definitions_changed", files=sorted({path for _, path in changes}))
        elif watching:
            continue
        # The first tick (changes or not) proves the watcher runs: read once more, so an
        # edit made between the first read and the watcher is not missed.
        watching = True
        await reconcile(folder, bucket)
