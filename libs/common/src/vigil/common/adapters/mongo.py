"""MongoDB adapter of the store port, for production (DESIGN §5).

Speaks to MongoDB through PyMongo's native asyncio API (`AsyncMongoClient`; Motor is
end-of-life). One collection per document kind with `_id` = the document's id, datetimes as
BSON dates (UTC, millisecond precision), indexes created at `open`; TTL indexes on
`expire_at` let the server expire documents, `purge` does the same on demand. Concurrency
rests on single-document atomicity: a unique index for trigger keys, `replace_one` filtered
on `version` for compare-and-set, `find_one_and_update` for timer leases, and an optimistic
guard on `occurrences` for alert history. The semantics are the SQLite adapter's
(`vigil.common.adapters.sqlite`), proven by `tests/contract/test_store_contract.py`.
PyMongo's errors become TransientError here and never leave this module.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bson.errors import BSONError
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError,
    DuplicateKeyError,
    InvalidName,
    PyMongoError,
)

from vigil.common.documents import (
    AlertFilter,
    AlertPage,
    AlertRecord,
    Artifact,
    DeliveryRecord,
    Document,
    Execution,
    ExecutionFilter,
    ExecutionPage,
    alert_id,
)
from vigil.common.errors import Conflict, InvalidInput, PermanentError, TransientError
from vigil.common.history import merge_occurrence
from vigil.common.matchers import Matcher, parse_matcher
from vigil.common.messages import AlertReceived
from vigil.common.scanning import SCAN_BATCH, LabelScan
from vigil.common.store import Retention, with_expiry

# A BSON document as PyMongo hands it over; it never leaves this module.
type Bson = dict[str, Any]

DEFAULT_DATABASE = "vigil"
# Client options we set unless the URL sets them (options in the URL win).
_CLIENT_DEFAULTS: Mapping[str, int | str] = {
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 5000,
    "socketTimeoutMS": 10000,
    "w": "majority",
}
# Store metadata kept on execution documents beside the model's fields (timer leases).
_METADATA = frozenset({"lease_until", "lease_owner"})
# `vigil.common.adapters.sqlite.stamp`'s format: alert cursors read the same in both stores.
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# record_alert's optimistic loop: each round of a race lets at least one writer through, so
# this bounds the number of writers racing on one alert, not the time anyone waits.
_ALERT_ATTEMPTS = 64
_PLAIN_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Leading inline flags such as `(?i)` must stay in front of the anchors we add.
_ACTIVE_STATES = ["pending", "running"]


def _indexes() -> dict[str, list[IndexModel]]:
    def ttl() -> IndexModel:
        return IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0)

    return {
        "executions": [
            IndexModel([("trigger_key", ASCENDING)], unique=True),
            # Unique among unfinished executions only: finished ones hold None.
            IndexModel(
                [("exclusive_key", ASCENDING)],
                unique=True,
                partialFilterExpression={"exclusive_key": {"$type": "string"}},
            ),
            IndexModel([("state", ASCENDING), ("wake_at", ASCENDING)]),
            IndexModel([("namespace", ASCENDING), ("workflow", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("alert_id", ASCENDING), ("_id", ASCENDING)]),
            IndexModel(
                [
                    ("namespace", ASCENDING),
                    ("workflow", ASCENDING),
                    ("concurrency_key", ASCENDING),
                    ("_id", ASCENDING),
                ]
            ),
            ttl(),
        ],
        "alerts": [
            IndexModel([("last_seen", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("namespace", ASCENDING), ("source", ASCENDING), ("status", ASCENDING)]),
            ttl(),
        ],
        "artifacts": [ttl()],
        "deliveries": [
            IndexModel([("idempotency_key", ASCENDING), ("at", ASCENDING)]),
            IndexModel([("execution_id", ASCENDING), ("at", ASCENDING)]),
            ttl(),
        ],
    }


def _client_options(url: str) -> dict[str, Any]:
    given = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
    return {key: value for key, value in _CLIENT_DEFAULTS.items() if key.lower() not in given}


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn the driver's errors into ours, naming the operation that failed."""
    try:
        yield
    except BSONError as exc:  # the document itself cannot be encoded (too large, bad key)
        msg = f"MongoDB store: cannot {what}: {exc}"
        raise PermanentError(msg) from exc
    except PyMongoError as exc:
        msg = f"MongoDB store: cannot {what}: {exc}"
        raise TransientError(msg) from exc


