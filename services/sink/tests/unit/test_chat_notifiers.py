"""The slack and msteams notifiers against fake Slack and Teams over real HTTP: what the
receiver gets (Block Kit, an Adaptive Card, the token, the channel) and how each answer
ends the attempt (delivered; TransientError with Slack's Retry-After; PermanentError
naming Slack's or Teams' error)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.chat import (
    SLACK_API_OK,
    SLACK_WEBHOOK_OK,
    TEAMS_ACCEPTED,
    Answer,
    FakeChat,
    fake_chat,
    rate_limited,
    slack_api_error,
    slack_webhook_error,
)
from vigil.common.errors import PermanentError, TransientError
from vigil.common.messages import Alert, NotifyStep, StepRequest, StepResult
from vigil.common.secrets import SecretKey, SecretUnavailable
from vigil.common.testing import (
    FakeClock,
    MemorySecrets,
    RecordingPublisher,
    definitions_view,
    delivery,
    sqlite_store,
)
from vigil.sink.adapters.msteams import TeamsNotifier
from vigil.sink.adapters.slack import SlackNotifier
from vigil.sink.delivering import DeliveryLoop, RetryPolicy
from vigil.sink.handlers import SinkHandlers
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks

KEY = "01JEXEC/report/1/oncall"
TOKEN = "xoxb-test-token"
LINKS = ReportLinks(public_url="https://vigil.example.com")
ALERT = Alert.model_validate(
    {
        "status": "firing",
        "fingerprint": "f1",
        "labels": {"alertname": "DiskFull", "severity": "critical", "pod": "db-0"},
        "annotations": {"summary": "db-0's disk is 97% full"},
        "startsAt": "2026-11-24T08:00:00Z",
    }
)


def sink_yaml(spec: str, secret: str) -> str:
    return f"""
