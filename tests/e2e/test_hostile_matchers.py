"""`vigil up` under a hostile `match=`: a regex that makes a backtracking engine run for
hours answers at once, and webhooks sent meanwhile are not held up.

Before RE2, `GET /api/v1/alerts?match=x=~"(a+)+"` over one 29-character label took 21 s
and froze ingest (Python's `re` holds the GIL in SQLite's REGEXP function): a webhook
sent meanwhile took 20 s. Here the label has 45 characters, days of backtracking.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.definitions import alertmanager_body, firing_alert, write_definitions
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DEFINITIONS = """---
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: am, namespace: ops}
spec: {type: alertmanager}
"""
BOMB = "a" * 45 + "!"
# Generous for a loaded CI machine; a backtracking engine would need days, not seconds.
ANSWER_SECONDS = 15.0


def _send(platform: Platform, alertname: str, **labels: str) -> httpx.Response:
    return httpx.post(
        f"{platform.url}/hooks/ops/am",
        json=alertmanager_body([firing_alert(alertname, **labels)]),
        timeout=ANSWER_SECONDS,
    )


def _matching(platform: Platform, *matchers: str) -> httpx.Response:
    return platform.api.get(
        "/api/v1/alerts", params={"match": list(matchers)}, timeout=ANSWER_SECONDS
    )


def _recorded(platform: Platform, alertname: str) -> None:
    """Wait until the engine has recorded `alertname` in the alert history."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _matching(platform, f'alertname="{alertname}"').json()["items"]:
            return
        time.sleep(0.2)
    raise AssertionError(platform.logs()[-4000:])


def test_a_backtracking_bomb_answers_at_once_and_webhooks_are_not_held_up(
    tmp_path: Path,
) -> None:
    folder = write_definitions(tmp_path / "definitions", DEFINITIONS)
    with running_platform(definitions=folder, data_dir=tmp_path / "data") as platform:
        assert _send(platform, "Bomb", x=BOMB).status_code == 200
        _recorded(platform, "Bomb")

        with ThreadPoolExecutor(max_workers=4) as pool:
            lookups = [
                pool.submit(_matching, platform, 'x=~"(a+)+"'),
                pool.submit(_matching, platform, 'x!~"(a|aa)+"'),
                pool.submit(_matching, platform, 'x=~"(.*a){20}"'),
            ]
            webhook = pool.submit(_send, platform, "Meanwhile", x="y")

            assert webhook.result().status_code == 200  # within ANSWER_SECONDS
            answers = [lookup.result() for lookup in lookups]

        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [len(a.json()["items"]) for a in answers] == [0, 1, 0]
        assert [a.json()["next"] for a in answers] == [None, None, None]
        _recorded(platform, "Meanwhile")
