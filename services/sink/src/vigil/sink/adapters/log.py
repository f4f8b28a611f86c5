"""The `log` sink: the notification becomes one structured log line (`vigil.notifications`).

For trying Vigil out and for tests; it cannot fail.
"""

from __future__ import annotations

import structlog

from vigil.sink.notifiers import Notification

notifications = structlog.get_logger("vigil.notifications")


class LogNotifier:
    async def send(self, notification: Notification) -> None:
        notifications.info(
            "notification",
            sink=notification.sink_name,
            title=notification.notify.title,
            message=notification.notify.message,
            execution_id=notification.request.execution_id,
            idempotency_key=notification.idempotency_key,
        )
