"""The workflow language's time and control features, end to end through `vigil up`:
retries, step timeouts, waits that end when the alert resolves, the workflow timeout,
concurrency policies, cancellation (the local process is killed) and manual runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.definitions import (
    alertmanager_body,
    alertmanager_source,
    log_sink,
    write_definitions,
)
from tests.support.definitions import firing_alert as alert
from tests.support.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SETTLE_SECONDS = 60.0
SLEEP_MARK = "31.739"  # a sleep duration no other process on the machine uses

WORKFLOWS = """
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: flaky, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Flaky"']}
  steps:
    - name: probe
      # fails the first time (no marker yet), succeeds the second
      cli:
        command:
          - sh
          - -c
          - '[ -e "$MARK" ] && echo second || { touch "$MARK"; echo first; exit 3; }'
        env: {MARK: "{{ alert.annotations.marker }}"}
      retry: {attempts: 3, backoff: 500ms}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: slow, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Slow"']}
  steps:
    - name: hang
      cli: {command: ["sleep", "SLEEP_MARK"]}
    - name: after
      notify: {sinks: [console]}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: deadline, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Deadline"']}
  steps:
    - name: hang
      cli: {command: ["sleep", "20"], timeout: 1s}
  onFailure:
    - name: tell
      notify: {sinks: [console], message: "failed: {{ execution.error }}"}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: settle, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Settle"']}
  steps:
    - name: settle
      wait: {duration: 60s, until: 'alert.status == "resolved"'}
    - name: report
      notify: {sinks: [console], title: "{{ alert.labels.alertname }} settled"}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: bounded, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Bounded"']}
  timeout: 2s
  steps:
    - name: settle
      wait: {duration: 60s}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: exclusive, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Exclusive"']}
  concurrency: {key: "{{ alert.labels.service }}", policy: Forbid}
  steps:
    - name: settle
      wait: {duration: 60s, until: 'alert.status == "resolved"'}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: newest, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Newest"']}
  concurrency: {key: "{{ alert.labels.service }}", policy: Replace}
  steps:
    - name: settle
      wait: {duration: 60s}
---
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: calm, namespace: ops}
spec:
  trigger: {matchers: ['alertname="Calm"']}
  concurrency: {key: "{{ alert.labels.service }}"}
  cooldown: 1h
  steps:
    - name: tell
      notify: {sinks: [console]}
""".replace("SLEEP_MARK", SLEEP_MARK)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    definitions = tmp_path_factory.mktemp("definitions")
    write_definitions(definitions, alertmanager_source("ops"), log_sink("ops"), WORKFLOWS)
    with running_platform(
        definitions=definitions, data_dir=tmp_path_factory.mktemp("data")
    ) as running:
        yield running


def send(platform: Platform, *alerts: dict[str, Any], status: str = "firing") -> None:
    body = alertmanager_body(list(alerts), status=status)
    answer = httpx.post(f"{platform.url}/hooks/ops/am", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def of_workflow(platform: Platform, workflow: str) -> list[dict[str, Any]]:
    answer = platform.api.get("/api/v1/executions", params={"workflow": workflow}, timeout=5)
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def wait_for(platform: Platform, workflow: str, states: set[str]) -> dict[str, Any]:
    """The newest execution of `workflow` once it is in one of `states`."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        found = of_workflow(platform, workflow)
        if found and found[0]["state"] in states:
            detail: dict[str, Any] = platform.api.get(
                f"/api/v1/executions/{found[0]['id']}", timeout=5
            ).json()
            return detail
        time.sleep(0.1)
    msg = f"{workflow}: no execution reached {states}: {of_workflow(platform, workflow)}"
    raise AssertionError(f"{msg}\n{platform.logs()[-4000:]}")


