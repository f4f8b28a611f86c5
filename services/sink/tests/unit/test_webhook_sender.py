"""The webhook POST inside the sink's delivery loop (`with_retries`), against a real HTTP
server on loopback that answers a scripted sequence.

The receiver records every request it gets (headers as sent, raw body), so each test checks
what a webhook owner would see: how many requests came, with which idempotency key, headers
and JSON, and which error the sink was left with (TransientError: retry later;
PermanentError: the receiver rejected the request itself).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
import structlog
from pydantic import JsonValue

from tests.support import http_fake
from tests.support.http_fake import FakeHTTPServer, Received
from tests.support.nats import free_port
from vigil.common.clock import SYSTEM_CLOCK
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import Alert, NotifyStep, StepRequest
from vigil.common.resources import Sink
from vigil.common.secrets import SecretKey, SecretUnavailable
from vigil.common.testing import FakeClock, MemorySecrets, definitions_view, delivery
from vigil.sink.adapters.aio_posting import new_session
from vigil.sink.adapters.webhook import WebhookNotifier, post_json
from vigil.sink.delivering import GiveUp, Retry, RetryPolicy, after_failure
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks

KEY = "01JEXECUTION/report/1/team-webhook"
BODY: dict[str, JsonValue] = {"title": "disk full", "attempt": 1}
TINY_BACKOFF = 0.01
TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One scripted answer: status, extra headers, a text body, and a delay before answering."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0


@dataclass(slots=True, kw_only=True)
class ScriptedReceiver:
    """Answers requests with `script` in order, repeating the last reply once it runs out."""

    script: list[Reply] = field(default_factory=lambda: [Reply(status=204)])
    _server: FakeHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = FakeHTTPServer(self._answer)

    @property
    def url(self) -> str:
        return self._server.url("/hooks/team")

    @property
    def requests(self) -> list[Received]:
        return self._server.received

    def answer(self, *replies: Reply) -> None:
        self.script = list(replies)

    def _answer(self, request: Received) -> http_fake.Reply:
        reply = self.script[min(len(self.requests), len(self.script) - 1)]
        return http_fake.Reply(
            status=reply.status, body=reply.body.encode(), headers=reply.headers, delay=reply.delay
        )

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    server = ScriptedReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


async def send(
    client: aiohttp.ClientSession,
    url: str,
    *,
    attempts: int = 3,
    backoff: float = TINY_BACKOFF,
    body: dict[str, JsonValue] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> int:
    """POST with the delivery loop's retry decisions (`after_failure`, no jitter) on the
    wall clock, as the sink retries within one delivery of its last bus delivery."""
    policy = RetryPolicy(attempts=attempts, backoff=backoff, jitter=0.0)
    deadline = SYSTEM_CLOCK.now() + timedelta(hours=1)
    retry = 0
    while True:
        try:
            return await post_json(
                client,
                url,
                BODY if body is None else body,
                idempotency_key=KEY,
                headers=headers or {},
                timeout=timeout,
            )
        except TransientError as exc:
            retry += 1
            step = after_failure(
                policy,
                exc,
                retry=retry,
                now=SYSTEM_CLOCK.now(),
                deadline=deadline,
                delivery=delivery(1, max_deliver=1),
                draw=0.0,
            )
            if not isinstance(step, Retry):
                reason = step.reason if isinstance(step, GiveUp) else str(exc)
                raise TransientError(reason, retry_after=exc.retry_after) from exc
            await SYSTEM_CLOCK.sleep(step.delay)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_a_2xx_answer_is_returned_after_one_request(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession, status: int
) -> None:
    receiver.answer(Reply(status=status))

    assert await send(client, receiver.url) == status
    assert len(receiver.requests) == 1
    assert receiver.requests[0].method == "POST"
    assert receiver.requests[0].path == "/hooks/team"


async def test_a_500_is_retried_with_the_same_idempotency_key_and_then_succeeds(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    receiver.answer(Reply(status=500), Reply(status=200))

    assert await send(client, receiver.url) == 200
    assert len(receiver.requests) == 2
    assert [r.header("Idempotency-Key") for r in receiver.requests] == [[KEY], [KEY]]
    assert receiver.requests[0].body == receiver.requests[1].body


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_4xx_is_a_permanent_error_after_one_request_naming_the_status(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession, status: int
) -> None:
    receiver.answer(Reply(status=status, body="field `title` is not allowed"))

    with pytest.raises(PermanentError, match=str(status)) as raised:
        await send(client, receiver.url)

    assert len(receiver.requests) == 1
    assert "field `title` is not allowed" in str(raised.value), "the receiver's reason is kept"


@pytest.mark.parametrize("status", [408, 429])
async def test_a_retryable_4xx_with_retry_after_zero_is_retried(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession, status: int
) -> None:
    receiver.answer(Reply(status=status, headers={"Retry-After": "0"}), Reply(status=200))

    assert await send(client, receiver.url) == 200
    assert len(receiver.requests) == 2


async def test_retry_after_replaces_the_backoff(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    """`Retry-After: 0` retries at once although the configured backoff is 30 s."""
    receiver.answer(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=200))
    started = time.monotonic()

    assert await send(client, receiver.url, backoff=30.0) == 200
    assert time.monotonic() - started < 5.0


async def test_retry_after_in_seconds_delays_the_next_request(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    receiver.answer(Reply(status=503, headers={"Retry-After": "1"}), Reply(status=200))

    assert await send(client, receiver.url) == 200
    first, second = receiver.requests
    assert second.at - first.at >= 0.9


async def test_retry_after_as_an_http_date_delays_the_next_request(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    # HTTP-dates have whole seconds: 2 s ahead is at least 1 s ahead once truncated.
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    receiver.answer(Reply(status=503, headers={"Retry-After": when}), Reply(status=200))

    assert await send(client, receiver.url) == 200
    first, second = receiver.requests
    assert second.at - first.at >= 0.5


async def test_a_persistent_503_is_a_transient_error_after_every_attempt(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    receiver.answer(Reply(status=503))

    with pytest.raises(TransientError, match="503"):
        await send(client, receiver.url, attempts=4)

    assert len(receiver.requests) == 4
    assert {r.header("Idempotency-Key")[0] for r in receiver.requests} == {KEY}


async def test_the_last_retry_after_is_handed_to_the_caller(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    """The error tells the consumer how long to wait before redelivering."""
    receiver.answer(Reply(status=503, headers={"Retry-After": "7"}))

    with pytest.raises(TransientError) as raised:
        await send(client, receiver.url, attempts=1)

    assert raised.value.retry_after == 7.0
    assert len(receiver.requests) == 1


async def test_a_refused_connection_is_a_transient_error(client: aiohttp.ClientSession) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hooks/team"

    with pytest.raises(TransientError, match="after 3 attempts"):
        await send(client, closed, attempts=3)


async def test_a_receiver_slower_than_the_timeout_is_a_transient_error(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    receiver.answer(Reply(status=200, delay=1.5))
    started = time.monotonic()

    with pytest.raises(TransientError, match="Timeout"):
        await send(client, receiver.url, attempts=2, timeout=0.2)

    assert len(receiver.requests) == 2
    assert time.monotonic() - started < 1.5


async def test_headers_from_the_sink_spec_are_sent_with_the_idempotency_key(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    sink = Sink.model_validate(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Sink",
            "metadata": {"name": "team-webhook", "namespace": "demo"},
            "spec": {
                "type": "webhook",
                "webhook": {
                    "url": receiver.url,
                    "headers": {"Authorization": "Bearer s3cret", "X-Team": "storage"},
                },
            },
        }
    )
    assert sink.spec.webhook is not None

    await send(client, receiver.url, headers=dict(sink.spec.webhook.headers))

    (request,) = receiver.requests
    assert request.header("Authorization") == ["Bearer s3cret"]
    assert request.header("X-Team") == ["storage"]
    assert request.header("Idempotency-Key") == [KEY]
    assert request.header("Content-Type") == ["application/json"]


async def test_a_spec_header_cannot_add_a_second_idempotency_key(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    await send(client, receiver.url, headers={"idempotency-key": "from-the-spec"})

    (request,) = receiver.requests
    assert request.header("Idempotency-Key") == [KEY]


async def test_the_json_body_arrives_intact(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    body: dict[str, JsonValue] = {
        "title": "HostDiskFillingUp on db-1 (critical)",
        "message": "Disk /var is 97 % full\nFilesystem 1024-blocks Used\n",
        "alert": {"labels": {"alertname": "HostDiskFillingUp", "team": "stör🔥"}, "value": 0.97},
        "steps": [{"name": "measure", "exitCode": 0}, {"name": "critical", "result": True}],
        "nothing": None,
        "attempt": 2,
    }

    await send(client, receiver.url, body=body)

    (request,) = receiver.requests
    assert request.json() == body


async def test_a_negative_retry_after_is_not_handed_on_as_a_negative_delay(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    receiver.answer(Reply(status=503, headers={"Retry-After": "-30"}))

    with pytest.raises(TransientError) as raised:
        await send(client, receiver.url, attempts=1)

    retry_after = raised.value.retry_after
    assert retry_after is None or retry_after >= 0.0


async def test_an_unparseable_retry_after_falls_back_to_the_backoff(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    receiver.answer(Reply(status=503, headers={"Retry-After": "soon"}), Reply(status=200))

    assert await send(client, receiver.url) == 200
    assert len(receiver.requests) == 2


ALERT = Alert.model_validate(
    {
        "status": "firing",
        "fingerprint": "f1",
        "labels": {"alertname": "DiskFull"},
        "startsAt": "2026-11-24T08:00:00Z",
    }
)
SECRET_SINK = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: team-webhook, namespace: demo}
spec:
  type: webhook
  webhook: {urlSecretRef: {name: hook, key: url}, headers: {X-Team: storage}}
---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: demo}
stringData: {url: "URL"}
"""


