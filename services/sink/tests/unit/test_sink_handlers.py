"""The sink's handler and delivery loop (`SinkHandlers.on_notify`, `DeliveryLoop`) through
the shipped fakes and a scripted notifier: what the engine gets back, what the
`deliveries` records say, how often a receiver is tried, and how long the loop waits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from vigil.common.bus import Delivery
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import Alert, NotifyStep, StepRequest, StepResult
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    delivery,
    sqlite_store,
)
from vigil.sink.adapters.aio_posting import new_session
from vigil.sink.adapters.webhook import WebhookNotifier
from vigil.sink.delivering import DeliveryLoop, RetryPolicy
from vigil.sink.handlers import NOTIFICATION_SHOWN_CHARS, SinkHandlers
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks

SINKS = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: team, namespace: ops}
spec:
  type: webhook
  webhook: {url: "http://127.0.0.1:9/hooks"}
---
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: console, namespace: ops}
spec: {type: log}
"""
KEY = "01EX/report/1/team"
POLICY = RetryPolicy(attempts=3, backoff=0.5, jitter=0.5, deadline=600.0)


@dataclass(slots=True)
class ScriptedNotifier:
    """Fails with `errors` in order, then delivers; records every notification it got."""

    errors: list[Exception] = field(default_factory=list)
    sent: list[Notification] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)
        if self.errors:
            raise self.errors.pop(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sink:
    handlers: SinkHandlers
    bus: RecordingPublisher
    store: Store
    clock: FakeClock
    webhook: ScriptedNotifier
    log: ScriptedNotifier

    async def notify(
        self, *sinks: str, attempt: int = 1, max_deliver: int = 5, message: str = "93% used"
    ) -> StepResult:
        request = StepRequest(
            execution_id="01EX",
            namespace="ops",
            workflow="disk",
            step="report",
            attempt=1,
            idempotency_key="01EX/report/1",
            notify=NotifyStep(
                sinks=list(sinks),
                title="DiskFull on db-1",
                message=message,
                alert=Alert.model_validate(
                    {
                        "status": "firing",
                        "fingerprint": "f1",
                        "labels": {"alertname": "DiskFull"},
                        "startsAt": EPOCH.isoformat(),
                    }
                ),
            ),
        )
        self.bus.clear()
        await self.handlers.on_notify(request, self.delivery(attempt, max_deliver))
        (published,) = self.bus.published
        assert published.msg_id == "01EX/report/1/result"
        assert isinstance(published.message, StepResult)
        return published.message

    @staticmethod
    def delivery(attempt: int, max_deliver: int) -> Delivery:
        return delivery(attempt, max_deliver=max_deliver, subject="vigil.steps.notify")

    async def records(self) -> list[tuple[int, str, str | None]]:
        return [
            (d.attempt, d.status, d.detail)
            for d in await self.store.deliveries(idempotency_key=KEY)
        ]


@contextlib.asynccontextmanager
async def running_sink(
    folder: Path, *, definitions: DefinitionsView | None = None
) -> AsyncIterator[Sink]:
    async with sqlite_store(folder) as store:
        bus, clock = RecordingPublisher(), FakeClock()
        webhook, log = ScriptedNotifier(), ScriptedNotifier()
        loop = DeliveryLoop(
            store=store,
            notifiers={"webhook": webhook, "log": log},
            policy=POLICY,
            clock=clock,
            draw=lambda: 0.0,
        )
        handlers = SinkHandlers(
            bus=bus,
            definitions=definitions or definitions_view(SINKS),
            deliveries=loop,
            clock=clock,
        )
        yield Sink(handlers=handlers, bus=bus, store=store, clock=clock, webhook=webhook, log=log)


async def test_a_delivered_notification_succeeds_the_step_and_is_recorded(
    tmp_path: Path,
) -> None:
    async with running_sink(tmp_path) as sink:
        result = await sink.notify("team", "console")

        assert result.outcome == "succeeded"
        assert result.output == {
            "title": "DiskFull on db-1",
            "message": "93% used",
            "deliveries": [
                {"sink": "team", "status": "delivered", "id": KEY},
                {"sink": "console", "status": "delivered", "id": "01EX/report/1/console"},
            ],
        }
        (sent,) = sink.webhook.sent
        assert sent.idempotency_key == KEY
        assert (sent.notify.title, sent.sink_name, sent.sink_type) == (
            "DiskFull on db-1",
            "team",
            "webhook",
        )
        assert len(sink.log.sent) == 1
        assert await sink.records() == [(1, "delivered", None)]


async def test_transient_failures_are_retried_with_doubling_backoff_or_retry_after(
    tmp_path: Path,
) -> None:
    async with running_sink(tmp_path) as sink:
        sink.webhook.errors = [
            TransientError("webhook answered 503"),
            TransientError("webhook answered 429", retry_after=7.0),
        ]
        sink.log.errors = [TransientError("a"), TransientError("b")]

        result = await sink.notify("team", "console")

        assert result.outcome == "succeeded"
        assert len(sink.webhook.sent) == 3
        assert sink.clock.slept == [0.5, 7.0, 0.5, 1.0]  # team: backoff, Retry-After; console
        assert await sink.records() == [
            (1, "retrying", "webhook answered 503"),
            (2, "retrying", "webhook answered 429"),
            (3, "delivered", None),
        ]


async def test_out_of_attempts_with_deliveries_left_the_step_is_redelivered(
    tmp_path: Path,
) -> None:
    async with running_sink(tmp_path) as sink:
        sink.webhook.errors = [TransientError("webhook answered 503")] * 3

        with pytest.raises(TransientError, match="after 3 attempts: webhook answered 503"):
            await sink.notify("team")

        assert sink.bus.published == []
        assert await sink.records() == [
            (1, "retrying", "webhook answered 503"),
            (2, "retrying", "webhook answered 503"),
            (3, "retrying", "webhook answered 503"),
        ]


async def test_on_the_last_delivery_a_transient_failure_fails_the_step(tmp_path: Path) -> None:
    async with running_sink(tmp_path) as sink:
        sink.webhook.errors = [TransientError("webhook answered 503")] * 3

        result = await sink.notify("team", attempt=5, max_deliver=5)

        assert result.outcome == "failed"
        assert result.error == (
            "sink team: gave up after 5 deliveries: "
            "delivery failed after 3 attempts: webhook answered 503"
        )
        assert [status for _, status, _ in await sink.records()] == [
            "retrying",
            "retrying",
            "failed",
        ]


async def test_the_steps_output_keeps_the_start_of_a_long_message_and_the_sink_gets_it_all(
    tmp_path: Path,
) -> None:
    async with running_sink(tmp_path) as sink:
        result = await sink.notify("console", message="x" * 5000)

        assert result.output is not None
        assert result.output["message"] == "x" * NOTIFICATION_SHOWN_CHARS
        (sent,) = sink.log.sent
        assert sent.notify.message == "x" * 5000


async def test_a_permanent_failure_fails_the_step_at_once(tmp_path: Path) -> None:
    async with running_sink(tmp_path) as sink:
        sink.webhook.errors = [PermanentError("webhook answered 400: bad title")]

        result = await sink.notify("team", "console")

        assert result.outcome == "failed"
        assert result.error == "sink team: webhook answered 400: bad title"
        assert result.output == {
            "title": "DiskFull on db-1",
            "message": "93% used",
            "deliveries": [
                {"sink": "team", "status": "failed", "id": KEY},
                {"sink": "console", "status": "delivered", "id": "01EX/report/1/console"},
            ],
        }
        assert len(sink.webhook.sent) == 1
        assert sink.clock.slept == []


async def test_a_redelivered_step_does_not_deliver_twice(tmp_path: Path) -> None:
    async with running_sink(tmp_path) as sink:
        sink.log.errors = [TransientError("x")] * 3
        with pytest.raises(TransientError):
            await sink.notify("team", "console")  # team delivered, console not

        result = await sink.notify("team", "console", attempt=2)

        assert result.outcome == "succeeded"
        assert len(sink.webhook.sent) == 1, "team was not sent again"
        assert len(sink.log.sent) == 4


async def test_an_undefined_sink_fails_its_delivery_and_the_others_go_out(tmp_path: Path) -> None:
    async with running_sink(tmp_path) as sink:
        result = await sink.notify("nowhere", "team")

        assert result.outcome == "failed"
        assert result.error == "sink ops/nowhere is not defined"
        assert len(sink.webhook.sent) == 1


async def test_before_the_definitions_are_loaded_the_step_is_retried(tmp_path: Path) -> None:
    async with running_sink(tmp_path, definitions=DefinitionsView()) as sink:
        with pytest.raises(TransientError, match="definitions not loaded"):
            await sink.notify("team")


async def test_a_sink_type_without_a_notifier_fails_naming_the_type(tmp_path: Path) -> None:
    async with running_sink(tmp_path) as sink:
        loop = DeliveryLoop(store=sink.store, notifiers={}, policy=POLICY, clock=sink.clock)
        handlers = SinkHandlers(
            bus=sink.bus, definitions=definitions_view(SINKS), deliveries=loop, clock=sink.clock
        )
        bare = Sink(
            handlers=handlers,
            bus=sink.bus,
            store=sink.store,
            clock=sink.clock,
            webhook=sink.webhook,
            log=sink.log,
        )

        result = await bare.notify("team")

        assert result.error == "sink team: sink type webhook is not available in this build"


async def test_a_webhook_whose_url_secret_is_missing_is_redelivered_then_fails_naming_it(
    tmp_path: Path,
) -> None:
    """The real webhook notifier through the fake resolver: nothing is sent, the step is
    redelivered while deliveries are left, and its last delivery fails naming the Secret."""
    definitions = definitions_view(
        """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: team, namespace: ops}
spec:
  type: webhook
  webhook: {urlSecretRef: {name: team-hook, key: url}}
---
apiVersion: v1
kind: Secret
metadata: {name: team-hook, namespace: ops}
stringData: {url: "http://127.0.0.1:9/hooks"}
"""
    )
    secrets = MemorySecrets()  # the Secret was deleted after the controller published
    async with running_sink(tmp_path, definitions=definitions) as sink, new_session() as http:
        loop = DeliveryLoop(
            store=sink.store,
            notifiers={"webhook": WebhookNotifier(http, secrets=secrets, links=ReportLinks())},
            policy=POLICY,
            clock=sink.clock,
        )
        real = Sink(
            handlers=SinkHandlers(
                bus=sink.bus, definitions=definitions, deliveries=loop, clock=sink.clock
            ),
            bus=sink.bus,
            store=sink.store,
            clock=sink.clock,
            webhook=sink.webhook,
            log=sink.log,
        )
        missing = "Secret ops/team-hook is not defined in memory"

        with pytest.raises(TransientError, match=f"after 3 attempts: {missing}"):
            await real.notify("team", attempt=1, max_deliver=2)
        result = await real.notify("team", attempt=2, max_deliver=2)

        assert len(secrets.resolved) == 6  # 3 attempts per delivery, 2 deliveries
        assert result.outcome == "failed"
        assert result.error == (
            f"sink team: gave up after 2 deliveries: delivery failed after 3 attempts: {missing}"
        )
        assert [status for _, status, _ in await sink.records()] == ["retrying"] * 5 + ["failed"]


async def test_a_notify_step_is_timed_in_the_step_duration_histogram_by_kind_and_outcome(
    tmp_path: Path,
) -> None:
    """One retry after 0.5 s of backoff (the fake clock's): the notify step took 0.5 s."""
    labels = {"kind": "notify", "outcome": "succeeded"}

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"vigil_step_duration_seconds_{name}", labels) or 0.0

    count, total = sample("count"), sample("sum")
    async with running_sink(tmp_path) as sink:
        sink.webhook.errors.append(TransientError("503 from the receiver"))
        assert (await sink.notify("team")).outcome == "succeeded"

    assert sample("count") == count + 1
    assert sample("sum") == pytest.approx(total + 0.5)
