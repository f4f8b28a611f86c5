"""The store port: what services need from the document store, nothing more.

It is split by consumer (`AlertStore`, `ExecutionStore`, `ArtifactStore`, `DeliveryStore`)
so that a handler names only what it uses; `Store` is all of them. Two adapters implement
it with the same semantics, proven by one contract suite (`tests/contract/`): SQLite
(`vigil.common.adapters.sqlite`, embedded) and MongoDB (`vigil.common.adapters.mongo`,
production).

- A unique trigger key: a second insert of the same key returns False, never raises.
- Compare-and-set on `Execution.version`: a lost race raises `Conflict`.
- Durable timers: `claim_due` leases executions whose `wake_at` has passed; a lease is held
  by one claimer until it expires or the execution is updated, so two engine replicas
  never both work on the same timer.
- Newest-first cursor pagination; filters as in the API.
- Retention: every document has an `expire_at` (set when an execution finishes, and from
  the last sighting of an alert); MongoDB expires them with TTL indexes, and `purge`
  deletes them on demand (SQLite's periodic purge, tests).
- Concurrency keys: an unfinished execution's `exclusive_key` is unique; inserting a second
  raises `Conflict` (the same trigger key again still returns False); finishing releases it.
- Timestamps keep millisecond precision (what a BSON date holds); SQLite keeps more.
- Schedule ticks: `claim_tick` is a compare-and-set on a schedule's last fired tick, so of
  several engine replicas claiming the same tick exactly one wins.
- Driver errors become `TransientError` (the message is retried) at the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from vigil.common.documents import (
    AlertFilter,
    AlertPage,
    AlertRecord,
    Artifact,
    DeliveryRecord,
    Execution,
    ExecutionFilter,
    ExecutionPage,
)
from vigil.common.messages import AlertReceived

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How long documents are kept (DESIGN §5: TTL on finished executions)."""

    executions: timedelta = 30 * DAY
    alerts: timedelta = 30 * DAY
    artifacts: timedelta = 30 * DAY
    deliveries: timedelta = 30 * DAY


def with_expiry(execution: Execution, retention: Retention) -> Execution:
    """The execution as stored: finished, it expires after the retention and releases its
    concurrency key; unfinished, it never expires."""
    if execution.finished and execution.finished_at is not None:
        expire_at = execution.finished_at + retention.executions
        return execution.model_copy(update={"expire_at": expire_at, "exclusive_key": None})
    return execution.model_copy(update={"expire_at": None})


class AlertStore(Protocol):
    """Alert history: written by the engine, read by the API."""

    async def record_alert(self, received: AlertReceived) -> AlertRecord:
        """Upsert the history of (namespace, source, fingerprint) with this occurrence.

        The status follows the newest notification by `received_at`; an older one that
        arrives late is counted but does not change the status.
        """

    async def record_alerts(self, received: Sequence[AlertReceived]) -> list[AlertRecord]:
        """`record_alert` for each, in order, in one transaction where the store has them."""

    async def get_alert(self, alert_id: str) -> AlertRecord | None: ...

    async def list_alerts(
        self, query: AlertFilter, *, limit: int = 50, cursor: str | None = None
    ) -> AlertPage:
        """Alerts, most recently seen first."""


class ExecutionStore(Protocol):
    """Executions: the engine is their single writer; the API reads them."""

    async def insert_execution(self, execution: Execution) -> bool:
        """Insert; return False (and change nothing) if the trigger key already exists."""

    async def insert_executions(self, executions: Sequence[Execution]) -> list[bool]:
        """`insert_execution` for each (no exclusive keys), in one transaction where the
        store has them; False where the trigger key already existed (or came earlier)."""

    async def get_execution(self, execution_id: str) -> Execution | None: ...

    async def get_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        """The executions that exist among `execution_ids`, by id."""

    async def find_by_trigger_key(self, trigger_key: str) -> Execution | None: ...

    async def update_execution(self, execution: Execution, *, expected_version: int) -> None:
        """Replace the execution if its stored version is `expected_version`.

        `execution.version` must be `expected_version + 1`. Raises Conflict otherwise.
        Releases any timer lease on it.
        """

    async def update_executions(self, updates: Sequence[tuple[Execution, int]]) -> list[bool]:
        """`update_execution` for each `(execution, expected_version)`, in one transaction
        where the store has them; False (nothing written) where the version had moved on.
        Updates may release a concurrency key, never take one."""

    async def list_executions(
        self, query: ExecutionFilter, *, limit: int = 50, cursor: str | None = None
    ) -> ExecutionPage: ...

    async def count_executions(self) -> dict[str, int]:
        """How many executions are in each state (states with none are left out)."""

    async def claim_due(
        self, now: datetime, *, owner: str, lease: timedelta, limit: int = 100
    ) -> list[Execution]:
        """Lease up to `limit` unfinished executions with `wake_at <= now` to `owner`."""


class ArtifactStore(Protocol):
    """Large step outputs: written by the executor, read by the API."""

    async def put_artifact(self, artifact: Artifact) -> None:
        """Store (or replace, same id) an artifact."""

    async def get_artifact(self, artifact_id: str) -> Artifact | None: ...


class DeliveryStore(Protocol):
    """Delivery attempts: written by the sink, read by the API."""

    async def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Store (or replace, same id) one delivery attempt."""

    async def deliveries(
        self, *, execution_id: str | None = None, idempotency_key: str | None = None
    ) -> list[DeliveryRecord]:
        """Delivery attempts, oldest first, by execution or by idempotency key."""


class ScheduleStore(Protocol):
    """The last fired tick of each schedule Source: claimed by the engine, read by the API.

    A schedule is named by its key, `namespace/source`.
    """

    async def claim_tick(self, schedule: str, tick: datetime) -> bool:
        """Record `tick` as the last fired tick of `schedule` unless the stored one is as
        late or later; True if this call did (of concurrent claimers of a tick, one wins)."""

    async def last_ticks(self) -> dict[str, datetime]:
        """The last fired tick of every schedule that has fired, by key."""


class Store(AlertStore, ExecutionStore, ArtifactStore, DeliveryStore, ScheduleStore, Protocol):
    """The whole store, as an adapter implements it and a composition root holds it."""

    async def ping(self) -> None:
        """Raise TransientError unless the store answers."""

    async def close(self) -> None: ...

    async def purge(self, now: datetime) -> int:
        """Delete every document whose `expire_at` has passed; return how many."""
