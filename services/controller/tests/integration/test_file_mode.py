"""The controller in file mode, run through its composition root against a real nats-server.

`vigil.controller.app.run` reads a folder holding copies of `examples/quickstart`, publishes
it to the `vigil-config` KV bucket and watches the folder. The tests look only at what the
other services would see: a `DefinitionsView` fed from the bucket over a second connection.
Waiting is on the view's changes (every KV update the view applies wakes the waiter), each
with a deadline; the controller is stopped by its stop event and must finish promptly,
leaving no task behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.bus import config_bucket_messages
from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.jetstream_kv import JetStreamBucket
from vigil.common.definitions import DefinitionStatus, DefinitionsView
from vigil.common.resource_base import SecretKeyRef
from vigil.common.resources import Sink
from vigil.controller.app import run
from vigil.controller.settings import ControllerSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

QUICKSTART = Path(__file__).resolve().parents[4] / "examples" / "quickstart"
NAMESPACE = "demo"
WORKFLOW = "disk-filling-up"
SINKS = ("console", "team-webhook")
SOURCE = "alertmanager"
WEBHOOK_URL = "http://127.0.0.1:9095/notifications"
GOOD_ARGUMENT = "\"{{ alert.labels.mountpoint | default('/') }}\""
BROKEN_ARGUMENT = "\"{{ alert.labels.mountpoint | default('/') \""  # the `}}` is missing

# Upper bounds of waits on conditions (a wait ends as soon as its condition holds): generous,
# because a CI machine shares its two cores, and publishing 1,500 definitions there can take
# several times what it takes on a quiet one.
PUBLISHED_WITHIN = 45.0  # start-up: connect, provision streams, first reconcile
RELOADED_WITHIN = 45.0  # a file change: watchfiles debounces 1.6 s, then a reconcile
STOPPED_WITHIN = 15.0


class ObservedBucket:
    """The config bucket as the view reads it, setting `changed` after each applied change."""

    def __init__(self, bucket: JetStreamBucket) -> None:
        self._bucket = bucket
        self.changed = asyncio.Event()

    async def put(self, key: str, value: bytes) -> None:
        await self._bucket.put(key, value)

    async def delete(self, key: str) -> None:
        await self._bucket.delete(key)

    async def keys(self) -> list[str]:
        return await self._bucket.keys()

    async def watch(self) -> AsyncIterator[tuple[str, bytes | None] | None]:
        async for change in self._bucket.watch():
            yield change
            # Resumed: the view has applied `change` and asks for the next one.
            self.changed.set()


@dataclass(kw_only=True)
class Harness:
    """A definitions folder, the controller running on it, and a view of what it published."""

    folder: Path
    view: DefinitionsView
    bucket: ObservedBucket
    controller: asyncio.Task[None] | None = None
    problems: list[str] = field(default_factory=list)

    def status(self, kind: str, name: str) -> DefinitionStatus | None:
        for status in self.view.statuses():
            if (status.kind, status.namespace, status.name) == (kind, NAMESPACE, name):
                return status
        return None

    async def wait_until(self, what: str, holds: Callable[[], bool], *, within: float) -> None:
        """Return once `holds()` is true; fail after `within` s or if the controller died."""
        if not await self._holds_within(holds, within=within):
            statuses = "\n".join(
                f"  {s.kind} {s.name}: ready={s.ready} {s.message}" for s in self.view.statuses()
            )
            pytest.fail(f"not {what} within {within} s; statuses:\n{statuses}")

    async def _holds_within(self, holds: Callable[[], bool], *, within: float) -> bool:
        deadline = time.monotonic() + within
        while True:
            self.bucket.changed.clear()
            if holds():
                return True
            if self.controller is not None and self.controller.done():
                pytest.fail(f"the controller ended unexpectedly: {self.controller}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changed = asyncio.ensure_future(self.bucket.changed.wait())
            # The controller task is watched, never cancelled here: asyncio.wait leaves it be.
            watched: set[asyncio.Future[Any]] = {changed}
            if self.controller is not None:
                watched.add(self.controller)
            await asyncio.wait(watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await changed

    async def wait_until_watching(self, *, within: float = RELOADED_WITHIN) -> None:
        """Return once the controller reacts to changes in the folder.

        The controller publishes first and starts its file watcher only afterwards (see
        `test_an_edit_made_while_the_first_publication_is_written_is_not_lost`), so an edit
        right after the publication can be missed. Touch a file it does not read until a
        reconcile is visible: every reconcile stamps the statuses with a new `observedAt`.
        """
        stamped = max(status.observed_at for status in self.view.statuses())
        probe = self.folder / "watch-probe.txt"
        deadline = time.monotonic() + within
        touches = 0
        while time.monotonic() < deadline:
            touches += 1
            probe.write_text(f"touch {touches}\n", encoding="utf-8")
            if await self._holds_within(
                lambda: any(s.observed_at > stamped for s in self.view.statuses()), within=0.5
            ):
                return
        pytest.fail(f"the controller did not react to {touches} changes within {within} s")

    def quickstart_is_published(self, *, count: int = 4) -> bool:
        """The quickstart's definitions are all published and ready (`count` in all)."""
        view = self.view
        statuses = self.view.statuses()
        return (
            view.source(NAMESPACE, SOURCE) is not None
            and view.workflow(NAMESPACE, WORKFLOW) is not None
            and all(view.sink(NAMESPACE, name) is not None for name in SINKS)
            and len(statuses) == count
            and all(status.ready for status in statuses)
        )


