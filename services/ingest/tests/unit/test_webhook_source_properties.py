"""Properties of the `webhook` source over arbitrary JSON: any body ingest would hand over
(valid Unicode: lone surrogates are refused before) is either read into alerts whose
messages can be published, or refused with an InvalidInput (a 422), never another
exception (a 500)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.properties import BUDGETS, check
from vigil.common.errors import InvalidInput
from vigil.common.testing import EPOCH, FakeClock, definitions_view
from vigil.ingest.adapters.webhook import WebhookSource
from vigil.ingest.alerts import alert_messages

type Json = Any

EXAMPLES = Path(__file__).parents[4] / "examples" / "sources"
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
JSON: st.SearchStrategy[Json] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
TIMES = st.sampled_from(["2026-11-24T09:00:00Z", "2026-11-24T09:00:00", "now", ""])
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved", "pending"]) | JSON,
        "labels": st.dictionaries(TEXT, TEXT, max_size=3) | JSON,
        "annotations": st.dictionaries(TEXT, TEXT, max_size=3) | JSON,
        "fingerprint": TEXT | JSON,
        "startsAt": TIMES | JSON,
        "dashboardURL": TEXT | JSON,
        "valueString": TEXT | JSON,
    },
)
BODIES = st.fixed_dictionaries({"alerts": st.lists(ITEM, max_size=4) | JSON}) | JSON

GRAFANA = definitions_view((EXAMPLES / "grafana-webhook.yaml").read_text()).source_definition(
    "monitoring", "grafana"
)
GITHUB = definitions_view((EXAMPLES / "github-events.yaml").read_text()).source_definition(
    "ci", "github"
)


@BUDGETS
def test_any_json_body_is_read_or_refused_with_invalid_input(budget: str) -> None:
    assert GRAFANA is not None
    assert GITHUB is not None

    @given(BODIES)
    @example({"alerts": [{"labels": {"a": "b"}, "status": "firing", "fingerprint": "f"}]})
    @example({"workflow_run": {"conclusion": None}})
    def holds(document: Json) -> None:
        document = json.loads(json.dumps(document))  # what `json.loads` would hand over
        for definition in (GRAFANA, GITHUB):
            try:
                batch = WebhookSource(clock=FakeClock()).read(document, source=definition)
            except InvalidInput:
                continue
            messages = alert_messages(batch, namespace="ops", source="hook", received_at=EPOCH)
            for outgoing in messages:
                outgoing.message.model_dump_json()

    check(budget, holds)
