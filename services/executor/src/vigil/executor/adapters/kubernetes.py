"""Runs a cli step as a Kubernetes pod (Kubernetes mode): `PodRunner`.

One attempt costs four API requests when all goes well: create the pod, watch it (one
long request that streams its status changes), read its log, and delete it once the
result is published (`release`). A redelivered request finds its pod by name (the create
answers 409) and watches that pod instead of starting a second one; an executor that stops
leaves its pods running for that reason. A pod that cannot start (image pull or
configuration errors, unschedulable past the patience) fails the step with the reason at
once instead of hanging until the deadline. A cancellation deletes the pod. `collect_
orphans` deletes Vigil pods whose execution is finished or unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.messages import StepRequest
from vigil.common.store import ExecutionStore
from vigil.executor.domain.argv import argv_problem
from vigil.executor.domain.pods import (
    CONTAINER,
    EXECUTION_LABEL,
    MANAGED_BY,
    Pod,
    PodDefaults,
    PodProgress,
    pod_manifest,
    pod_name,
    pod_progress,
)
from vigil.executor.domain.results import ProcessOutcome

log = structlog.get_logger(__name__)

_API_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
WATCH_SECONDS = 60  # one watch request at most this long, then another
DEADLINE_GRACE = timedelta(seconds=30)  # past the pod's own deadline: the kubelet is gone


def _transient(exc: BaseException, what: str) -> TransientError:
    status = exc.status if isinstance(exc, ApiException) else type(exc).__name__
    return TransientError(f"{what}: Kubernetes API answered {status}")


@dataclass(slots=True, kw_only=True)
class PodRunner:
    """The `StepRunner` of `cli` steps in Kubernetes mode."""

    api: client.ApiClient
    defaults: PodDefaults
    output_limit: int
    patience: timedelta = timedelta(seconds=60)
    clock: Clock = SYSTEM_CLOCK
    _core: client.CoreV1Api = field(init=False)

    def __post_init__(self) -> None:
        self._core = client.CoreV1Api(self.api)

    async def run(self, request: StepRequest, cancel: asyncio.Event) -> ProcessOutcome:
        if request.cli is None:
            raise InvalidInput("cli step request without a `cli` body")
        problem = argv_problem(request.cli.argv, request.cli.env)
        if problem is not None:
            return ProcessOutcome(exit_code=None, not_started=problem)
        name, namespace = pod_name(request), request.namespace
        refused = await self._create(request, namespace)
        if refused is not None:
            return ProcessOutcome(exit_code=None, not_started=refused)
        deadline = self.clock.now() + timedelta(seconds=request.cli.timeout_seconds)
        progress = await self._follow(namespace, name, cancel, deadline + DEADLINE_GRACE)
        if progress is None:  # cancelled
            await self._delete(namespace, name)
            return ProcessOutcome(exit_code=None, cancelled=True)
        if progress.stage == "stuck":
            await self._delete(namespace, name)
            return ProcessOutcome(exit_code=None, not_started=progress.reason)
        if progress.stage != "ended":  # no word from the kubelet past the deadline
            await self._delete(namespace, name)
            return ProcessOutcome(exit_code=None, timed_out=True)
        output = await self._log(namespace, name)
        return ProcessOutcome(
            exit_code=None if progress.timed_out else progress.exit_code,
            stdout=output,
            truncated=len(output.encode()) >= self.output_limit,
            timed_out=progress.timed_out,
        )

    async def release(self, request: StepRequest) -> None:
        """The result is published: the pod has served its purpose."""
        await self._delete(request.namespace, pod_name(request))

    async def _create(self, request: StepRequest, namespace: str) -> str | None:
        """Create the attempt's pod; None if it runs (or already ran), else why it cannot."""
        manifest: Any = pod_manifest(request, self.defaults)  # the client sends a dict as is
        try:
            await self._core.create_namespaced_pod(namespace, manifest)
        except ApiException as exc:
            if exc.status == 409:
                log.info("pod_exists", pod=pod_name(request), namespace=namespace)
                return None
            if exc.status in (400, 403, 404, 422):
                return f"the pod was refused ({exc.status}): {_reason(exc)}"
            raise _transient(exc, f"creating pod {pod_name(request)}") from exc
        except _API_ERRORS as exc:
            raise _transient(exc, f"creating pod {pod_name(request)}") from exc
        log.info("pod_created", pod=pod_name(request), namespace=namespace)
        return None

    async def _follow(
        self, namespace: str, name: str, cancel: asyncio.Event, give_up: datetime
    ) -> PodProgress | None:
        """Watch the pod until it ends or is stuck (None if `cancel` is set first)."""
        seen: asyncio.Queue[Pod] = asyncio.Queue()
        watching = asyncio.create_task(self._watch(namespace, name, seen.put_nowait))
        cancelled = asyncio.create_task(cancel.wait())
        latest: Pod = {}
        try:
            while True:
                now = self.clock.now()
                progress = pod_progress(latest, now=now, patience=self.patience) if latest else None
                if progress is not None and progress.stage in ("ended", "stuck"):
                    return progress
                if now >= give_up:
                    return progress or PodProgress(stage="waiting")
                latest = await self._next(seen, cancelled, watching, latest, give_up - now)
                if cancelled.done():
                    return None
        finally:
            for task in (watching, cancelled):
                task.cancel()
            await asyncio.gather(watching, cancelled, return_exceptions=True)

    async def _next(
        self,
        seen: asyncio.Queue[Pod],
        cancelled: asyncio.Task[Any],
        watching: asyncio.Task[None],
        latest: Pod,
        left: timedelta,
    ) -> Pod:
        """The next state of the pod, or `latest` again when it is time to look again
        (a pod that looks stuck is judged again once the patience may have run out)."""
        wait = max(min(left, self.patience).total_seconds(), 0.05)
        getting = asyncio.ensure_future(seen.get())
        done, _ = await asyncio.wait(
            {getting, cancelled, watching}, timeout=wait, return_when="FIRST_COMPLETED"
        )
        if getting in done:
            return getting.result()
        getting.cancel()
        if watching in done:
            watching.result()  # the watch only ends by failing: raise what it raised
        return latest

    async def _watch(self, namespace: str, name: str, deliver: Callable[[Pod], None]) -> None:
        """Stream the pod's states to `deliver`, one watch request after another."""
        while True:
            try:
                # Plain dicts: what `pod_progress` reads, and no model to fail on.
                async with watch.Watch(return_type="object") as stream:
                    async for event in stream.stream(
                        self._core.list_namespaced_pod,
                        namespace,
                        field_selector=f"metadata.name={name}",
                        timeout_seconds=WATCH_SECONDS,
                    ):
                        pod = event["raw_object"]
                        if pod.get("metadata", {}).get("name") == name:
                            deliver(pod)
            except _API_ERRORS as exc:
                log.warning("pod_watch_failed", pod=name, error=str(exc))
                await asyncio.sleep(1.0)

    async def _log(self, namespace: str, name: str) -> str:
        try:
            text: str = await self._core.read_namespaced_pod_log(
                name, namespace, container=CONTAINER, limit_bytes=self.output_limit
            )
        except _API_ERRORS as exc:
            raise _transient(exc, f"reading the log of pod {name}") from exc
        return text

    async def _delete(self, namespace: str, name: str) -> None:
        try:
            await self._core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("pod_not_deleted", pod=name, error=str(exc.status))
        except _API_ERRORS as exc:
            log.warning("pod_not_deleted", pod=name, error=str(exc))


def _reason(exc: ApiException) -> str:
    return str(exc.body or exc.reason)[:300]


async def collect_orphans(
    api: client.ApiClient,
    store: ExecutionStore,
    *,
    grace: timedelta,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Delete Vigil pods older than `grace` whose execution is finished or unknown."""
    core = client.CoreV1Api(api)
    selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    try:
        pods = await core.list_pod_for_all_namespaces(label_selector=selector)
    except _API_ERRORS as exc:
        raise _transient(exc, "listing Vigil pods") from exc
    deleted = 0
    now = clock.now()
    for pod in pods.items:
        meta = pod.metadata
        created = meta.creation_timestamp or now
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if now - created < grace:
            continue
        execution_id = (meta.labels or {}).get(EXECUTION_LABEL, "").upper()
        execution = await store.get_execution(execution_id) if execution_id else None
        if execution is not None and not execution.finished:
            continue
        with contextlib.suppress(ApiException):
            await core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=0)
            deleted += 1
            log.info("orphan_pod_deleted", pod=meta.name, namespace=meta.namespace)
    return deleted