def _replace_atomically(path: Path, text: str) -> None:
    """Write as editors do (new file, then rename), so the controller never reads half a file."""
    swap = path.with_name(f".{path.name}.swap")
    swap.write_text(text, encoding="utf-8")
    swap.replace(path)


@contextlib.asynccontextmanager
async def controller_on_quickstart(
    nats_url: str, tmp_path: Path, *, extra: dict[str, str] | None = None
) -> AsyncIterator[Harness]:
    """Copy the quickstart (plus `extra` files) to a folder and run the controller on it."""
    folder = tmp_path / "definitions"
    folder.mkdir()
    for source in sorted(QUICKSTART.glob("*.yaml")):
        shutil.copy(source, folder / source.name)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text, encoding="utf-8")

    observer = await JetStreamBus.connect(nats_url, name="test-observer")
    try:
        bucket = ObservedBucket(await observer.config_bucket())
        view = DefinitionsView()
        viewing = asyncio.create_task(view.run(bucket), name="test-view")
        try:
            async with asyncio.timeout(5.0):
                await view.ready.wait()
            harness = Harness(folder=folder, view=view, bucket=bucket)
            # Everything running now is the test's own; anything new after the controller
            # stops is the controller's leftover.
            before = asyncio.all_tasks()
            # ControllerSettings(nats_url=...) is silently ignored (see
            # tests/unit/test_controller_settings.py); the environment is how `vigil up`
            # configures the services anyway.
            with pytest.MonkeyPatch.context() as env:
                env.setenv("VIGIL_NATS_URL", nats_url)
                settings = ControllerSettings(definitions=folder, ops_port=0, watch=True)
            assert settings.nats_url == nats_url
            stop = asyncio.Event()
            harness.controller = asyncio.create_task(run(settings, stop), name="controller")
            try:
                yield harness
            finally:
                stop.set()
                started = time.monotonic()
                async with asyncio.timeout(STOPPED_WITHIN):
                    await harness.controller
                assert time.monotonic() - started < STOPPED_WITHIN
            await _assert_no_tasks_left(before)
        finally:
            viewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await viewing
    finally:
        await observer.close()


async def _assert_no_tasks_left(before: set[asyncio.Task[object]]) -> None:
    """Tasks the controller started must all be finished (give them a moment to unwind)."""
    deadline = time.monotonic() + 2.0
    while True:
        left = {task for task in asyncio.all_tasks() - before if not task.done()}
        left.discard(asyncio.current_task())
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the controller left tasks behind: {sorted(map(repr, left))}")
        await asyncio.sleep(0.02)


