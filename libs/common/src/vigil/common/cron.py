"""Cron expressions of schedule Sources: checking them, and the ticks they make.

Pure time arithmetic over `cronsim` (Debian cron's semantics, zoneinfo time zones); the
Source model (`vigil.common.resources.ScheduleSpec`) validates with it, the engine's
schedule loop (`vigil.engine.scheduling`) decides with it which tick is due, and the API
shows the next one.

Daylight saving time follows Debian cron, as cronsim does: a job at a fixed local time (or
with a granularity coarser than an hour) whose time is skipped when clocks go forward runs
right after the jump, and one whose time repeats when clocks go back runs once; jobs that
run every minute or every hour simply follow the local clock (`* * * * *` makes no tick for
the skipped hour and ticks through the repeated hour in UTC terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CatchUp = Literal["none", "one"]

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = "minute hour day-of-month month day-of-week"
_CHECKED_AT = datetime(2000, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def cron_fields(expression: str) -> str:
    """The five fields of `expression` (an alias such as `@daily` expanded).

    Raises ValueError naming what is wrong: not five fields, a bad field, an unknown alias.
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            known = ", ".join(ALIASES)
            msg = f"cron alias {expression!r} is not one of {known}"
            raise ValueError(msg)
        return ALIASES[text.lower()]
    if len(text.split(" ")) != len(FIELDS.split()):
        msg = (
            f"cron expression {expression!r} must have 5 fields ({FIELDS}) or be one of"
            f" {', '.join(ALIASES)}"
        )
        raise ValueError(msg)
    try:
        CronSim(text, _CHECKED_AT)
    except CronSimError as exc:
        msg = f"cron expression {expression!r} is invalid: {exc}"
        raise ValueError(msg) from exc
    return text


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError if there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"{name!r} is not an IANA time zone name (such as UTC or Europe/Paris)"
        raise ValueError(msg) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Cron:
    """A checked cron expression in its time zone."""

    fields: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, zone: str = "UTC") -> Cron:
        return cls(fields=cron_fields(expression), zone=time_zone(zone))

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after `moment` (UTC), or None if there is none."""
        try:
            found = next(CronSim(self.fields, moment.astimezone(self.zone)))
        except StopIteration:
            return None
        return found.astimezone(UTC)

    def latest_at(self, moment: datetime) -> datetime | None:
        """The last tick at or before `moment` (UTC), or None if there is none.

        Reverse iteration ignores `fold`: in the hour repeated when clocks go back it finds
        a tick of the hour's first pass, up to an hour early. So it only gives a tick to
        start from, and the ticks after it are walked forwards (which does know the fold)
        up to `moment`.
        """
        start = moment.astimezone(self.zone).replace(microsecond=0) + _SECOND
        try:
            found = next(CronSim(self.fields, start, reverse=True)).astimezone(UTC)
        except StopIteration:
            return None
        while (following := self.next_after(found)) is not None and following <= moment:
            found = following
        return found


def due_tick(
    cron: Cron, *, after: datetime, now: datetime, catch_up: CatchUp, grace: timedelta
) -> datetime | None:
    """The tick to fire at `now`, when every tick up to `after` is done; None if none is due.

    Only the latest missed tick is ever due (after downtime a schedule fires once, not once
    per missed tick). With `catch_up="none"` it is due only if it is at most `grace` old:
    a tick missed by more is skipped.
    """
    latest = cron.latest_at(now)
    if latest is None or latest <= after:
        return None
    if catch_up == "none" and now - latest > grace:
        return None
    return latest


def next_fire(cron: Cron, *, after: datetime, now: datetime, catch_up: CatchUp) -> datetime | None:
    """When the schedule fires next: a missed tick it would still catch up on, else the next
    tick after now. `after` is the last fired tick (or when the schedule was first seen)."""
    if catch_up == "one":
        missed = cron.latest_at(now)
        if missed is not None and missed > after:
            return missed
    return cron.next_after(max(after, now))
