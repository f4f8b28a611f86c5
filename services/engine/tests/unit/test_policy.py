"""`admit`: cooldown and the concurrency policy as a pure decision, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.documents import make_execution
from vigil.common.documents import Execution
from vigil.common.messages import Alert, AlertReceived
from vigil.common.resources import Workflow
from vigil.engine.domain.policy import (
    Replace,
    Start,
    Suppress,
    admit,
    concurrency_key,
    is_guarded,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def workflow(**spec: Any) -> Workflow:
    return Workflow.model_validate(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "wf", "namespace": "ops"},
            "spec": {"steps": [{"name": "s", "cli": {"command": ["true"]}}], **spec},
        }
    )


def earlier(minutes: float) -> Execution:
    return make_execution(f"ex-{minutes}", at=T0 - timedelta(minutes=minutes))


def test_allow_without_cooldown_always_starts_without_an_exclusive_key() -> None:
    flow = workflow()
    assert not is_guarded(flow)
    assert admit(flow, key="k", received_at=T0, newest=earlier(1), unfinished=[earlier(1)]) == (
        Start()
    )


def test_cooldown_suppresses_while_the_newest_execution_is_recent() -> None:
    flow = workflow(cooldown="10m")
    assert is_guarded(flow)
    decision = admit(flow, key="k", received_at=T0, newest=earlier(9), unfinished=[])
    assert decision == Suppress(reason="cooldown")


def test_cooldown_lets_an_alert_through_once_it_has_passed() -> None:
    flow = workflow(cooldown="10m")
    assert admit(flow, key="k", received_at=T0, newest=earlier(11), unfinished=[]) == Start()
    assert admit(flow, key="k", received_at=T0, newest=None, unfinished=[]) == Start()


@pytest.mark.parametrize("policy", ["Forbid", "Replace"])
def test_an_exclusive_policy_with_nothing_running_starts_holding_the_key(policy: str) -> None:
    flow = workflow(concurrency={"policy": policy})
    decision = admit(flow, key="db-1", received_at=T0, newest=None, unfinished=[])
    assert decision == Start(exclusive_key="ops/wf/db-1")


def test_forbid_suppresses_while_one_runs_and_names_it() -> None:
    flow = workflow(concurrency={"policy": "Forbid"})
    running = earlier(1)
    decision = admit(flow, key="db-1", received_at=T0, newest=running, unfinished=[running])
    assert decision == Suppress(reason="forbid", running=running.id)


def test_replace_cancels_every_unfinished_one_then_starts() -> None:
    flow = workflow(concurrency={"policy": "Replace"})
    running = [earlier(2), earlier(1)]
    decision = admit(flow, key="db-1", received_at=T0, newest=running[1], unfinished=running)
    assert decision == Replace(cancel=tuple(running), exclusive_key="ops/wf/db-1")


def test_cooldown_is_checked_before_the_policy() -> None:
    flow = workflow(cooldown="10m", concurrency={"policy": "Replace"})
    running = earlier(1)
    decision = admit(flow, key="k", received_at=T0, newest=running, unfinished=[running])
    assert decision == Suppress(reason="cooldown")


def test_the_concurrency_key_is_the_rendered_template_or_the_fingerprint() -> None:
    received = AlertReceived(
        namespace="ops",
        source="am",
        received_at=T0,
        alert=Alert.model_validate(
            {
                "status": "firing",
                "fingerprint": "f1",
                "labels": {"alertname": "X", "host": "db-1"},
                "startsAt": T0.isoformat(),
            }
        ),
    )
    keyed = workflow(concurrency={"key": "{{ alert.labels.host }}/disk"})
    assert concurrency_key(keyed, received) == "db-1/disk"
    assert concurrency_key(workflow(), received) == "f1"