def secret_sink_notification(url: str) -> tuple[Notification, MemorySecrets]:
    """The notification for a Sink whose URL is in a Secret, and that Secret (as file mode
    would read it) in the fake resolver."""
    text = SECRET_SINK.replace("URL", url)
    definition = definitions_view(text).sink("demo", "team-webhook")
    assert definition is not None
    assert url not in definition.model_dump_json(), "the definition carries the reference only"
    request = StepRequest(
        execution_id="01JEXECUTION",
        namespace="demo",
        workflow="disk",
        step="report",
        attempt=1,
        idempotency_key="01JEXECUTION/report/1",
        notify=NotifyStep(sinks=["team-webhook"], title="t", message="m", alert=ALERT),
    )
    assert request.notify is not None
    notification = Notification(
        sink=definition, request=request, notify=request.notify, idempotency_key=KEY
    )
    return notification, MemorySecrets.of(text)


async def test_the_webhook_notifier_posts_the_report_to_the_url_from_the_secret(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    notification, secrets = secret_sink_notification(receiver.url)

    links = ReportLinks(public_url="https://vigil.example.com")
    await WebhookNotifier(client, secrets=secrets, links=links).send(notification)

    (received,) = receiver.requests
    assert secrets.resolved == [SecretKey(namespace="demo", name="hook", key="url")]
    assert received.header("Idempotency-Key") == [KEY]
    assert received.header("X-Team") == ["storage"]
    body = received.json()
    report = body.pop("report")
    assert body == {
        "title": "t",
        "message": "m",
        "alert": ALERT.model_dump(mode="json", by_alias=True),
        "executionId": "01JEXECUTION",
        "workflow": {"namespace": "demo", "name": "disk"},
        "step": "report",
        "attempt": 1,
        "idempotencyKey": KEY,
    }
    assert report["workflow"] == "demo/disk"
    assert report["links"] == [
        {"label": "Execution", "url": "https://vigil.example.com/api/v1/executions/01JEXECUTION"}
    ]


async def test_a_rotated_url_secret_is_used_from_the_next_delivery_on(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    notification, secrets = secret_sink_notification(receiver.url)
    notifier = WebhookNotifier(client, secrets=secrets, links=ReportLinks())
    await notifier.send(notification)

    secrets.put("demo", "hook", url=receiver.url + "/rotated")
    await notifier.send(notification)

    assert [r.path for r in receiver.requests] == ["/hooks/team", "/hooks/team/rotated"]


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        ("removed", "Secret demo/hook is not defined in memory"),
        ("key removed", "Secret demo/hook has no key 'url' in memory"),
        ("unreachable", "Secret demo/hook cannot be read: the Secret store is unreachable"),
    ],
)
async def test_a_url_secret_that_cannot_be_resolved_is_a_transient_error_naming_it(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession, breakage: str, problem: str
) -> None:
    notification, secrets = secret_sink_notification(receiver.url)
    if breakage == "removed":
        secrets.remove("demo", "hook")
    elif breakage == "key removed":
        secrets.put("demo", "hook", URL=receiver.url)
    else:
        secrets.fail_next()

    with structlog.testing.capture_logs() as logs, pytest.raises(TransientError) as raised:
        await WebhookNotifier(client, secrets=secrets, links=ReportLinks()).send(notification)

    assert isinstance(raised.value, SecretUnavailable)
    assert str(raised.value) == problem
    assert receiver.requests == [], "nothing is sent without the URL"
    (logged,) = [e for e in logs if e["event"] == "sink_secret_unavailable"]
    assert logged["sink"] == "team-webhook"
    assert logged["error"] == problem


