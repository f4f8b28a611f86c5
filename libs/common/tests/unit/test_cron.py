"""Cron expressions of schedule Sources: checking, ticks in time zones and across DST, and
which tick is due after a gap (`catchUp`), all on explicit instants (no wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.common.cron import Cron, cron_fields, due_tick, next_fire, time_zone

GRACE = timedelta(seconds=60)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("alias", "fields"),
    [("@daily", "0 0 * * *"), ("@HOURLY", "0 * * * *"), ("@weekly", "0 0 * * 0")],
)
def test_aliases_expand_to_five_fields(alias: str, fields: str) -> None:
    assert cron_fields(alias) == fields


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "must have 5 fields"),
        ("0 * * * * *", "must have 5 fields"),  # no seconds field
        ("61 * * * *", "Bad minute"),
        ("0 0 31 2 *", "Bad day-of-month"),
        ("@reboot", "is not one of @yearly"),
        ("", "must have 5 fields"),
    ],
)
def test_a_bad_expression_is_refused_saying_why(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        cron_fields(expression)


def test_an_unknown_time_zone_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'Mars/Olympus' is not an IANA time zone"):
        time_zone("Mars/Olympus")


def test_daily_ticks_at_local_midnight_of_the_time_zone() -> None:
    cron = Cron.parse("@daily", "America/New_York")
    assert cron.next_after(at("2026-01-10T12:00:00")) == at("2026-01-11T05:00:00")
    assert cron.latest_at(at("2026-01-11T05:00:00")) == at("2026-01-11T05:00:00")
    assert cron.latest_at(at("2026-01-11T04:59:59")) == at("2026-01-10T05:00:00")


def test_a_local_time_skipped_by_spring_forward_fires_right_after_the_jump() -> None:
    """Paris, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist."""
    cron = Cron.parse("30 2 * * *", "Europe/Paris")
    assert cron.next_after(at("2026-03-28T12:00:00")) == at("2026-03-29T01:00:00")  # 03:00 CEST
    assert cron.next_after(at("2026-03-29T01:00:00")) == at("2026-03-30T00:30:00")


def test_a_local_time_repeated_by_fall_back_fires_once() -> None:
    """Paris, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice."""
    cron = Cron.parse("30 2 * * *", "Europe/Paris")
    first = cron.next_after(at("2026-10-24T12:00:00"))
    assert first == at("2026-10-25T00:30:00")  # 02:30 CEST
    assert cron.next_after(first) == at("2026-10-26T01:30:00")  # the next day, 02:30 CET


def test_an_hourly_schedule_follows_the_clock_through_fall_back() -> None:
    cron = Cron.parse("0 * * * *", "Europe/Paris")
    ticks = [at("2026-10-25T00:00:00")]
    for _ in range(3):
        tick = cron.next_after(ticks[-1])
        assert tick is not None
        ticks.append(tick)
    assert ticks[1:] == [
        at("2026-10-25T01:00:00"),
        at("2026-10-25T02:00:00"),
        at("2026-10-25T03:00:00"),
    ]


@pytest.mark.parametrize("expression", ["0 * * * *", "*/15 * * * *"])
def test_through_fall_back_the_latest_tick_is_the_one_just_passed(expression: str) -> None:
    """Every tick of the repeated hour is due when its moment comes (none an hour late)."""
    cron = Cron.parse(expression, "Europe/Berlin")
    moment = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST; 01:00 UTC is 02:00 CET
    while moment < datetime(2026, 10, 25, 3, 0, tzinfo=UTC):
        tick = cron.next_after(moment)
        assert tick is not None
        assert cron.latest_at(tick + timedelta(minutes=1)) == tick
        assert cron.latest_at(tick) == tick
        moment = tick


def test_a_tick_on_time_is_due_once() -> None:
    cron = Cron.parse("*/5 * * * *")
    tick = at("2026-05-01T10:05:00")
    assert (
        due_tick(cron, after=at("2026-05-01T10:00:00"), now=tick, catch_up="one", grace=GRACE)
        == tick
    )
    assert (
        due_tick(cron, after=tick, now=tick + timedelta(seconds=30), catch_up="one", grace=GRACE)
        is None
    )


def test_before_the_first_tick_nothing_is_due() -> None:
    cron = Cron.parse("*/5 * * * *")
    seen = at("2026-05-01T10:01:00")
    assert (
        due_tick(cron, after=seen, now=at("2026-05-01T10:04:59"), catch_up="one", grace=GRACE)
        is None
    )


def test_after_a_gap_catch_up_one_fires_only_the_latest_missed_tick() -> None:
    cron = Cron.parse("*/5 * * * *")
    last = at("2026-05-01T10:00:00")
    now = at("2026-05-01T13:07:00")  # 37 ticks were missed
    assert due_tick(cron, after=last, now=now, catch_up="one", grace=GRACE) == at(
        "2026-05-01T13:05:00"
    )
    assert next_fire(cron, after=last, now=now, catch_up="one") == at("2026-05-01T13:05:00")
    # Once that one is done, the next is the next on the clock.
    done = at("2026-05-01T13:05:00")
    assert due_tick(cron, after=done, now=now, catch_up="one", grace=GRACE) is None
    assert next_fire(cron, after=done, now=now, catch_up="one") == at("2026-05-01T13:10:00")


def test_after_a_gap_catch_up_none_skips_missed_ticks_but_fires_a_late_wakeup() -> None:
    cron = Cron.parse("*/5 * * * *")
    last = at("2026-05-01T10:00:00")
    assert (
        due_tick(cron, after=last, now=at("2026-05-01T13:07:00"), catch_up="none", grace=GRACE)
        is None
    )
    assert next_fire(cron, after=last, now=at("2026-05-01T13:07:00"), catch_up="none") == at(
        "2026-05-01T13:10:00"
    )
    # A loop that wakes a little after its tick (within the grace) still fires it.
    late = at("2026-05-01T13:05:20")
    assert due_tick(cron, after=last, now=late, catch_up="none", grace=GRACE) == at(
        "2026-05-01T13:05:00"
    )


def test_a_leap_day_schedule_ticks_on_the_next_leap_day() -> None:
    cron = Cron.parse("0 0 29 2 *")
    assert cron.next_after(at("2026-01-01T00:00:00")) == at("2028-02-29T00:00:00")