apiVersion: vigil.dev/v1alpha1
kind: Sink
metadata: {{name: oncall, namespace: demo}}
spec:
{spec}
---
apiVersion: v1
kind: Secret
metadata: {{name: chat, namespace: demo}}
stringData: {secret}
"""


def notification(text: str) -> Notification:
    definition = definitions_view(text).sink("demo", "oncall")
    assert definition is not None
    notify = NotifyStep(sinks=["oncall"], title="t", message="m", alert=ALERT)
    request = StepRequest(
        execution_id="01JEXEC",
        namespace="demo",
        workflow="disk",
        step="report",
        attempt=1,
        idempotency_key="01JEXEC/report/1",
        notify=notify,
    )
    return Notification(sink=definition, request=request, notify=notify, idempotency_key=KEY)


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    with fake_chat() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def slack_webhook(chat: FakeChat) -> tuple[Notification, MemorySecrets]:
    text = sink_yaml(
        "  type: slack\n  slack: {webhookUrlSecretRef: {name: chat, key: url}}",
        f'{{url: "{chat.url("/services/T1/B1/x")}"}}',
    )
    return notification(text), MemorySecrets.of(text)


SLACK_BOT = sink_yaml(
    '  type: slack\n  slack: {tokenSecretRef: {name: chat, key: token}, channel: "#oncall"}',
    "{token: TOKEN}",
)


def slack_bot(chat: FakeChat) -> tuple[Notification, MemorySecrets]:
    text = SLACK_BOT.replace("TOKEN", TOKEN)
    return notification(text), MemorySecrets.of(text)


def teams(chat: FakeChat) -> tuple[Notification, MemorySecrets]:
    text = sink_yaml(
        "  type: msteams\n  msteams: {webhookUrlSecretRef: {name: chat, key: url}}",
        f'{{url: "{chat.url("/workflows/abc/triggers/manual/paths/invoke")}"}}',
    )
    return notification(text), MemorySecrets.of(text)


def bot_notifier(
    chat: FakeChat, client: httpx.AsyncClient, secrets: MemorySecrets
) -> SlackNotifier:
    return SlackNotifier(client, secrets=secrets, links=LINKS, api_url=chat.url("/api"))


# --- Slack incoming webhook ---------------------------------------------------------------


async def test_slack_webhook_gets_the_block_kit_report_from_the_url_in_the_secret(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    note, secrets = slack_webhook(chat)

    await SlackNotifier(client, secrets=secrets, links=LINKS).send(note)

    (post,) = chat.posts
    assert post.path == "/services/T1/B1/x"
    assert secrets.resolved == [SecretKey(namespace="demo", name="chat", key="url")]
    assert post.headers["idempotency-key"] == KEY
    assert post.headers["content-type"] == "application/json"
    blocks = post.body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "DiskFull is firing (critical)"},
    }
    assert blocks[1]["text"]["text"] == "db-0's disk is 97% full"
    assert blocks[-1]["elements"][0]["url"] == "https://vigil.example.com/api/v1/executions/01JEXEC"
    assert post.body["text"].startswith("*DiskFull is firing (critical)*")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ],
)
async def test_slack_webhook_refusals_are_permanent_and_name_slacks_error(
    chat: FakeChat, client: httpx.AsyncClient, status: int, error: str
) -> None:
    chat.answer(slack_webhook_error(status, error))
    note, secrets = slack_webhook(chat)

    with pytest.raises(PermanentError) as raised:
        await SlackNotifier(client, secrets=secrets, links=LINKS).send(note)

    assert str(raised.value) == f"Slack answered {status}: {error}"
    assert len(chat.posts) == 1


async def test_slack_webhook_rate_limit_is_transient_with_slacks_retry_after(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    chat.answer(rate_limited("7"))
    note, secrets = slack_webhook(chat)

    with pytest.raises(TransientError) as raised:
        await SlackNotifier(client, secrets=secrets, links=LINKS).send(note)

    assert raised.value.retry_after == 7.0
    assert "Slack answered 429" in str(raised.value)


async def test_slack_webhook_server_error_is_transient(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    chat.answer(slack_webhook_error(500, "rollup_error"))
    note, secrets = slack_webhook(chat)

    with pytest.raises(TransientError, match="Slack answered 500: rollup_error"):
        await SlackNotifier(client, secrets=secrets, links=LINKS).send(note)


async def test_slack_s_retry_after_reaches_the_loop_and_every_attempt_carries_the_key(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    chat.answer(rate_limited("0"), SLACK_WEBHOOK_OK)
    note, secrets = slack_webhook(chat)
    notifier = SlackNotifier(client, secrets=secrets, links=LINKS)

    with pytest.raises(TransientError) as limited:
        await notifier.send(note)
    assert limited.value.retry_after == 0  # the loop waits this instead of its backoff
    await notifier.send(note)

    assert [p.headers["idempotency-key"] for p in chat.posts] == [KEY, KEY]


async def test_an_unreachable_slack_webhook_is_transient_and_does_not_show_the_url(
    client: httpx.AsyncClient,
) -> None:
    with fake_chat() as gone:
        note, secrets = slack_webhook(gone)
        url = gone.url("/services/T1/B1/x")
    # The server is stopped: the port refuses connections.

    with pytest.raises(TransientError) as raised:
        await SlackNotifier(client, secrets=secrets, links=LINKS).send(note)

    assert "Slack could not be reached" in str(raised.value)
    assert url not in str(raised.value)


# --- Slack bot token + chat.postMessage ---------------------------------------------------


async def test_slack_bot_posts_to_chat_post_message_with_the_token_and_channel(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    chat.answer(SLACK_API_OK)
    note, secrets = slack_bot(chat)

    await bot_notifier(chat, client, secrets).send(note)

    (post,) = chat.posts
    assert post.path == "/api/chat.postMessage"
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.body["channel"] == "#oncall"
    assert post.body["blocks"][0]["type"] == "header"
    assert secrets.resolved == [SecretKey(namespace="demo", name="chat", key="token")]


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
async def test_slack_api_refusals_are_permanent_and_name_slacks_error(
    chat: FakeChat, client: httpx.AsyncClient, error: str
) -> None:
    chat.answer(slack_api_error(error))
    note, secrets = slack_bot(chat)

    with pytest.raises(PermanentError) as raised:
        await bot_notifier(chat, client, secrets).send(note)

    assert str(raised.value) == f"Slack refused the message to #oncall: {error}"


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (rate_limited("3"), 3.0),
        (slack_api_error("ratelimited", headers={"Retry-After": "5"}), 5.0),
        (slack_api_error("internal_error"), None),
        (Answer(status=503, body="upstream down"), None),
    ],
)
async def test_slack_api_rate_limits_and_outages_are_transient(
    chat: FakeChat,
    client: httpx.AsyncClient,
    answer: Answer,
    retry_after: float | None,
) -> None:
    chat.answer(answer)
    note, secrets = slack_bot(chat)

    with pytest.raises(TransientError) as raised:
        await bot_notifier(chat, client, secrets).send(note)

    assert raised.value.retry_after == retry_after


async def test_a_slack_api_url_that_answers_no_slack_json_is_permanent(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    chat.answer(Answer(status=200, body="<html>proxy login</html>", content_type="text/html"))
    note, secrets = slack_bot(chat)

    with pytest.raises(PermanentError, match="without its JSON answer"):
        await bot_notifier(chat, client, secrets).send(note)


async def test_a_missing_token_secret_is_transient_naming_it_and_nothing_is_sent(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    note, secrets = slack_bot(chat)
    secrets.remove("demo", "chat")

    with pytest.raises(SecretUnavailable) as raised:
        await bot_notifier(chat, client, secrets).send(note)

    assert str(raised.value) == "Secret demo/chat is not defined in memory"
    assert chat.posts == []


# --- Teams workflow webhook ---------------------------------------------------------------


async def test_teams_gets_an_adaptive_card_message_and_202_is_delivered(
    chat: FakeChat, client: httpx.AsyncClient
) -> None:
    chat.answer(TEAMS_ACCEPTED)
    note, secrets = teams(chat)

    await TeamsNotifier(client, secrets=secrets, links=LINKS).send(note)

    (post,) = chat.posts
    assert post.path == "/workflows/abc/triggers/manual/paths/invoke"
    assert post.body["type"] == "message"
    (attachment,) = post.body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "DiskFull is firing (critical)"
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Execution",
            "url": "https://vigil.example.com/api/v1/executions/01JEXEC",
        }
    ]


@pytest.mark.parametrize("status", [400, 401, 404, 413])
async def test_teams_4xx_is_permanent_naming_the_answer(
    chat: FakeChat, client: httpx.AsyncClient, status: int
) -> None:
    chat.answer(Answer(status=status, body='{"error":{"code":"TriggerInputSchemaMismatch"}}'))
    note, secrets = teams(chat)

    with pytest.raises(PermanentError) as raised:
        await TeamsNotifier(client, secrets=secrets, links=LINKS).send(note)

    assert str(raised.value).startswith(f"Teams answered {status}: ")
    assert "TriggerInputSchemaMismatch" in str(raised.value)


@pytest.mark.parametrize(("status", "retry_after"), [(408, None), (429, 2.0), (502, None)])
async def test_teams_408_429_and_5xx_are_transient(
    chat: FakeChat, client: httpx.AsyncClient, status: int, retry_after: float | None
) -> None:
    headers = {"Retry-After": "2"} if retry_after else {}
    chat.answer(Answer(status=status, headers=headers))
    note, secrets = teams(chat)

    with pytest.raises(TransientError) as raised:
        await TeamsNotifier(client, secrets=secrets, links=LINKS).send(note)

    assert raised.value.retry_after == retry_after


# --- through the sink's handler -----------------------------------------------------------


async def test_the_handler_reports_slacks_refusal_on_the_step_and_in_the_deliveries(
    chat: FakeChat, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """channel_not_found: one request, the step fails naming it, one `failed` record."""
    chat.answer(slack_api_error("channel_not_found"))
    note, secrets = slack_bot(chat)
    bus = RecordingPublisher()
    async with sqlite_store(tmp_path) as store:
        handlers = SinkHandlers(
            bus=bus,
            definitions=definitions_view(SLACK_BOT.replace("TOKEN", TOKEN)),
            deliveries=DeliveryLoop(
                store=store,
                notifiers={"slack": bot_notifier(chat, client, secrets)},
                policy=RetryPolicy(attempts=3, backoff=0.5),
                clock=FakeClock(),
            ),
        )

        await handlers.on_notify(
            note.request, delivery(1, max_deliver=5, subject="vigil.steps.notify")
        )

        records = await store.deliveries(idempotency_key=KEY)
    (result,) = bus.messages(StepResult)
    assert result.outcome == "failed"
    assert result.error == "sink oncall: Slack refused the message to #oncall: channel_not_found"
    assert [(r.attempt, r.status, r.sink_type, r.detail) for r in records] == [
        (1, "failed", "slack", "Slack refused the message to #oncall: channel_not_found")
    ]
    assert len(chat.posts) == 1


@pytest.mark.parametrize("stored", [f"{TOKEN}\n", f"  {TOKEN} "])
async def test_a_token_with_whitespace_around_it_is_trimmed(
    chat: FakeChat, client: httpx.AsyncClient, stored: str
) -> None:
    chat.answer(SLACK_API_OK)
    note, secrets = slack_bot(chat)
    secrets.put("demo", "chat", token=stored)
    await bot_notifier(chat, client, secrets).send(note)
    assert chat.posts[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("stored", ["xoxb-two words", "xoxb-\u00e9t\u00e9", "xoxb-a\x00b"])
async def test_a_token_that_cannot_be_a_header_fails_naming_the_secret_not_the_value(
    chat: FakeChat, client: httpx.AsyncClient, stored: str
) -> None:
    note, secrets = slack_bot(chat)
    secrets.put("demo", "chat", token=stored)
    with pytest.raises(PermanentError) as refused:
        await bot_notifier(chat, client, secrets).send(note)
    assert "Secret chat (key token)" in str(refused.value)
    assert stored.strip() not in str(refused.value)
    assert chat.posts == []