def wait_for_id(platform: Platform, execution_id: str, states: set[str]) -> dict[str, Any]:
    """Execution `execution_id` once it exists and is in one of `states`."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        answer = platform.api.get(f"/api/v1/executions/{execution_id}", timeout=5)
        if answer.status_code == 200 and answer.json()["state"] in states:
            found: dict[str, Any] = answer.json()
            return found
        time.sleep(0.1)
    msg = f"{execution_id}: did not reach {states}"
    raise AssertionError(f"{msg}\n{platform.logs()[-4000:]}")


def step(execution: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in execution["steps"] if s["name"] == name)
    return found


def sleeping_processes() -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if SLEEP_MARK.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_a_failing_step_is_retried_with_backoff_until_it_succeeds(
    platform: Platform, tmp_path: Path
) -> None:
    flaky = alert("Flaky")
    flaky["annotations"] = {"marker": str(tmp_path / "marker")}
    send(platform, flaky)
    execution = wait_for(platform, "flaky", {"succeeded", "failed"})
    assert execution["state"] == "succeeded", execution
    probe = step(execution, "probe")
    assert probe["attempt"] == 2
    assert probe["output"]["stdout"] == "second\n"


def test_a_step_that_outlives_its_timeout_fails_and_on_failure_runs(platform: Platform) -> None:
    send(platform, alert("Deadline"))
    execution = wait_for(platform, "deadline", {"failed", "succeeded"})
    assert execution["state"] == "failed"
    assert step(execution, "hang")["state"] == "timed_out"
    assert execution["error"].startswith("step hang timed_out")
    assert step(execution, "tell")["state"] == "succeeded"


def test_a_wait_ends_as_soon_as_the_alert_resolves(platform: Platform) -> None:
    send(platform, alert("Settle"))
    running = wait_for(platform, "settle", {"running"})
    assert step(running, "settle")["state"] == "running"
    send(platform, alert("Settle", status="resolved"), status="resolved")
    execution = wait_for(platform, "settle", {"succeeded", "failed"})
    assert execution["state"] == "succeeded"
    output = step(execution, "settle")["output"]
    assert output["until"] is True
    assert output["waitedSeconds"] < 30  # not the full 60 s
    assert step(execution, "report")["state"] == "succeeded"


def test_the_workflow_timeout_ends_a_long_wait(platform: Platform) -> None:
    send(platform, alert("Bounded"))
    execution = wait_for(platform, "bounded", {"timed_out", "succeeded", "failed"})
    assert execution["state"] == "timed_out"
    assert execution["error"] == "workflow timed out after 2s"
    assert step(execution, "settle")["state"] == "cancelled"


def test_forbid_starts_no_second_execution_for_the_same_key(platform: Platform) -> None:
    send(platform, alert("Exclusive", service="db", instance="a"))
    first = wait_for(platform, "exclusive", {"running"})
    send(platform, alert("Exclusive", service="db", instance="b"))
    send(platform, alert("Exclusive", service="web", instance="c"))
    deadline = time.monotonic() + SETTLE_SECONDS
    while len(of_workflow(platform, "exclusive")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # give a wrongly started second "db" execution time to appear
    keys = sorted(e["concurrencyKey"] for e in of_workflow(platform, "exclusive"))
    assert keys == ["db", "web"]
    assert first["id"] in {e["id"] for e in of_workflow(platform, "exclusive")}


def test_replace_cancels_the_running_execution_for_the_same_key(platform: Platform) -> None:
    send(platform, alert("Newest", service="db", instance="a"))
    first = wait_for(platform, "newest", {"running"})
    send(platform, alert("Newest", service="db", instance="b"))
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        found = {e["id"]: e for e in of_workflow(platform, "newest")}
        if len(found) == 2 and found[first["id"]]["state"] == "cancelled":
            break
        time.sleep(0.1)
    assert found[first["id"]]["state"] == "cancelled"
    assert found[first["id"]]["error"] == "replaced by a newer alert"
    (second,) = (e for e in found.values() if e["id"] != first["id"])
    assert second["state"] == "running"
    assert second["alert"]["labels"]["instance"] == "b"


def test_cooldown_starts_nothing_for_the_same_key_too_soon(platform: Platform) -> None:
    send(platform, alert("Calm", service="db", instance="a"))
    first = wait_for(platform, "calm", {"succeeded"})
    send(platform, alert("Calm", service="db", instance="b"))
    send(platform, alert("Calm", service="web", instance="c"))
    deadline = time.monotonic() + SETTLE_SECONDS
    while len(of_workflow(platform, "calm")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # give a wrongly started "db" execution time to appear
    keys = sorted(e["concurrencyKey"] for e in of_workflow(platform, "calm"))
    assert keys == ["db", "web"]
    assert first["id"] in {e["id"] for e in of_workflow(platform, "calm")}


def test_cancel_kills_the_running_process_and_runs_nothing_further(platform: Platform) -> None:
    send(platform, alert("Slow"))
    running = wait_for(platform, "slow", {"running"})
    deadline = time.monotonic() + 10
    while not sleeping_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeping_processes(), "the cli step never started"

    answer = platform.api.post(
        f"/api/v1/executions/{running['id']}/cancel",
        json={"reason": "operator says stop"},
        timeout=5,
    )
    assert answer.status_code == 202, answer.text
    execution = wait_for(platform, "slow", {"cancelled"})
    assert execution["error"] == "operator says stop"
    assert [s["state"] for s in execution["steps"]] == ["cancelled", "skipped"]
    deadline = time.monotonic() + 10
    while sleeping_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeping_processes() == []  # the process was killed, not left to finish

    again = platform.api.post(f"/api/v1/executions/{running['id']}/cancel", timeout=5)
    assert again.status_code == 409
    missing = platform.api.post("/api/v1/executions/nope/cancel", timeout=5)
    assert missing.status_code == 404


def test_a_manual_run_starts_the_workflow_with_the_given_alert(
    platform: Platform, tmp_path: Path
) -> None:
    before = {e["id"] for e in of_workflow(platform, "flaky")}
    answer = platform.api.post(
        "/api/v1/workflows/ops/flaky/run",
        json={
            "labels": {"alertname": "Manual", "team": "db"},
            "annotations": {"marker": str(tmp_path / "manual-marker")},
        },
        timeout=5,
    )
    assert answer.status_code == 202, answer.text
    execution_id = answer.json()["executionId"]
    assert execution_id not in before
    execution = wait_for_id(platform, execution_id, {"succeeded", "failed"})
    assert execution["state"] == "succeeded"
    assert execution["alert"]["labels"]["team"] == "db"
    assert execution["source"] == "manual"

    unknown = platform.api.post(
        "/api/v1/workflows/ops/nope/run", json={"labels": {"a": "b"}}, timeout=5
    )
    assert unknown.status_code == 404
    invalid = platform.api.post("/api/v1/workflows/ops/flaky/run", json={"labels": {}}, timeout=5)
    assert invalid.status_code == 422


def test_stats_report_alerts_executions_and_lag(platform: Platform) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        stats = platform.api.get("/api/v1/stats", timeout=5).json()
        if stats["alerts"]["recorded"] == stats["alerts"]["received"]:
            break
        time.sleep(0.1)
    assert stats["alerts"]["received"] >= 8
    assert stats["alerts"]["recorded"] == stats["alerts"]["received"]
    assert stats["executions"]["succeeded"] >= 3
    assert stats["executions"]["cancelled"] >= 1
    consumers = {(c["stream"], c["consumer"]): c["lag"] for c in stats["consumers"]}
    assert consumers[("ALERTS", "engine")] == 0
