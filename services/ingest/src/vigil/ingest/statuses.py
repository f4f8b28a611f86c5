"""The definitions' validation states as the API and the console show them: a ready
schedule Source with the time it fires next."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from vigil.common.cron import Cron, next_fire
from vigil.common.definitions import DefinitionStatus
from vigil.ingest.hooks import Ingest


async def definition_statuses(ingest: Ingest) -> list[DefinitionStatus]:
    """Every definition the controller saw, valid or not, with its validation message."""
    statuses = ingest.definitions.statuses()
    if any(s.kind == "Source" for s in statuses):
        last_ticks = await ingest.store.last_ticks()
        now = ingest.clock.now()
        statuses = [_with_next_fire(ingest, s, last_ticks, now) for s in statuses]
    return statuses


def _with_next_fire(
    ingest: Ingest, status: DefinitionStatus, last_ticks: Mapping[str, datetime], now: datetime
) -> DefinitionStatus:
    """The status of a ready schedule Source with `nextFireAt` (from its last fired tick)."""
    source = ingest.definitions.source(status.namespace, status.name)
    if status.kind != "Source" or not status.ready or source is None:
        return status
    spec = source.spec.schedule
    if source.spec.type != "schedule" or spec is None:  # a stray block on another type
        return status
    cron = Cron.parse(spec.cron, spec.time_zone)
    last = last_ticks.get(f"{status.namespace}/{status.name}")
    after = now if last is None else last
    upcoming = next_fire(cron, after=after, now=now, catch_up=spec.catch_up)
    return status.model_copy(update={"next_fire_at": upcoming})
