"""The `log` sink: the notification becomes one structured log line (`vigil.notifications`).

The line carries the default report: its title and text, one entry per step with its state
and duration, and the links to the execution and its trace. For trying Vigil out and for
tests; it cannot fail.
"""

from __future__ import annotations

import structlog

from vigil.sink.notifiers import Notification
from vigil.sink.report import ReportLinks, build_report, step_lines

notifications = structlog.get_logger("vigil.notifications")


class LogNotifier:
    def __init__(self, *, links: ReportLinks) -> None:
        self._links = links

    async def send(self, notification: Notification) -> None:
        report = build_report(notification, links=self._links)
        notifications.info(
            "notification",
            sink=notification.sink_name,
            title=report.title,
            message=report.text,
            steps=step_lines(report),
            findings=[f.summary for f in report.findings],
            links={link.label.lower(): link.url for link in report.links},
            execution_id=notification.request.execution_id,
            idempotency_key=notification.idempotency_key,
        )
