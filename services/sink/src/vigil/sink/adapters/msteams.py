"""The `msteams` sink: the default report as an Adaptive Card 1.4, posted to a Teams
workflow (Power Automate) webhook whose URL is in a Secret.

The workflow accepts the message with 202; 4xx other than 408/429 are permanent (the
message or the URL is wrong), 408, 429 and 5xx transient with `Retry-After` when given.
The notify step's own title/message replace the report's title and text.
"""

from __future__ import annotations

import httpx
from pydantic import JsonValue

from vigil.common.durations import parse_duration
from vigil.common.errors import PermanentError
from vigil.common.secrets import SecretResolver
from vigil.sink.adapters.posting import check_status, post_once, secret_value
from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks, adaptive_card, build_report

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


def teams_message(notification: Notification, *, links: ReportLinks) -> dict[str, JsonValue]:
    card = adaptive_card(build_report(notification, links=links))
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


class TeamsNotifier:
    def __init__(
        self, client: httpx.AsyncClient, *, secrets: SecretResolver, links: ReportLinks
    ) -> None:
        self._client = client
        self._secrets = secrets
        self._links = links

    async def send(self, notification: Notification) -> None:
        spec = notification.resource.spec.msteams
        if spec is None:
            msg = f"sink {notification.sink_name} has type msteams but no `msteams` settings"
            raise PermanentError(msg)
        url = await secret_value(self._secrets, notification, spec.webhook_url_secret_ref)
        response = await post_once(
            self._client,
            url,
            teams_message(notification, links=self._links),
            receiver="Teams",
            headers={"Idempotency-Key": notification.idempotency_key},
            timeout=parse_duration(spec.timeout),
        )
        check_status(response, receiver="Teams")
