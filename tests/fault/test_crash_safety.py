"""Crash safety (DESIGN §6): alerts keep arriving while every service is SIGKILLed in turn
and nats-server is killed once. Every alert Vigil answered 2xx must end in exactly one
finished execution, none may be left running, and no notification may be delivered under
two different idempotency keys. The sender behaves like Alertmanager: it retries on 5xx and
on connection errors until it gets a 2xx.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    firing_alert,
    write_definitions,
)
from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ALERTS = 320
BATCH = 4
SEND_INTERVAL = 0.12  # seconds between payloads: ~30 alerts/s for ~8 s
SETTLE_SECONDS = 180.0

DEFINITIONS = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: hook, namespace: chaos}
spec:
  type: webhook
  webhook: {url: "RECEIVER_URL", timeout: 2s}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: every-alert, namespace: chaos}
spec:
  trigger: {matchers: ['alertname="Chaos"']}
  steps:
    - name: record
      cli:
        command: ["sh", "-c", "echo \\"$VIGIL_IDEMPOTENCY_KEY\\" >> RUNS_FILE; echo ran"]
    - name: ok
      condition: 'steps.record.output.stdout.startsWith("ran")'
    - name: tell
      when: steps.ok.output.result
      notify: {sinks: [hook], title: "{{ alert.labels.n }}"}
"""


class Sender(threading.Thread):
    """Posts ALERTS alerts in payloads of BATCH; retries each payload until it gets 2xx."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acknowledged: list[int] = []
        self.retries = 0
        self.failures: Counter[str] = Counter()

    def payload(self, first: int) -> dict[str, Any]:
        return alertmanager_body(
            [firing_alert("Chaos", n=str(n)) for n in range(first, first + BATCH)]
        )

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            for first in range(0, ALERTS, BATCH):
                body = self.payload(first)
                while True:
                    try:
                        answer = client.post(self.url, json=body)
                    except httpx.HTTPError as exc:
                        self.failures[type(exc).__name__] += 1
                    else:
                        if answer.status_code < 300:
                            self.acknowledged += range(first, first + BATCH)
                            break
                        if answer.status_code < 500:
                            msg = f"Vigil answered {answer.status_code}: {answer.text}"
                            raise AssertionError(msg)
                        self.failures[str(answer.status_code)] += 1
                    self.retries += 1
                    time.sleep(0.2)
                time.sleep(SEND_INTERVAL)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


def kill(platform: Platform, service: str) -> None:
    pids = platform.service_pids(service)
    assert pids, f"{service} is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def wait_until_running(platform: Platform, service: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if platform.service_pids(service):
            return
        time.sleep(0.05)
    msg = f"{service} was not restarted within {timeout}s"
    raise AssertionError(msg)


def all_executions(platform: Platform) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 500, "namespace": "chaos"}
        if cursor:
            params["cursor"] = cursor
        page = platform.api.get("/api/v1/executions", params=params, timeout=10).json()
        items += page["items"]
        cursor = page["next"]
        if not cursor:
            return items


def test_no_accepted_alert_is_lost_and_nothing_runs_twice_under_sigkill(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    runs = tmp_path / "runs.log"
    definitions = write_definitions(
        tmp_path / "definitions",
        alertmanager_source("chaos"),
        DEFINITIONS.replace("RECEIVER_URL", receiver.url).replace("RUNS_FILE", str(runs)),
    )
    with running_platform(definitions=definitions, data_dir=tmp_path / "data") as platform:
        sender = Sender(f"{platform.url}/hooks/chaos/am")
        sender.start()
        for service in ("ingest", "engine", "nats", "executor", "sink"):
            time.sleep(1.0)
            assert sender.is_alive(), "alerts must still be arriving when a service dies"
            kill(platform, service)
            wait_until_running(platform, service)
        sender.join(timeout=240)
        assert not sender.is_alive(), "the sender never got all its alerts accepted"
        assert sorted(sender.acknowledged) == list(range(ALERTS))

        deadline = time.monotonic() + SETTLE_SECONDS
        executions: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            executions = all_executions(platform)
            finished = [e for e in executions if e["state"] not in ("pending", "running")]
            if len(executions) >= ALERTS and len(finished) == len(executions):
                break
            time.sleep(0.5)

        by_alert = Counter(e["alert"]["labels"]["n"] for e in executions)
        assert sorted(by_alert) == sorted(str(n) for n in range(ALERTS)), "an alert was lost"
        assert max(by_alert.values()) == 1, "an alert started two executions"
        states = Counter(e["state"] for e in executions)
        assert states == {"succeeded": ALERTS}, (states, platform.logs()[-3000:])
        assert all(e["steps"][2]["state"] == "succeeded" for e in executions)

        # Notifications: every execution delivered under its one key (a crash between
        # sending and recording may repeat a delivery, but under the same key).
        keys = {p.headers["idempotency-key"] for p in receiver.posts}
        assert keys == {f"{e['id']}/tell/1/hook" for e in executions}
        titles = Counter(p.body["title"] for p in receiver.posts)
        assert set(titles) == {str(n) for n in range(ALERTS)}

        # cli steps run at least once; every run used the attempt's idempotency key.
        ran = Counter(runs.read_text().split())
        assert set(ran) == {f"{e['id']}/record/1" for e in executions}
        assert platform.logs().count("service_exited") >= 5
        summary = (
            f"\n[fault] {ALERTS} alerts, sender retries {sender.retries} {dict(sender.failures)},"
            f" repeated deliveries {len(receiver.posts) - len(keys)},"
            f" repeated cli runs {sum(ran.values()) - len(ran)}\n"
        )
        os.write(2, summary.encode())
