"""Properties of the Alertmanager webhook reader over arbitrary JSON: any parsed body is
either read into alerts whose messages can be published, or refused with an InvalidInput
naming the problem (a 422), never another exception (a 500)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.definitions import alertmanager_source
from tests.support.properties import BUDGETS, check
from vigil.common.definitions import Definition
from vigil.common.errors import InvalidInput
from vigil.common.testing import EPOCH, definitions_view
from vigil.ingest.adapters.alertmanager import AlertmanagerSource
from vigil.ingest.alerts import alert_messages

type Json = Any

# Any text, lone surrogates included: `json.loads` turns "\ud800" into one.
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON: st.SearchStrategy[Json] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
TIMES = st.sampled_from(
    ["2026-11-24T09:00:00Z", "2026-11-24T09:00:00.123456789+02:00", "0001-01-01T00:00:00Z"]
)
LABELS = st.dictionaries(TEXT, TEXT, max_size=4)
STATUS = st.sampled_from(["firing", "resolved"])


def alerts(wrong: st.SearchStrategy[Json]) -> st.SearchStrategy[dict[str, Json]]:
    return st.fixed_dictionaries(
        {"status": STATUS | wrong, "labels": LABELS | wrong, "startsAt": TIMES | wrong},
        optional={
            "annotations": LABELS | wrong,
            "endsAt": TIMES | wrong,
            "generatorURL": TEXT | wrong,
            "fingerprint": TEXT | wrong,
        },
    )


def payloads(wrong: st.SearchStrategy[Json]) -> st.SearchStrategy[dict[str, Json]]:
    """Bodies shaped like a real one; with `wrong`, any field may be of another shape."""
    return st.fixed_dictionaries(
        {"status": STATUS | wrong, "alerts": st.lists(alerts(wrong), max_size=3) | wrong},
        optional={
            "version": st.just("4") | wrong,
            "groupKey": TEXT | wrong,
            "truncatedAlerts": st.integers() | wrong,
            "receiver": TEXT | wrong,
            "groupLabels": LABELS | wrong,
            "commonLabels": LABELS | wrong,
            "commonAnnotations": LABELS | wrong,
            "externalURL": TEXT | wrong,
        },
    )


BODIES = payloads(st.nothing()) | payloads(JSON) | JSON


def _source() -> Definition:
    found = definitions_view(alertmanager_source("ops")).source_definition("ops", "am")
    assert found is not None
    return found


SOURCE = _source()


@BUDGETS
def test_any_json_body_is_read_or_refused_with_invalid_input(budget: str) -> None:
    @given(BODIES)
    @example(
        {
            "status": "firing",
            "alerts": [{"status": "firing", "labels": {"x": "\ud800"}, "startsAt": "2026-11-24"}],
        }
    )
    @example({"status": "firing", "alerts": [], "groupKey": "\udfff"})
    def holds(document: Json) -> None:
        # What `json.loads` would hand over (tuples are lists, keys are strings).
        document = json.loads(json.dumps(document))
        try:
            batch = AlertmanagerSource().read(document, source=SOURCE)
        except InvalidInput as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert refusal.startswith("body is not an Alertmanager webhook payload")
            return
        messages = alert_messages(batch, namespace="ops", source="am", received_at=EPOCH)
        assert len(messages) == len(document["alerts"])
        for outgoing in messages:
            outgoing.message.model_dump_json()

    check(budget, holds)
