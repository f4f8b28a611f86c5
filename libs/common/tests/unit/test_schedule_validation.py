"""Validation of schedule Sources: a good one is ready; a bad cron expression, time zone or
`catchUp` is refused with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.common.resources import Source
from vigil.common.validation import RawDocument, validate_documents


def schedule_source(schedule: dict[str, Any]) -> RawDocument:
    return RawDocument(
        origin="sources.yaml#nightly",
        body={
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Source",
            "metadata": {"name": "nightly", "namespace": "ops"},
            "spec": {"type": "schedule", "schedule": schedule},
        },
    )


def test_a_schedule_source_is_ready_with_its_defaults() -> None:
    report = validate_documents(
        [schedule_source({"cron": "@daily", "labels": {"alertname": "NightlyCheck"}})]
    )

    assert report.ok, report.problems()
    (definition,) = report.definitions
    assert isinstance(definition.resource, Source)
    schedule = definition.resource.spec.schedule
    assert schedule is not None
    assert (schedule.time_zone, schedule.catch_up) == ("UTC", "one")


@pytest.mark.parametrize(
    ("schedule", "named"),
    [
        ({"cron": "61 * * * *"}, "spec.schedule.cron"),
        ({"cron": "* * * *"}, "must have 5 fields"),
        ({"cron": "@reboot"}, "spec.schedule.cron"),
        ({"cron": "@daily", "timeZone": "Europe/Atlantis"}, "spec.schedule.timeZone"),
        ({"cron": "@daily", "timeZone": "Europe/Atlantis"}, "'Europe/Atlantis'"),
        ({"cron": "@daily", "catchUp": "all"}, "spec.schedule.catchUp"),
    ],
)
def test_a_bad_schedule_is_not_ready_and_the_message_names_the_field(
    schedule: dict[str, Any], named: str
) -> None:
    report = validate_documents([schedule_source(schedule)])

    (status,) = report.statuses
    assert not status.ready
    assert named in status.message


def test_a_schedule_source_needs_its_schedule_block() -> None:
    document = schedule_source({})
    del document.body["spec"]["schedule"]

    (status,) = validate_documents([document]).statuses

    assert not status.ready
    assert "type schedule needs a `schedule` block" in status.message