SIGNED_SINK = """
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {name: team-webhook, namespace: demo}
spec:
  type: webhook
  webhook: {url: "URL", signingSecretRef: {name: hook-signing, key: key}}
---
apiVersion: v1
kind: Secret
metadata: {name: hook-signing, namespace: demo}
stringData: {key: "whsec-0123456789"}
"""


def verified(received: Received, key: bytes, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (docs/sinks.md): recompute the HMAC over `t.` + the raw body,
    compare in constant time, and refuse a timestamp older than `tolerance` seconds."""
    (header,) = received.header("X-Vigil-Signature")
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(key, fields["t"].encode() + b"." + received.body, hashlib.sha256)
    fresh = abs(now - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected.hexdigest(), fields["v1"])


async def test_a_signed_webhook_carries_a_signature_the_receiver_verifies(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    text = SIGNED_SINK.replace("URL", receiver.url)
    definition = definitions_view(text).sink("demo", "team-webhook")
    assert definition is not None
    notification, _ = secret_sink_notification(receiver.url)
    notification = replace(notification, sink=definition)
    clock = FakeClock(current=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    stamp = int(clock.now().timestamp())

    await WebhookNotifier(
        client, secrets=MemorySecrets.of(text), links=ReportLinks(), clock=clock
    ).send(notification)

    (received,) = receiver.requests
    assert received.header("X-Vigil-Signature")[0].startswith(f"t={stamp},v1=")
    assert verified(received, b"whsec-0123456789", now=stamp)
    assert not verified(received, b"another key", now=stamp)
    assert not verified(received, b"whsec-0123456789", now=stamp + 301), "a replay is refused"
    tampered = replace(received, body=received.body.replace(b'"t"', b'"T"'))
    assert not verified(tampered, b"whsec-0123456789", now=stamp)
    assert received.json()["title"] == "t"


async def test_an_unsigned_webhook_has_no_signature_and_a_spec_header_cannot_forge_one(
    receiver: ScriptedReceiver, client: aiohttp.ClientSession
) -> None:
    await send(client, receiver.url, headers={"x-vigil-signature": "t=1,v1=forged"})

    (received,) = receiver.requests
    assert received.header("X-Vigil-Signature") == []
