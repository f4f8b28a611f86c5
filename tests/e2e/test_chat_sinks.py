"""A workflow's notify reaches Slack through `vigil up`: the sink posts the default report
as Block Kit to a fake Slack Web API (`VIGIL_SINK_SLACK_API_URL`) with the bot token from
a Secret, and the execution's notify step shows the delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.chat import SLACK_API_OK, FakeChat, fake_chat
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
DISK = workflow(
    "disk",
    """\
- name: describe
  cli: {command: ["echo", "disk is full"]}
- name: report
  notify: {sinks: [oncall]}
""",
)


@pytest.fixture
def slack() -> Iterator[FakeChat]:
    with fake_chat(SLACK_API_OK) as server:
        yield server


@pytest.fixture
def platform(tmp_path: Path, slack: FakeChat) -> Iterator[Platform]:
    definitions = write_definitions(
        tmp_path / "definitions", alertmanager_source("ops"), SLACK_SECRET, SLACK_SINK, DISK
    )
    env = {
        "VIGIL_SINK_SLACK_API_URL": slack.url("/api"),
        "VIGIL_SINK_PUBLIC_URL": "https://vigil.example.com",
    }
    with running_platform(definitions=definitions, data_dir=tmp_path / "data", env=env) as up:
        yield up


def test_a_workflows_notify_reaches_slack_as_block_kit(platform: Platform, slack: FakeChat) -> None:
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
    report = next(s for s in execution["steps"] if s["name"] == "report")
    assert report["output"]["deliveries"] == [
        {"sink": "oncall", "status": "delivered", "id": f"{execution['id']}/report/1/oncall"}
    ]