async def test_the_folder_is_published_ready_with_the_webhook_secret_referenced(
    nats_url: str, tmp_path: Path
) -> None:
    async with controller_on_quickstart(nats_url, tmp_path) as harness:
        await harness.wait_until(
            "the quickstart is published", harness.quickstart_is_published, within=PUBLISHED_WITHIN
        )

        view = harness.view
        webhook = view.sink(NAMESPACE, "team-webhook")
        assert webhook is not None
        assert isinstance(webhook.resource, Sink)
        assert webhook.resource.spec.webhook is not None
        assert webhook.resource.spec.webhook.url_secret_ref == SecretKeyRef(
            name="team-webhook", key="url"
        )
        assert WEBHOOK_URL not in webhook.model_dump_json()
        assert view.sink(NAMESPACE, "console") is not None
        assert sorted((s.kind, s.name, s.message) for s in view.statuses()) == [
            ("Sink", "console", "valid"),
            ("Sink", "team-webhook", "valid"),
            ("Source", "alertmanager", "valid"),
            ("Workflow", "disk-filling-up", "valid"),
        ]
        workflow = view.workflow(NAMESPACE, WORKFLOW)
        assert workflow is not None
        assert [step.name for step in workflow.spec.steps] == [
            "measure",
            "critical",
            "report",
            "escalate",
        ]


GUARDED_SOURCE_TOKEN = "vigil-test-bearer-4b1d9e0c7a"
GUARDED_SOURCE = f"""
apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {{name: guarded, namespace: {NAMESPACE}}}
spec:
  type: alertmanager
  auth: {{bearerTokenSecretRef: {{name: ingest-token, key: token}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: ingest-token, namespace: {NAMESPACE}}}
stringData: {{token: {GUARDED_SOURCE_TOKEN}}}
"""


async def test_no_secret_value_is_anywhere_in_the_config_bucket(
    nats_url: str, tmp_path: Path
) -> None:
    """Issue 10: the bucket once held a Source's bearer token (and the webhook URL) in clear.

    Every message the `vigil-config` stream stores is scanned, in clear and in base64.
    """
    async with controller_on_quickstart(
        nats_url, tmp_path, extra={"guarded.yaml": GUARDED_SOURCE}
    ) as harness:

        def published() -> bool:
            status = harness.status("Source", "guarded")
            return (
                harness.quickstart_is_published(count=5)
                and harness.view.source(NAMESPACE, "guarded") is not None
                and status is not None
                and status.ready
            )

        await harness.wait_until(
            "the guarded Source is published", published, within=PUBLISHED_WITHIN
        )

        stored = await config_bucket_messages(nats_url)
        assert any(subject.endswith("def.source.demo.guarded") for subject, _ in stored)
        assert any(subject.endswith("def.sink.demo.team-webhook") for subject, _ in stored)
        for value in (GUARDED_SOURCE_TOKEN, WEBHOOK_URL):
            for subject, data in stored:
                assert value.encode() not in data, f"{subject} holds a secret value"
                assert base64.b64encode(value.encode()) not in data, f"{subject} holds it in base64"


async def test_an_edit_that_breaks_the_workflow_withdraws_it_and_the_fix_restores_it(
    nats_url: str, tmp_path: Path
) -> None:
    async with controller_on_quickstart(nats_url, tmp_path) as harness:
        await harness.wait_until(
            "the quickstart is published", harness.quickstart_is_published, within=PUBLISHED_WITHIN
        )
        await harness.wait_until_watching()
        workflow_file = harness.folder / "workflow.yaml"
        original = workflow_file.read_text(encoding="utf-8")
        assert GOOD_ARGUMENT in original, "the quickstart workflow changed; update this test"

        _replace_atomically(workflow_file, original.replace(GOOD_ARGUMENT, BROKEN_ARGUMENT))

        def withdrawn() -> bool:
            status = harness.status("Workflow", WORKFLOW)
            return (
                harness.view.workflow(NAMESPACE, WORKFLOW) is None
                and status is not None
                and not status.ready
            )

        await harness.wait_until("the workflow is withdrawn", withdrawn, within=RELOADED_WITHIN)
        status = harness.status("Workflow", WORKFLOW)
        assert status is not None
        assert "spec.steps[0].cli.command[3]" in status.message
        assert "template syntax error" in status.message
        assert status.origin.startswith(str(workflow_file))
        # The rest of the folder is untouched by the broken workflow.
        assert harness.view.source(NAMESPACE, SOURCE) is not None
        assert all(harness.view.sink(NAMESPACE, name) is not None for name in SINKS)

        _replace_atomically(workflow_file, original)

        await harness.wait_until(
            "the fixed workflow is published again",
            harness.quickstart_is_published,
            within=RELOADED_WITHIN,
        )
        status = harness.status("Workflow", WORKFLOW)
        assert status is not None
        assert (status.ready, status.message) == (True, "valid")


