"""Controller composition root: definitions from a folder (file mode) or from the
cluster's custom resources (Kubernetes mode), validated and published to the config
bucket; in Kubernetes mode also the resources' status, from validation and executions."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import structlog

from vigil.common import streams
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.kubernetes import api_client
from vigil.common.adapters.ops import ReadinessCheck
from vigil.common.adapters.service import connected_bus, ops_server, readiness_checks
from vigil.common.errors import TransientError
from vigil.common.messages import ExecutionEvent
from vigil.common.runtime import run_tasks
from vigil.controller.adapters import kubernetes
from vigil.controller.adapters.folder import follow_folder
from vigil.controller.cluster import ClusterDefinitions, summary
from vigil.controller.settings import ControllerSettings

log = structlog.get_logger(__name__)


def _published_check(published: asyncio.Event) -> ReadinessCheck:
    async def definitions_published() -> None:
        if not published.is_set():
            raise TransientError("definitions not published yet")

    return definitions_published


async def run(settings: ControllerSettings, stop: asyncio.Event) -> None:
    async with connected_bus(settings, service="controller") as bus:
        if settings.source == "kubernetes":
            await _run_in_cluster(settings, stop, bus)
            return
        bucket = await bus.config_bucket()
        published = asyncio.Event()
        checks = {**readiness_checks(bus=bus), "definitions": _published_check(published)}
        log.info("controller_starting", source="file", definitions=str(settings.definitions))
        await run_tasks(
            stop,
            ops_server(settings, checks).serve(),
            follow_folder(
                settings.definitions,
                bucket,
                published=published,
                stop=stop,
                watch=settings.watch,
            ),
        )


async def _run_in_cluster(
    settings: ControllerSettings, stop: asyncio.Event, bus: JetStreamBus
) -> None:
    async with api_client() as api:
        cluster = ClusterDefinitions(
            bucket=await bus.config_bucket(), writer=kubernetes.KubernetesStatusWriter(api)
        )
        listed = await kubernetes.list_everything(api, settings.namespaces)
        log.info(
            "controller_starting",
            source="kubernetes",
            namespaces=settings.namespaces or "all",
            found=summary(listed),
        )
        cluster.seed(listed)
        await cluster.reconcile()
        checks = {
            **readiness_checks(bus=bus),
            "definitions": _published_check(cluster.published),
        }
        await run_tasks(
            stop,
            ops_server(settings, checks).serve(),
            cluster.run(),
            kubernetes.watch(cluster, api, settings.namespaces),
            bus.consume(
                replace(streams.CONTROLLER_EVENTS, max_deliver=20),
                ExecutionEvent,
                cluster.on_execution_event,
            ),
            cluster.write_executions(settings.status_interval_seconds),
            cluster.write_next_fires(),
        )
