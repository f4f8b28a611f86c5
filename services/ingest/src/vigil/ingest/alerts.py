"""From the alerts of a webhook body to the messages ingest publishes.

One message per alert, carrying its group context; the `Nats-Msg-Id` is the alert
occurrence (source, fingerprint, status, startsAt), so a group Alertmanager re-sends, or an
HA pair sends twice, is stored once.
"""

from __future__ import annotations

from datetime import datetime

from vigil.common import subjects
from vigil.common.bus import Outgoing
from vigil.common.messages import AlertReceived
from vigil.ingest.sources import AlertBatch


def alert_messages(
    batch: AlertBatch, *, namespace: str, source: str, received_at: datetime
) -> list[Outgoing]:
    subject = subjects.alerts(namespace, source)
    received = [
        AlertReceived(
            namespace=namespace,
            source=source,
            received_at=received_at,
            alert=alert,
            group=batch.group,
        )
        for alert in batch.alerts
    ]
    return [Outgoing(subject=subject, message=r, msg_id=r.occurrence_id) for r in received]
