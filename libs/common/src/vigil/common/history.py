"""Alert history: how one more occurrence changes an alert's document (store-agnostic).

Both store adapters call `merge_occurrence`, so the rules live once: the status follows the
newest notification by ingest time (a late, older one is counted but changes nothing),
every status change is appended to the history, first/last seen and the count move on.
"""

from __future__ import annotations

from datetime import datetime

from vigil.common.documents import AlertRecord, StatusChange
from vigil.common.messages import AlertReceived


def merge_occurrence(
    previous: AlertRecord | None, received: AlertReceived, *, identity: str
) -> AlertRecord:
    alert = received.alert
    now = received.received_at
    if previous is None:
        return AlertRecord(
            id=identity,
            namespace=received.namespace,
            source=received.source,
            fingerprint=alert.fingerprint,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            first_seen=now,
            last_seen=now,
            history=[StatusChange(status=alert.status, at=now)],
        )
    # Compared at millisecond precision: what a BSON date (the MongoDB store) keeps.
    newest = _ms(now) >= _ms(previous.last_seen)
    update: dict[str, object] = {
        "occurrences": previous.occurrences + 1,
        "first_seen": min(previous.first_seen, now),
        "last_seen": max(previous.last_seen, now),
    }
    if newest:
        update |= {
            "status": alert.status,
            "labels": alert.labels,
            "annotations": alert.annotations,
            "starts_at": alert.starts_at,
            "ends_at": alert.ends_at,
        }
        if alert.status != previous.status:
            update["history"] = [*previous.history, StatusChange(status=alert.status, at=now)]
    return previous.model_copy(update=update)


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def is_newest(record: AlertRecord, received: AlertReceived) -> bool:
    """Whether `received` is the notification the record's current state comes from."""
    return _ms(received.received_at) >= _ms(record.last_seen)