async def test_deleting_the_sinks_file_removes_the_sinks_and_unreadies_the_workflow(
    nats_url: str, tmp_path: Path
) -> None:
    async with controller_on_quickstart(nats_url, tmp_path) as harness:
        await harness.wait_until(
            "the quickstart is published", harness.quickstart_is_published, within=PUBLISHED_WITHIN
        )

        await harness.wait_until_watching()

        (harness.folder / "sinks.yaml").unlink()

        def sinks_gone() -> bool:
            status = harness.status("Workflow", WORKFLOW)
            return (
                all(harness.view.sink(NAMESPACE, name) is None for name in SINKS)
                and all(harness.status("Sink", name) is None for name in SINKS)
                and harness.view.workflow(NAMESPACE, WORKFLOW) is None
                and status is not None
                and not status.ready
            )

        await harness.wait_until("the sinks are gone", sinks_gone, within=RELOADED_WITHIN)
        status = harness.status("Workflow", WORKFLOW)
        assert status is not None
        assert "spec.steps[2].notify.sinks: Sink demo/console is not defined" in status.message
        assert "Sink demo/team-webhook is not defined" in status.message
        source = harness.status("Source", SOURCE)
        assert source is not None
        assert source.ready
        assert harness.view.source(NAMESPACE, SOURCE) is not None


MANY_SINKS = 1500


def _many_log_sinks() -> str:
    return "---\n".join(
        f"apiVersion: vigil.dev/v1alpha1\nkind: Sink\n"
        f"metadata: {{name: bulk-{index}, namespace: {NAMESPACE}}}\nspec: {{type: log}}\n"
        for index in range(MANY_SINKS)
    )


async def test_an_edit_made_while_the_first_publication_is_written_is_not_lost(
    nats_url: str, tmp_path: Path
) -> None:
    """The folder is read, then published; the edit lands while the publication is written.

    1500 extra sinks make the first publication take a noticeable while (about half a
    second of KV writes), and sinks are written first, so the edit is made once the first
    one is visible: after the read, before the controller is done publishing.
    """
    async with controller_on_quickstart(
        nats_url, tmp_path, extra={"bulk-sinks.yaml": _many_log_sinks()}
    ) as harness:
        await harness.wait_until(
            "the first sink is published",
            lambda: (
                harness.view.sink(NAMESPACE, "console") is not None
                or any(harness.view.sink(NAMESPACE, f"bulk-{i}") for i in range(3))
            ),
            within=PUBLISHED_WITHIN,
        )
        workflow_file = harness.folder / "workflow.yaml"
        original = workflow_file.read_text(encoding="utf-8")
        _replace_atomically(workflow_file, original.replace(GOOD_ARGUMENT, BROKEN_ARGUMENT))
        publishing_was_done = harness.view.sink(NAMESPACE, f"bulk-{MANY_SINKS - 1}") is not None
        assert not publishing_was_done, "the edit came too late to test the start-up window"

        def withdrawn() -> bool:
            status = harness.status("Workflow", WORKFLOW)
            return (
                harness.view.workflow(NAMESPACE, WORKFLOW) is None
                and status is not None
                and not status.ready
            )

        await harness.wait_until("the edit is published", withdrawn, within=RELOADED_WITHIN)


async def test_a_stop_during_start_up_ends_promptly_and_releases_the_ops_port(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while still starting (stop set before the tasks run): return and clean up."""
    folder = tmp_path / "definitions"
    shutil.copytree(QUICKSTART, folder)
    monkeypatch.setenv("VIGIL_NATS_URL", nats_url)
    settings = ControllerSettings(definitions=folder, ops_port=0, watch=True)
    stop = asyncio.Event()
    stop.set()

    async with asyncio.timeout(STOPPED_WITHIN):
        await run(settings, stop)
    # Whatever run() leaked is finalised now; an unclosed socket fails the test right here.
    gc.collect()