def _encode(document: Document) -> Bson:
    fields = document.model_dump(mode="python")
    return {"_id": fields.pop("id"), **fields}


def _decode[D: Document](model: type[D], found: Mapping[str, Any]) -> D:
    fields = {key: value for key, value in found.items() if key not in _METADATA}
    fields["id"] = fields.pop("_id")
    return model.model_validate(fields)


def _label_condition(matcher: Matcher) -> Bson:
    """An equality matcher as a query: a missing label reads as the empty string."""
    path = f"labels.{matcher.name}"
    if matcher.operator == "=":
        return {path: {"$in": [None, ""]} if matcher.value == "" else matcher.value}
    assert matcher.operator == "!="
    return {path: {"$nin": [None, ""]} if matcher.value == "" else {"$ne": matcher.value}}


def _in_query(matcher: Matcher) -> bool:
    """Whether MongoDB may decide `matcher`: never a regex (`$regex` is PCRE, which
    backtracks), nor a label name that would read as a path ("a.b") or an operator ("$x")."""
    return matcher.pattern is None and _PLAIN_LABEL.fullmatch(matcher.name) is not None


def _alert_cursor(cursor: str) -> Bson:
    seen_text, _, after = cursor.partition("|")
    try:
        seen = datetime.strptime(seen_text, _STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        msg = f"cursor {cursor!r} is not a cursor of the alert listing"
        raise InvalidInput(msg) from exc
    return _after(seen, after)


def _after(seen: datetime, identity: str) -> Bson:
    """Alerts after (last_seen, _id) in listing order."""
    return {"$or": [{"last_seen": {"$lt": seen}}, {"last_seen": seen, "_id": {"$lt": identity}}]}


def _resume_at(document: Bson) -> str:
    seen: datetime = document["last_seen"]
    return f"{seen.astimezone(UTC).strftime(_STAMP_FORMAT)}|{document['_id']}"


def _violated_index(error: DuplicateKeyError) -> str:
    """The field of the unique index a write violated, as the server reports it."""
    key_pattern = (error.details or {}).get("keyPattern") or {}
    return next(iter(key_pattern), "")


def _all_of(clauses: list[Bson]) -> Bson:
    return {"$and": clauses} if clauses else {}


class MongoStore:
    def __init__(
        self, client: AsyncMongoClient[Bson], database: AsyncDatabase[Bson], retention: Retention
    ) -> None:
        self._client = client
        self._retention = retention
        self._executions: AsyncCollection[Bson] = database["executions"]
        self._alerts: AsyncCollection[Bson] = database["alerts"]
        self._artifacts: AsyncCollection[Bson] = database["artifacts"]
        self._deliveries: AsyncCollection[Bson] = database["deliveries"]
        self._schedule_ticks: AsyncCollection[Bson] = database["schedule_ticks"]

    @classmethod
    async def open(cls, url: str, *, retention: Retention) -> MongoStore:
        """Connect to the database named in the URL's path (`vigil` if none), make indexes."""
        _trace_commands()
        try:
            client: AsyncMongoClient[Bson] = AsyncMongoClient(
                url, tz_aware=True, tzinfo=UTC, **_client_options(url)
            )
        except (ConfigurationError, ValueError, TypeError) as exc:
            msg = f"MongoDB store URL is invalid: {exc}"
            raise InvalidInput(msg) from exc
        try:
            database = client.get_default_database(DEFAULT_DATABASE)
        except (ConfigurationError, InvalidName) as exc:
            await client.close()
            msg = f"MongoDB store URL names an invalid database: {exc}"
            raise InvalidInput(msg) from exc
        store = cls(client, database, retention)
        try:
            with _translated(f"open database {database.name!r} (create indexes)"):
                for name, indexes in _indexes().items():
                    await database[name].create_indexes(indexes)
        except BaseException:
            await client.close()
            raise
        return store

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        with _translated("ping"):
            await self._client.admin.command("ping")

    # --- alerts --------------------------------------------------------------------------

    async def record_alert(self, received: AlertReceived) -> AlertRecord:
        identity = alert_id(received.namespace, received.source, received.alert.fingerprint)
        # Read, merge, write only if nobody wrote in between: `occurrences` grows by one with
        # every write, so it is the alert's version. Concurrent writers (engine replicas)
        # retry with what the winner wrote.
        with _translated(f"record alert {identity}"):
            for _ in range(_ALERT_ATTEMPTS):
                found = await self._alerts.find_one({"_id": identity})
                previous = _decode(AlertRecord, found) if found is not None else None
                record = merge_occurrence(previous, received, identity=identity)
                record = record.model_copy(
                    update={"expire_at": record.last_seen + self._retention.alerts}
                )
                if previous is None:
                    try:
                        await self._alerts.insert_one(_encode(record))
                    except DuplicateKeyError:
                        continue
                    return record
                written = await self._alerts.replace_one(
                    {"_id": identity, "occurrences": previous.occurrences}, _encode(record)
                )
                if written.matched_count == 1:
                    return record
        msg = f"alert {identity} kept changing under {_ALERT_ATTEMPTS} attempts to record it"
        raise Conflict(msg)

    async def record_alerts(self, received: Sequence[AlertReceived]) -> list[AlertRecord]:
        return [await self.record_alert(item) for item in received]

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        with _translated(f"read alert {alert_id}"):
            found = await self._alerts.find_one({"_id": alert_id})
        return _decode(AlertRecord, found) if found is not None else None

    async def list_alerts(
        self, query: AlertFilter, *, limit: int = 50, cursor: str | None = None
    ) -> AlertPage:
        clauses: list[Bson] = [
            {field: value}
            for field in ("namespace", "source", "status")
            if (value := getattr(query, field)) is not None
        ]
        residual: list[Matcher] = []
        for text in query.matchers:
            matcher = parse_matcher(text)
            if _in_query(matcher):
                clauses.append(_label_condition(matcher))
            else:
                residual.append(matcher)
        if cursor is not None:
            clauses.append(_alert_cursor(cursor))
        if residual:
            found, resume = await self._scan_alerts(residual, clauses, limit)
        else:
            found = await self._alert_documents(clauses, limit + 1)
            found, resume = found[:limit], found[limit - 1] if len(found) > limit else None
        return AlertPage(
            items=[_decode(AlertRecord, document) for document in found],
            next=_resume_at(resume) if resume is not None else None,
        )

    async def _scan_alerts(
        self, matchers: list[Matcher], clauses: list[Bson], limit: int
    ) -> tuple[list[Bson], Bson | None]:
        """Matchers run here, in RE2, in a worker thread, over a bounded scan (see
        `vigil.common.scanning`): never in MongoDB, never on the event loop."""
        scan: LabelScan[Bson] = LabelScan(matchers=matchers, limit=limit)
        after: list[Bson] = []
        while not scan.done:
            batch = await self._alert_documents([*clauses, *after], SCAN_BATCH)
            await asyncio.to_thread(scan.feed, ((d.get("labels") or {}, d) for d in batch))
            if len(batch) < SCAN_BATCH:
                break
            after = [_after(batch[-1]["last_seen"], batch[-1]["_id"])]
        return scan.page()

    async def _alert_documents(self, clauses: list[Bson], limit: int) -> list[Bson]:
        with _translated("list alerts"):
            results = (
                self._alerts.find(_all_of(clauses))
                .sort([("last_seen", DESCENDING), ("_id", DESCENDING)])
                .limit(limit)
            )
            return await results.to_list()

    # --- executions ----------------------------------------------------------------------

    async def insert_execution(self, execution: Execution) -> bool:
        execution = with_expiry(execution, self._retention)
        with _translated(f"insert execution {execution.id}"):
            try:
                await self._executions.insert_one(_encode(execution))
            except DuplicateKeyError as exc:
                # The server names one violated index; another (`_id`, the exclusive key)
                # may hide a duplicate trigger key, which wins: the same alert again.
                violated = _violated_index(exc)
                if violated == "trigger_key" or await self._executions.count_documents(
                    {"trigger_key": execution.trigger_key}, limit=1
                ):
                    return False
                if violated == "exclusive_key":
                    msg = f"another execution holds concurrency key {execution.exclusive_key}"
                    raise Conflict(msg) from exc
                msg = f"MongoDB store: cannot insert execution {execution.id}: {exc}"
                raise TransientError(msg) from exc
        return True

    async def insert_executions(self, executions: Sequence[Execution]) -> list[bool]:
        if any(e.exclusive_key is not None for e in executions):
            raise ValueError("insert executions with a concurrency key one by one")
        return [await self.insert_execution(execution) for execution in executions]

    async def get_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        found: dict[str, Execution] = {}
        for execution_id in dict.fromkeys(execution_ids):
            execution = await self.get_execution(execution_id)
            if execution is not None:
                found[execution_id] = execution
        return found

    async def update_executions(self, updates: Sequence[tuple[Execution, int]]) -> list[bool]:
        saved = []
        for execution, expected in updates:
            try:
                await self.update_execution(execution, expected_version=expected)
            except Conflict:
                saved.append(False)
            else:
                saved.append(True)
        return saved

    async def get_execution(self, execution_id: str) -> Execution | None:
        with _translated(f"read execution {execution_id}"):
            found = await self._executions.find_one({"_id": execution_id})
        return _decode(Execution, found) if found is not None else None

    async def find_by_trigger_key(self, trigger_key: str) -> Execution | None:
        with _translated(f"read execution by trigger key {trigger_key}"):
            found = await self._executions.find_one({"trigger_key": trigger_key})
        return _decode(Execution, found) if found is not None else None

    async def update_execution(self, execution: Execution, *, expected_version: int) -> None:
        if execution.version != expected_version + 1:
            msg = f"new version must be {expected_version + 1}, got {execution.version}"
            raise ValueError(msg)
        execution = with_expiry(execution, self._retention)
        # A replacement carries no lease fields: updating an execution releases its lease.
        with _translated(f"update execution {execution.id}"):
            try:
                written = await self._executions.replace_one(
                    {"_id": execution.id, "version": expected_version}, _encode(execution)
                )
            except DuplicateKeyError as exc:
                if _violated_index(exc) != "exclusive_key":
                    raise
                msg = f"another execution holds concurrency key {execution.exclusive_key}"
                raise Conflict(msg) from exc
        if written.matched_count != 1:
            msg = f"execution {execution.id} is no longer at version {expected_version}"
            raise Conflict(msg)

    async def list_executions(
        self, query: ExecutionFilter, *, limit: int = 50, cursor: str | None = None
    ) -> ExecutionPage:
        clauses: list[Bson] = [
            {field: value}
            for field in ("namespace", "workflow", "state", "alert_id", "concurrency_key")
            if (value := getattr(query, field)) is not None
        ]
        if query.active is not None:
            clauses.append({"state": {"$in" if query.active else "$nin": _ACTIVE_STATES}})
        if cursor is not None:
            clauses.append({"_id": {"$lt": cursor}})
        with _translated("list executions"):
            results = (
                self._executions.find(_all_of(clauses)).sort("_id", DESCENDING).limit(limit + 1)
            )
            documents = await results.to_list()
        items = [_decode(Execution, document) for document in documents[:limit]]
        return ExecutionPage(items=items, next=items[-1].id if len(documents) > limit else None)

    async def count_executions(self) -> dict[str, int]:
        with _translated("count executions"):
            results = await self._executions.aggregate(
                [{"$group": {"_id": "$state", "count": {"$sum": 1}}}]
            )
            groups = await results.to_list()
        return {str(group["_id"]): int(group["count"]) for group in groups}

    async def claim_due(
        self, now: datetime, *, owner: str, lease: timedelta, limit: int = 100
    ) -> list[Execution]:
        # One atomic find-and-modify per execution: a document is leased by whoever modifies
        # it first, so concurrent claimers (engine replicas) never share one.
        # `$ne: None` is redundant on MongoDB (a range on dates never matches null) but
        # keeps the query right on servers that compare across BSON types (mongoeco).
        due: Bson = {
            "wake_at": {"$ne": None, "$lte": now},
            "state": {"$in": _ACTIVE_STATES},
            "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}],
        }
        leased: Bson = {"$set": {"lease_until": now + lease, "lease_owner": owner}}
        claimed: list[Execution] = []
        try:
            with _translated("claim due timers"):
                for _ in range(limit):
                    found = await self._executions.find_one_and_update(
                        due,
                        leased,
                        sort=[("wake_at", ASCENDING)],
                        return_document=ReturnDocument.AFTER,
                    )
                    if found is None:
                        break
                    claimed.append(_decode(Execution, found))
        except TransientError:
            # What is already leased is ours: hand it over rather than leave it stranded
            # until the lease expires. The next claim meets the error again.
            if not claimed:
                raise
        return sorted(claimed, key=lambda e: (e.wake_at or now, e.id))

    # --- artifacts and deliveries --------------------------------------------------------

    async def _put(self, collection: AsyncCollection[Bson], document: Bson, what: str) -> None:
        with _translated(what):
            try:
                await collection.replace_one({"_id": document["_id"]}, document, upsert=True)
            except DuplicateKeyError:
                # Two upserts of a new id raced and this one lost: replace the winner's.
                await collection.replace_one({"_id": document["_id"]}, document, upsert=True)

    async def put_artifact(self, artifact: Artifact) -> None:
        artifact = artifact.model_copy(
            update={"expire_at": artifact.created_at + self._retention.artifacts}
        )
        await self._put(self._artifacts, _encode(artifact), f"store artifact {artifact.id}")

    async def get_artifact(self, artifact_id: str) -> Artifact | None:
        with _translated(f"read artifact {artifact_id}"):
            found = await self._artifacts.find_one({"_id": artifact_id})
        return _decode(Artifact, found) if found is not None else None

    async def record_delivery(self, delivery: DeliveryRecord) -> None:
        delivery = delivery.model_copy(
            update={"expire_at": delivery.at + self._retention.deliveries}
        )
        await self._put(self._deliveries, _encode(delivery), f"record delivery {delivery.id}")

    async def deliveries(
        self, *, execution_id: str | None = None, idempotency_key: str | None = None
    ) -> list[DeliveryRecord]:
        if (execution_id is None) == (idempotency_key is None):
            raise ValueError("give exactly one of execution_id and idempotency_key")
        field = "execution_id" if execution_id is not None else "idempotency_key"
        with _translated("list deliveries"):
            results = self._deliveries.find({field: execution_id or idempotency_key}).sort(
                [("at", ASCENDING), ("_id", ASCENDING)]
            )
            documents = await results.to_list()
        return [_decode(DeliveryRecord, document) for document in documents]

    # --- schedule ticks ------------------------------------------------------------------

    async def claim_tick(self, schedule: str, tick: datetime) -> bool:
        # An upsert filtered on an earlier tick: no record inserts one, an earlier tick is
        # replaced, and a record with this tick or a later one does not match, so the
        # upsert's insert collides with it on `_id`: the claim is lost.
        with _translated(f"claim tick of schedule {schedule}"):
            try:
                await self._schedule_ticks.update_one(
                    {"_id": schedule, "last_tick": {"$lt": tick}},
                    {"$set": {"last_tick": tick}},
                    upsert=True,
                )
            except DuplicateKeyError:
                return False
        return True

    async def last_ticks(self) -> dict[str, datetime]:
        with _translated("read schedule ticks"):
            documents = await self._schedule_ticks.find({}).to_list()
        return {str(d["_id"]): d["last_tick"] for d in documents}

    # --- retention -----------------------------------------------------------------------

    async def purge(self, now: datetime) -> int:
        # What the TTL monitor does about once a minute, now (`$ne: None` as in claim_due).
        removed = 0
        for collection in (self._executions, self._alerts, self._artifacts, self._deliveries):
            with _translated(f"purge {collection.name}"):
                deleted = await collection.delete_many({"expire_at": {"$ne": None, "$lte": now}})
            removed += deleted.deleted_count
        return removed


def _trace_commands() -> None:
    """Every MongoDB command of this process in a span of the trace that caused it
    (PyMongo's command listeners are global, so once, before the first client)."""
    instrumentor = PymongoInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
