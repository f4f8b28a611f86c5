"""From an Alertmanager webhook body to the alert messages ingest publishes.

One message per alert, carrying its group context; the `Nats-Msg-Id` is the alert
occurrence (source, fingerprint, status, startsAt), so a group Alertmanager re-sends, or an
HA pair sends twice, is stored once.
"""

from __future__ import annotations

from datetime import datetime

from vigil.common import subjects
from vigil.common.adapters.jetstream import Outgoing
from vigil.common.alertmanager import WebhookPayload
from vigil.common.messages import Alert, AlertReceived, Group


def occurrence_id(namespace: str, source: str, alert: Alert) -> str:
    return f"{namespace}/{source}/{alert.fingerprint}/{alert.status}/{alert.starts_at.isoformat()}"


def alert_messages(
    payload: WebhookPayload, *, namespace: str, source: str, received_at: datetime
) -> list[Outgoing]:
    group = Group.from_webhook(payload)
    subject = subjects.alerts(namespace, source)
    messages = []
    for item in payload.alerts:
        alert = Alert.from_webhook(item)
        message = AlertReceived(
            namespace=namespace, source=source, received_at=received_at, alert=alert, group=group
        )
        messages.append(
            Outgoing(
                subject=subject,
                message=message,
                msg_id=occurrence_id(namespace, source, alert),
            )
        )
    return messages
