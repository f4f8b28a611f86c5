"""The `slack` sink: the default report as Block Kit, to an incoming webhook or through a
bot token's `chat.postMessage`.

Incoming webhook (`webhookUrlSecretRef`): Slack answers 200 `ok`, or a 4xx with a plain-text
error (`invalid_payload`, `no_service`, `channel_is_archived`…), permanent and named, or
429 with `Retry-After`. Bot token (`tokenSecretRef` + `channel`): `POST {api}/chat.postMessage`
with `Authorization: Bearer`; Slack answers HTTP 200 with `{"ok": false, "error": "…"}` when
it refuses, which is permanent (`channel_not_found`, `invalid_auth`, `not_in_channel`…)
except the errors Slack documents as passing (`ratelimited`, `internal_error`…); HTTP 429
carries `Retry-After`. The API's base URL is a sink setting (tests point it at a fake).
The notify step's own title/message replace the report's title and text.
"""

from __future__ import annotations

import httpx
from pydantic import JsonValue

from vigil.common.durations import parse_duration
from vigil.common.errors import PermanentError, TransientError
from vigil.common.secrets import SecretResolver
from vigil.common.sink_resources import SlackSinkSpec
from vigil.sink.adapters.posting import check_status, post_once, secret_value
from vigil.sink.adapters.webhook import retry_after_seconds
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks, block_kit, build_report, mrkdwn

SLACK_API_URL = "https://slack.com/api"
# chat.postMessage errors that say "later", not "never" (Slack's API reference).
PASSING_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def slack_message(notification: Notification, *, links: ReportLinks) -> dict[str, JsonValue]:
    """The message body: Block Kit, with the mrkdwn report as the notification text."""
    report = build_report(notification, links=links)
    return {"text": mrkdwn(report), "blocks": block_kit(report)}


class SlackNotifier:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        secrets: SecretResolver,
        links: ReportLinks,
        api_url: str = SLACK_API_URL,
    ) -> None:
        self._client = client
        self._secrets = secrets
        self._links = links
        self._api_url = api_url.rstrip("/")

    async def send(self, notification: Notification) -> None:
        spec = notification.resource.spec.slack
        if spec is None:
            msg = f"sink {notification.sink_name} has type slack but no `slack` settings"
            raise PermanentError(msg)
        message = slack_message(notification, links=self._links)
        headers = {"Idempotency-Key": notification.idempotency_key}
        if spec.webhook_url_secret_ref is not None:
            url = await secret_value(self._secrets, notification, spec.webhook_url_secret_ref)
            response = await post_once(
                self._client,
                url,
                message,
                receiver="Slack",
                headers=headers,
                timeout=parse_duration(spec.timeout),
            )
            check_status(response, receiver="Slack")
            return
        await self._post_message(notification, spec, message, headers)

    async def _post_message(
        self,
        notification: Notification,
        spec: SlackSinkSpec,
        message: dict[str, JsonValue],
        headers: dict[str, str],
    ) -> None:
        if spec.token_secret_ref is None or spec.channel is None:
            msg = f"sink {notification.sink_name} has neither a Slack webhook nor a token+channel"
            raise PermanentError(msg)
        token = (await secret_value(self._secrets, notification, spec.token_secret_ref)).strip()
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            ref = spec.token_secret_ref
            msg = (
                f"the Slack token in Secret {ref.name} (key {ref.key}) is not a token: it must "
                "be one word of printable ASCII"
            )
            raise PermanentError(msg)
        response = await post_once(
            self._client,
            f"{self._api_url}/chat.postMessage",
            {"channel": spec.channel, **message},
            receiver="Slack",
            headers={**headers, "Authorization": f"Bearer {token}"},
            timeout=parse_duration(spec.timeout),
            hidden=(token,),
        )
        check_status(response, receiver="Slack")
        _check_api_answer(response, channel=spec.channel)


def _check_api_answer(response: httpx.Response, *, channel: str) -> None:
    """Read a Web API answer: `{"ok": true}` delivered, `{"ok": false, "error": …}` not."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        msg = (
            f"Slack answered {response.status_code} without its JSON answer: {response.text[:200]}"
        )
        raise PermanentError(msg)
    if answer["ok"]:
        return
    error = str(answer.get("error", "unknown_error"))
    msg = f"Slack refused the message to {channel}: {error}"
    if error in PASSING_ERRORS:
        raise TransientError(msg, retry_after=retry_after_seconds(response))
    raise PermanentError(msg)
