"""A workflow's notify reaches Slack and Teams through `vigil up`: the sink posts the
default report as Block Kit to a fake Slack Web API (`VIGIL_SINK_SLACK_API_URL`) with the
bot token from a Secret, and as an Adaptive Card to a fake Teams workflow webhook whose URL
is in a Secret; the execution's notify step shows both deliveries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.chat import SLACK_API_OK, TEAMS_ACCEPTED, FakeChat, fake_chat
from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    workflow,
    write_definitions,
)
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TOKEN = "xoxb-e2e-token"
SLACK_SECRET = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: slack-bot, namespace: ops}}
stringData: {{token: {TOKEN}}}
"""
SLACK_SINK = """\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: oncall, namespace: ops}
spec:
  type: slack
  slack: {tokenSecretRef: {name: slack-bot, key: token}, channel: C0123ONCALL}
"""
TEAMS_SINK = """\
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: teams, namespace: ops}
spec:
  type: msteams
  msteams: {webhookUrlSecretRef: {name: teams-webhook, key: url}}
"""
DISK = workflow(
    "disk",
    """\
- name: describe
  cli: {command: ["echo", "disk is full"]}
- name: report
  notify: {sinks: [oncall, teams]}
""",
)


@pytest.fixture
def slack() -> Iterator[FakeChat]:
    with fake_chat(SLACK_API_OK) as server:
        yield server


@pytest.fixture
def teams() -> Iterator[FakeChat]:
    with fake_chat(TEAMS_ACCEPTED) as server:
        yield server


@pytest.fixture
def platform(tmp_path: Path, slack: FakeChat, teams: FakeChat) -> Iterator[Platform]:
    teams_secret = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: teams-webhook, namespace: ops}}
stringData: {{url: "{teams.url("/workflows/w1/triggers/manual/paths/invoke")}"}}
"""
    definitions = write_definitions(
        tmp_path / "definitions",
        alertmanager_source("ops"),
        SLACK_SECRET,
        SLACK_SINK,
        teams_secret,
        TEAMS_SINK,
        DISK,
    )
    env = {
        "VIGIL_SINK_SLACK_API_URL": slack.url("/api"),
        "VIGIL_SINK_PUBLIC_URL": "https://vigil.example.com",
    }
    with running_platform(definitions=definitions, data_dir=tmp_path / "data", env=env) as up:
        yield up


def test_a_workflows_notify_reaches_slack_as_block_kit_and_teams_as_an_adaptive_card(
    platform: Platform, slack: FakeChat, teams: FakeChat
) -> None:
    alert = firing_alert("DiskFull", severity="critical", instance="db-1")
    alert["annotations"] = {"summary": "db-1's disk is 97% full"}
    answer = httpx.post(f"{platform.url}/hooks/ops/am", json=alertmanager_body([alert]), timeout=10)
    assert answer.status_code < 300, answer.text

    (post,) = slack.wait_for(1, timeout=90)
    execution = platform.newest_finished(timeout=60)

    assert execution["state"] == "succeeded", execution
    assert post.path == "/api/chat.postMessage"
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.body["channel"] == "C0123ONCALL"
    blocks = post.body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "DiskFull is firing (critical)"},
    }
    assert blocks[1]["text"]["text"] == "db-1's disk is 97% full"
    steps = next(b for b in blocks if "text" in b and b["text"]["text"].startswith("*Steps*"))
    assert ":white_check_mark: *describe* (cli) succeeded in" in steps["text"]["text"]
    assert blocks[-1]["elements"][0]["url"] == (
        f"https://vigil.example.com/api/v1/executions/{execution['id']}"
    )
    (card_post,) = teams.wait_for(1, timeout=30)
    assert card_post.path == "/workflows/w1/triggers/manual/paths/invoke"
    (attachment,) = card_post.body["attachments"]
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "DiskFull is firing (critical)"
    report = next(s for s in execution["steps"] if s["name"] == "report")
    assert report["output"]["deliveries"] == [
        {"sink": name, "status": "delivered", "id": f"{execution['id']}/report/1/{name}"}
        for name in ("oncall", "teams")
    ]
