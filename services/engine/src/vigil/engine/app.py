"""Engine composition root: store, bus, definitions view, consumers, timers, schedules,
ops server."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import replace
from datetime import timedelta

import structlog

from vigil.common import streams
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.service import (
    connected_bus,
    opened_store,
    ops_server,
    readiness_checks,
)
from vigil.common.clock import SYSTEM_CLOCK
from vigil.common.definitions import DefinitionsView
from vigil.common.messages import (
    AlertReceived,
    CancelRequested,
    DeadLetter,
    RunRequested,
    StepResult,
)
from vigil.common.runtime import run_tasks
from vigil.engine.admission import Admission
from vigil.engine.commands import Commands
from vigil.engine.progress import Progress
from vigil.engine.results import Results
from vigil.engine.scheduling import ScheduleLoop
from vigil.engine.settings import EngineSettings
from vigil.engine.timers import TimerLoop, purge_expired

log = structlog.get_logger(__name__)


async def run(settings: EngineSettings, stop: asyncio.Event) -> None:
    async with opened_store(settings) as store, connected_bus(settings, service="engine") as bus:
        definitions = DefinitionsView()
        progress = Progress(store=store, bus=bus)
        admission = Admission(store=store, progress=progress, definitions=definitions)
        results = Results(store=store, progress=progress, definitions=definitions)
        commands = Commands(store=store, progress=progress, definitions=definitions)
        timers = TimerLoop(
            store=store,
            progress=progress,
            definitions=definitions,
            clock=SYSTEM_CLOCK,
            owner=f"{socket.gethostname()}/{os.getpid()}",
            interval=settings.timer_interval_seconds,
        )
        schedules = ScheduleLoop(
            store=store,
            bus=bus,
            definitions=definitions,
            clock=SYSTEM_CLOCK,
            grace=timedelta(seconds=settings.schedule_grace_seconds),
            poll=settings.schedule_poll_seconds,
        )
        log.info("engine_starting")
        await run_tasks(
            stop,
            ops_server(
                settings, readiness_checks(bus=bus, store=store, definitions=definitions)
            ).serve(),
            definitions.run(await bus.config_bucket()),
            _consume_when_ready(
                settings=settings,
                bus=bus,
                definitions=definitions,
                admission=admission,
                results=results,
                commands=commands,
            ),
            timers.run(),
            schedules.run(),
            purge_expired(store, every=settings.purge_interval_seconds, clock=SYSTEM_CLOCK),
        )


async def _consume_when_ready(
    *,
    settings: EngineSettings,
    bus: JetStreamBus,
    definitions: DefinitionsView,
    admission: Admission,
    results: Results,
    commands: Commands,
) -> None:
    """The engine's consumers, started once the definitions are loaded."""
    await definitions.ready.wait()
    deliver = settings.max_deliver
    consumers = [
        bus.consume_batches(
            replace(
                streams.ENGINE_ALERTS,
                max_deliver=deliver,
                max_in_flight=settings.alerts_in_flight,
                batch=settings.alerts_batch,
            ),
            AlertReceived,
            admission.on_alerts,
        ),
        bus.consume_batches(
            replace(
                streams.ENGINE_RESULTS,
                max_deliver=deliver,
                max_in_flight=settings.results_in_flight,
                batch=settings.results_batch,
            ),
            StepResult,
            results.on_results,
        ),
        bus.consume(
            replace(streams.ENGINE_CANCEL, max_deliver=deliver), CancelRequested, commands.on_cancel
        ),
        bus.consume(
            replace(streams.ENGINE_RUN, max_deliver=deliver), RunRequested, commands.on_run
        ),
        bus.consume(
            replace(streams.ENGINE_DEAD_STEPS, max_deliver=deliver),
            DeadLetter,
            results.on_dead_letter,
        ),
    ]
    async with asyncio.TaskGroup() as group:
        for consumer in consumers:
            group.create_task(consumer)
