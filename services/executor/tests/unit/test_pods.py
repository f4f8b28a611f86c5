"""The step pod and what its status means, without a server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vigil.common.messages import CliStep, StepRequest
from vigil.common.testing import EPOCH
from vigil.executor.domain.pods import PodDefaults, pod_manifest, pod_name, pod_progress

DEFAULTS = PodDefaults(
    image="ghcr.io/vigil/agent:1", resources={"requests": {"cpu": "50m", "memory": "64Mi"}}
)
PATIENCE = timedelta(seconds=60)


def request(step: str = "measure", attempt: int = 1, **cli: Any) -> StepRequest:
    return StepRequest(
        execution_id="01JEXAMPLE0000000000000000",
        namespace="ops",
        workflow="disk",
        step=step,
        attempt=attempt,
        idempotency_key=f"01JEXAMPLE0000000000000000/{step}/{attempt}",
        cli=CliStep(
            argv=["kubectl", "describe", "pod", "api; rm -rf /"],
            timeout_seconds=29.5,
            env={"LANG": "C"},
            **cli,
        ),
    )


def test_the_pod_name_is_the_attempt_and_is_a_dns_label() -> None:
    assert pod_name(request()) == "vigil-01jexample0000000000000000-measure-1"
    assert pod_name(request("check_disk_free", 12)) == (
        "vigil-01jexample0000000000000000-check-disk-free-12"
    )


def test_a_long_step_name_is_cut_and_told_apart_by_a_hash() -> None:
    first = pod_name(request("collect_everything_about_the_cluster_and_more_a"))
    second = pod_name(request("collect_everything_about_the_cluster_and_more_b"))
    assert len(first) <= 63
    assert len(second) <= 63
    assert first != second
    assert first == pod_name(request("collect_everything_about_the_cluster_and_more_a"))


def test_the_pod_runs_the_argv_as_rendered_without_a_shell_and_locked_down() -> None:
    pod = pod_manifest(request(), DEFAULTS)

    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["kubectl", "describe", "pod", "api; rm -rf /"]
    assert "args" not in container
    assert container["image"] == "ghcr.io/vigil/agent:1"
    assert container["env"] == [
        {"name": "LANG", "value": "C"},
        {"name": "VIGIL_IDEMPOTENCY_KEY", "value": "01JEXAMPLE0000000000000000/measure/1"},
    ]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 30
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}}
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "vigil",
        "vigil.dev/execution": "01jexample0000000000000000",
        "vigil.dev/step": "measure",
        "vigil.dev/attempt": "1",
    }


def test_the_step_chooses_image_resources_and_the_workflow_its_service_account() -> None:
    pod = pod_manifest(
        request(
            image="busybox:1.37",
            resources={"limits": {"memory": "128Mi"}},
            service_account="diagnostics",
        ),
        DEFAULTS,
    )
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "busybox:1.37"
    assert container["resources"] == {"limits": {"memory": "128Mi"}}
    assert pod["spec"]["serviceAccountName"] == "diagnostics"
    assert pod["spec"]["automountServiceAccountToken"] is True


def pod(
    phase: str = "Pending",
    *,
    state: dict[str, Any] | None = None,
    age: float = 0.0,
    **status: Any,
) -> dict[str, Any]:
    created = (EPOCH - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    container = [{"name": "step", "state": state}] if state is not None else []
    return {
        "metadata": {"name": "p", "creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": container, **status},
    }


def progress(p: dict[str, Any]) -> tuple[str, int | None, bool, str | None]:
    found = pod_progress(p, now=EPOCH, patience=PATIENCE)
    return found.stage, found.exit_code, found.timed_out, found.reason


def test_the_exit_code_comes_from_the_container_status() -> None:
    ended = pod("Failed", state={"terminated": {"exitCode": 3, "reason": "Error"}})
    assert progress(ended) == ("ended", 3, False, "Error")
    assert progress(pod("Succeeded", state={"terminated": {"exitCode": 0}}))[:2] == ("ended", 0)
    assert progress(pod("Running", state={"running": {}})) == ("running", None, False, None)


def test_a_pod_killed_at_its_deadline_is_a_timeout() -> None:
    assert progress(pod("Failed", reason="DeadlineExceeded")) == (
        "ended",
        None,
        True,
        "DeadlineExceeded",
    )


@pytest.mark.parametrize(
    "reason", ["ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"]
)
def test_a_container_that_cannot_start_fails_the_step_at_once(reason: str) -> None:
    stuck = pod(state={"waiting": {"reason": reason, "message": "no such image"}})
    assert progress(stuck) == ("stuck", None, False, f"{reason}: no such image")


def test_a_first_image_pull_error_gets_the_patience_before_it_fails() -> None:
    waiting = {"waiting": {"reason": "ErrImagePull", "message": "timeout"}}
    assert progress(pod(state=waiting, age=10))[0] == "waiting"
    assert progress(pod(state=waiting, age=61))[::3] == ("stuck", "ErrImagePull: timeout")


def test_an_unschedulable_pod_fails_the_step_after_the_patience() -> None:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory.",
    }
    assert progress(pod(conditions=[condition], age=5))[0] == "waiting"
    assert progress(pod(conditions=[condition], age=90)) == (
        "stuck",
        None,
        False,
        "Unschedulable: 0/3 nodes are available: 3 Insufficient memory.",
    )
