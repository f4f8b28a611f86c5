"""Kubernetes mode, the pure part: the pod that runs one attempt of a cli step, and what
the pod's status says about it.

The pod's name is derived from the attempt (`vigil-<execution>-<step>-<attempt>`, at most
63 characters), so a redelivered request finds the pod already running instead of
starting a second one. The pod runs the argv exactly as rendered (no shell), as a non-root
user with a read-only root filesystem and no privilege escalation, and is killed by the
kubelet at the step's timeout (`activeDeadlineSeconds`).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from vigil.common.messages import StepRequest

type Pod = dict[str, Any]

MANAGED_BY = {"app.kubernetes.io/managed-by": "vigil"}
EXECUTION_LABEL = "vigil.dev/execution"
STEP_LABEL = "vigil.dev/step"
ATTEMPT_LABEL = "vigil.dev/attempt"
CONTAINER = "step"
NON_ROOT_UID = 65532
MAX_NAME = 63
# A container that waits for one of these will not start by itself.
STUCK_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"}
)
# ErrImagePull may clear on the kubelet's next try; the others have already been retried.
RETRIED_REASONS = frozenset({"ErrImagePull"})
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")


def pod_name(request: StepRequest) -> str:
    """`vigil-<execution>-<step>-<attempt>`, lower-case, at most 63 characters.

    A step name that does not fit is cut and followed by a hash of the whole name, so two
    long step names that share a prefix still get different pods.
    """
    step = _NOT_IN_NAME.sub("-", request.step.lower()).strip("-") or "step"
    head = f"vigil-{request.execution_id.lower()}-"
    tail = f"-{request.attempt}"
    room = MAX_NAME - len(head) - len(tail)
    if len(step) > room:
        digest = hashlib.sha256(request.step.encode()).hexdigest()[:6]
        step = f"{step[: room - 7].rstrip('-')}-{digest}"
    return f"{head}{step}{tail}"


def pod_labels(request: StepRequest) -> dict[str, str]:
    step = _NOT_IN_NAME.sub("-", request.step.lower()).strip("-")[:MAX_NAME].strip("-")
    return {
        **MANAGED_BY,
        EXECUTION_LABEL: request.execution_id.lower(),
        STEP_LABEL: step or "step",
        ATTEMPT_LABEL: str(request.attempt),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class PodDefaults:
    """What the executor's settings give every step pod."""

    image: str
    resources: dict[str, dict[str, str]]


def pod_manifest(request: StepRequest, defaults: PodDefaults) -> Pod:
    """The pod for one attempt of a cli step."""
    cli = request.cli
    if cli is None:
        msg = "a pod runs a cli step only"
        raise ValueError(msg)
    env = {**cli.env, "VIGIL_IDEMPOTENCY_KEY": request.idempotency_key}
    spec: Pod = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": max(1, math.ceil(cli.timeout_seconds)),
        "automountServiceAccountToken": cli.service_account is not None,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": cli.image or defaults.image,
                "command": list(cli.argv),
                "env": [{"name": name, "value": value} for name, value in sorted(env.items())],
                "resources": cli.resources or defaults.resources,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's own
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if cli.service_account is not None:
        spec["serviceAccountName"] = cli.service_account
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(request),
            "labels": pod_labels(request),
            "annotations": {
                "vigil.dev/idempotency-key": request.idempotency_key,
                "vigil.dev/workflow": f"{request.namespace}/{request.workflow}",
            },
        },
        "spec": spec,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class PodProgress:
    """Where the attempt is: still to start, running, ended (with its exit code), or stuck
    (it will not start by itself: the step fails with `reason`)."""

    stage: Literal["waiting", "running", "ended", "stuck"]
    exit_code: int | None = None
    timed_out: bool = False
    reason: str | None = None


def pod_progress(pod: Pod, *, now: datetime, patience: timedelta) -> PodProgress:
    """What `pod` (as the API returns it) says; `patience` is how long a pod may stay
    unschedulable, or fail to pull its image, before the step fails."""
    status = pod.get("status") or {}
    containers: list[Pod] = status.get("containerStatuses") or []
    state: Pod = (containers[0].get("state") if containers else None) or {}
    if status.get("phase") in ("Succeeded", "Failed") or "terminated" in state:
        return _ended(status, state)
    if "running" in state:
        return PodProgress(stage="running")
    stuck = _why_stuck(status, state, patient=now - _created(pod, now) < patience)
    if stuck is not None:
        return PodProgress(stage="stuck", reason=stuck)
    return PodProgress(stage="waiting")


def _ended(status: Pod, state: Pod) -> PodProgress:
    if status.get("reason") == "DeadlineExceeded":
        return PodProgress(stage="ended", timed_out=True, reason="DeadlineExceeded")
    terminated = state.get("terminated") or {}
    return PodProgress(
        stage="ended", exit_code=terminated.get("exitCode"), reason=terminated.get("reason")
    )


def _why_stuck(status: Pod, state: Pod, *, patient: bool) -> str | None:
    """Why the pod will not start by itself, or None while it may still."""
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    if reason in STUCK_REASONS and not (reason in RETRIED_REASONS and patient):
        return f"{reason}: {waiting.get('message') or ''}".rstrip(": ")
    if patient:
        return None
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return f"Unschedulable: {condition.get('message') or ''}".rstrip(": ")
    return None


def _created(pod: Pod, now: datetime) -> datetime:
    created = (pod.get("metadata") or {}).get("creationTimestamp")
    if isinstance(created, datetime):
        return created
    if isinstance(created, str):
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return now
    return now
