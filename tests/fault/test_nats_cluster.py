"""The production topology under node failures: a 3-node JetStream cluster (streams and the
config bucket with 3 replicas from `VIGIL_STREAM_REPLICAS`, `sync_interval: always`), the
services connected to the cluster's URL list, alerts arriving all along.

The streams start with one copy, as an earlier install left them, and the services raise
them to three at start. The leader of the ALERTS stream is then SIGKILLed and restarted;
once it is back and current on every stream, a second node is SIGKILLed and restarted.
Every alert ingest answered 2xx must end in exactly one execution, every step's effect must
happen exactly once (a line the cli step appends, a webhook the notify step posts), and the
time from each kill to the first alert accepted after it is printed. Ingest may answer 503
while the cluster elects a leader: the sender, as Alertmanager does, sends that alert
again, and only accepted ones count.
"""

from __future__ import annotations

import asyncio
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
from tests.support.nats_cluster import NatsCluster, running_cluster
from tests.support.platform import Platform, WebhookReceiver, running_platform
from vigil.common.adapters.provisioning import provision_bus
from vigil.common.settings import ServiceSettings
from vigil.common.streams import stream_specs
from vigil.common.subjects import CONFIG_BUCKET

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEND_INTERVAL = 0.1  # seconds between alerts: ~10 alerts/s while nothing fails
ACCEPTED_BEFORE_KILL = 20  # alerts accepted in steady state before the first kill
ACCEPTED_WHILE_DOWN = 20  # alerts accepted after a kill before that node is restarted
RECOVERY_TIMEOUT = 120.0  # a kill to the first alert accepted after it (2-core CI machine)
CURRENT_TIMEOUT = 180.0  # a restarted node to current on every stream
SETTLE_TIMEOUT = 360.0  # sending stopped to every execution finished
STREAMS = [spec.name for spec in stream_specs()] + [f"KV_{CONFIG_BUCKET}"]

DEFINITIONS = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: hook, namespace: cluster}
spec:
  type: webhook
  webhook: {url: "RECEIVER_URL", timeout: 5s}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: every-alert, namespace: cluster}
spec:
  trigger: {matchers: ['alertname="Failover"']}
  steps:
    - name: record
      cli:
        command: ["sh", "-c", "echo \\"$VIGIL_IDEMPOTENCY_KEY\\" >> RUNS_FILE"]
    - name: tell
      notify: {sinks: [hook], title: "{{ alert.labels.n }}"}
