"""Documents and settings shared by the store contract suite (`tests/contract`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.common.alertmanager import AlertStatus
from vigil.common.documents import (
    Artifact,
    DeliveryRecord,
    Execution,
    StepRecord,
)
from vigil.common.messages import Alert, AlertReceived, ExecutionState
from vigil.common.store import Retention

ADAPTERS = ["sqlite", "mongodb"]
RETENTION = Retention(
    executions=timedelta(days=7),
    alerts=timedelta(days=3),
    artifacts=timedelta(days=2),
    deliveries=timedelta(days=1),
)
LEASE = timedelta(minutes=5)
RACING_STORES = 4

# --- documents -------------------------------------------------------------------------


def now_ms() -> datetime:
    """The current time in whole milliseconds, the precision both stores keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def make_execution(
    execution_id: str,
    *,
    at: datetime,
    trigger_key: str | None = None,
    namespace: str = "shop",
    workflow: str = "restart-pod",
    state: ExecutionState = "pending",
    alert: str = "",
    concurrency_key: str = "fp-1",
    exclusive_key: str | None = None,
    wake_at: datetime | None = None,
    finished_at: datetime | None = None,
    version: int = 0,
) -> Execution:
    return Execution(
        id=execution_id,
        namespace=namespace,
        workflow=workflow,
        source="alertmanager",
        alert_id=alert,
        trigger_key=trigger_key or f"trigger-{execution_id}",
        concurrency_key=concurrency_key,
        exclusive_key=exclusive_key,
        alert=Alert(
            status="firing",
            fingerprint=f"fp-{execution_id}",
            labels={"alertname": "KubePodCrashLooping", "pod": "api-7f9c"},
            starts_at=at - timedelta(minutes=5),
        ),
        state=state,
        version=version,
        created_at=at,
        updated_at=at,
        finished_at=finished_at,
        wake_at=wake_at,
        steps=[StepRecord(name="restart", kind="cli")],
    )


def make_finished_run(
    execution_id: str, *, at: datetime, state: ExecutionState = "succeeded"
) -> Execution:
    """A 4 s execution of ops/disk: its cli step (second attempt) ran from 1 s to 3 s with
    its output cut (an artifact holds it), then its notify step was delivered to `log`."""
    base = make_execution(
        execution_id, at=at, namespace="ops", workflow="disk", alert="ops/am/fp-1"
    )
    return base.model_copy(
        update={
            "state": state,
            "finished_at": at + timedelta(seconds=4),
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "steps": [
                StepRecord(
                    name="measure",
                    kind="cli",
                    state="succeeded",
                    attempt=2,
                    started_at=at + timedelta(seconds=1),
                    finished_at=at + timedelta(seconds=3),
                    output={
                        "command": ["df", "-h", "/var/lib data"],
                        "exitCode": 0,
                        "stdout": "/dev/sda1  93%  /var <lib>",
                        "stderr": "",
                        "truncated": True,
                        "artifactId": f"{execution_id}/measure/2/output",
                    },
                ),
                StepRecord(
                    name="tell",
                    kind="notify",
                    state="succeeded",
                    attempt=1,
                    started_at=at + timedelta(seconds=3),
                    finished_at=at + timedelta(seconds=4),
                    output={
                        "title": "Disk 93% full on db-1",
                        "message": "df says /var is at 93%",
                        "deliveries": [{"sink": "log", "status": "delivered", "id": "k"}],
                    },
                ),
            ],
        }
    )


def make_occurrence(
    *,
    at: datetime,
    status: AlertStatus = "firing",
    fingerprint: str = "fp-1",
    labels: dict[str, str] | None = None,
    namespace: str = "shop",
    source: str = "alertmanager",
) -> AlertReceived:
    return AlertReceived(
        namespace=namespace,
        source=source,
        received_at=at,
        alert=Alert(
            status=status,
            fingerprint=fingerprint,
            labels={"alertname": "KubePodCrashLooping"} if labels is None else labels,
            annotations={"summary": "api is crash-looping"},
            starts_at=at - timedelta(minutes=1),
            ends_at=at if status == "resolved" else None,
        ),
    )


def make_delivery(delivery_id: str, *, at: datetime, execution: str, key: str) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery_id,
        idempotency_key=key,
        execution_id=execution,
        step="notify",
        sink="oncall",
        sink_type="webhook",
        attempt=1,
        status="delivered",
        at=at,
    )


def make_artifact(artifact_id: str, *, at: datetime, content: str = "log line\n") -> Artifact:
    return Artifact(
        id=artifact_id,
        execution_id="ex-1",
        step="restart",
        kind="stdout",
        content=content,
        created_at=at,
    )