"""


class Sender(threading.Thread):
    """Posts one alert at a time until stopped, each until it is answered 2xx."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.accepted: dict[int, float] = {}  # n -> when the 2xx came
        # Every attempt: (sent at, answered at, accepted); for the time to recover.
        self.attempts: list[tuple[float, float, bool]] = []
        self.refused: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._send()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def _send(self) -> None:
        n = 0
        with httpx.Client(timeout=30.0) as client:
            while not self.stopping.is_set():
                body = alertmanager_body([firing_alert("Failover", n=str(n))])
                while True:  # a refused alert is sent again, even once stopping
                    sent = time.monotonic()
                    try:
                        answer = client.post(self.url, json=body)
                    except httpx.HTTPError as exc:
                        self.refused[type(exc).__name__] += 1
                    else:
                        if answer.status_code < 300:
                            self.accepted[n] = time.monotonic()
                            self.attempts.append((sent, self.accepted[n], True))
                            break
                        if answer.status_code < 500:
                            msg = f"ingest answered {answer.status_code}: {answer.text}"
                            raise AssertionError(msg)
                        self.refused[str(answer.status_code)] += 1
                    self.attempts.append((sent, time.monotonic(), False))
                    time.sleep(0.2)
                n += 1
                time.sleep(SEND_INTERVAL)

    def accepted_after(self, moment: float) -> list[float]:
        """When alerts sent after `moment` were accepted."""
        return [answered for sent, answered, ok in list(self.attempts) if ok and sent > moment]

    def wait_for_accepted(self, count: int, *, after: float, timeout: float) -> float:
        """Wait until `count` alerts sent after `after` were accepted; return when the
        first of them was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            accepted = self.accepted_after(after)
            if len(accepted) >= count:
                return accepted[0]
            time.sleep(0.1)
        msg = (
            f"{len(self.accepted_after(after))} of {count} alerts accepted within {timeout}s "
            f"(refused: {dict(self.refused)})"
        )
        raise AssertionError(msg)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


def all_executions(platform: Platform) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 500, "namespace": "cluster"}
        if cursor:
            params["cursor"] = cursor
        page = platform.api.get("/api/v1/executions", params=params, timeout=30).json()
        items += page["items"]
        cursor = page["next"]
        if not cursor:
            return items


def kill_and_restart(cluster: NatsCluster, sender: Sender, node: str) -> float:
    """SIGKILL `node`, wait for alerts to be accepted without it, restart it, and wait
    until it is current on every stream; return the seconds to the first accepted alert."""
    cluster.kill(node)
    killed_at = time.monotonic()
    first = sender.wait_for_accepted(1, after=killed_at, timeout=RECOVERY_TIMEOUT)
    sender.wait_for_accepted(ACCEPTED_WHILE_DOWN, after=killed_at, timeout=RECOVERY_TIMEOUT)
    cluster.start(node)
    cluster.wait_for_meta_leader(timeout=CURRENT_TIMEOUT)
    cluster.wait_until_current(STREAMS, timeout=CURRENT_TIMEOUT)
    return first - killed_at


def test_no_accepted_alert_is_lost_and_no_effect_repeats_when_cluster_nodes_die(
    tmp_path: Path, receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_cluster(tmp_path / "nats") as cluster:
        # As an earlier install with one replica left them: the services raise it to three.
        earlier = ServiceSettings(nats_url=cluster.urls, stream_replicas=1)
        asyncio.run(provision_bus(earlier, timeout=CURRENT_TIMEOUT))
        single = cluster.placement("ALERTS")
        assert single is not None, "ALERTS was not provisioned"
        assert single.followers == {}, single
        run_through_failures(cluster, tmp_path, receiver, capsys)


def run_through_failures(
    cluster: NatsCluster,
    tmp_path: Path,
    receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = tmp_path / "runs.log"
    definitions = write_definitions(
        tmp_path / "definitions",
        alertmanager_source("cluster"),
        DEFINITIONS.replace("RECEIVER_URL", receiver.url).replace("RUNS_FILE", str(runs)),
    )
    with running_platform(
        definitions=definitions,
        data_dir=tmp_path / "data",
        extra_args=["--nats-url", cluster.urls],
        env={"VIGIL_STREAM_REPLICAS": "3"},
    ) as platform:
        # The services raised every stream and the bucket to three copies.
        leaders = cluster.wait_until_current(STREAMS, timeout=CURRENT_TIMEOUT)
        sender = Sender(f"{platform.url}/hooks/cluster/am")
        sender.start()
        started = time.monotonic()
        sender.wait_for_accepted(ACCEPTED_BEFORE_KILL, after=started, timeout=RECOVERY_TIMEOUT)

        first = leaders["ALERTS"]
        recovered = [kill_and_restart(cluster, sender, first)]
        # The second: the ALERTS leader again if the election moved it elsewhere, else a
        # follower; never the node just restarted.
        leader = cluster.wait_until_current(STREAMS, timeout=CURRENT_TIMEOUT)["ALERTS"]
        second = leader if leader != first else next(n for n in cluster.nodes if n != first)
        recovered.append(kill_and_restart(cluster, sender, second))

        sender.wait_for_accepted(ACCEPTED_BEFORE_KILL, after=time.monotonic(), timeout=60)
        sender.stopping.set()
        sender.join(timeout=RECOVERY_TIMEOUT)
        assert not sender.is_alive(), "the last alert was never accepted"
        assert sender.error is None, sender.error
        accepted = sorted(sender.accepted)
        assert accepted == list(range(len(accepted)))

        deadline = time.monotonic() + SETTLE_TIMEOUT
        executions: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            executions = all_executions(platform)
            finished = [e for e in executions if e["state"] not in ("pending", "running")]
            if len(executions) >= len(accepted) and len(finished) == len(executions):
                break
            time.sleep(1.0)

        by_alert = Counter(int(e["alert"]["labels"]["n"]) for e in executions)
        lost = sorted(set(accepted) - set(by_alert))
        assert not lost, f"accepted alerts without an execution: {lost[:20]}"
        twice = {n: count for n, count in by_alert.items() if count > 1}
        assert not twice, f"alerts with more than one execution: {twice}"
        assert set(by_alert) == set(accepted)
        states = Counter(e["state"] for e in executions)
        assert states == {"succeeded": len(accepted)}, (states, platform.logs()[-4000:])

        # Effects: the cli step's line and the notification, once per execution.
        ran = Counter(runs.read_text().split())
        assert ran == dict.fromkeys((f"{e['id']}/record/1" for e in executions), 1)
        posted = Counter(post.headers["idempotency-key"] for post in receiver.posts)
        assert posted == dict.fromkeys((f"{e['id']}/tell/1/hook" for e in executions), 1)

        with capsys.disabled():  # shown in the test run's output, not only on failure
            print(  # noqa: T201 - the figure this test exists to show
                f"\n[cluster] {len(accepted)} alerts accepted, refused meanwhile "
                f"{dict(sender.refused)}; killed {first} (ALERTS leader) then {second}; "
                f"time to recover (kill to first accepted alert): "
                f"{', '.join(f'{seconds:.1f}s' for seconds in recovered)}"
            )
