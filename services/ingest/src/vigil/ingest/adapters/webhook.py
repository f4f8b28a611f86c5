"""The `webhook` source type: any JSON body, read into alerts by the Source's CEL mapping.

`spec.webhook.items` (CEL over `body`) yields the list of items, one alert each; without
it the body is the one item. Every other field of the mapping is CEL over `item` (and
`body` too when there is no `items`: then they are the same document). Per-item fields do
not see `body` when `items` is set because converting a value to CEL costs in proportion
to its size: the whole body once per item would make a large body quadratic, while each
item once per field stays linear in the body. The number of items is capped
(`max_alerts`), and validation (`vigil.common.validation`) refuses a mapping that does
not compile or reads `body` per item.

A body the mapping cannot read raises InvalidInput naming the field and the item
(`items[2].labels.severity: no such key 'severity'`): the client gets a 422 and nothing of
the body is stored. The sizes of the alerts are checked afterwards, as for every source
type (`vigil.ingest.alert_limits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vigil.common.alertmanager import AlertStatus, label_fingerprint
from vigil.common.clock import SYSTEM_CLOCK, Clock
from vigil.common.definitions import Definition
from vigil.common.errors import InvalidInput
from vigil.common.expressions import ExpressionError, Scope
from vigil.common.messages import Alert
from vigil.common.resources import Source, WebhookMapping
from vigil.ingest.sources import AlertBatch

BODY_NAMES = frozenset({"body"})
ITEM_NAMES = frozenset({"item"})
WHOLE_BODY_NAMES = frozenset({"body", "item"})
DEFAULT_MAX_ALERTS = 1000
_SHOWN_VALUE_CHARACTERS = 64


class MappingError(InvalidInput):
    """The mapping could not read the body: the message names the field."""


def item_names(mapping: WebhookMapping) -> frozenset[str]:
    """The names a per-item field may read: `item`, and `body` when there is no `items`."""
    return ITEM_NAMES if mapping.items is not None else WHOLE_BODY_NAMES


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSource:
    max_alerts: int = DEFAULT_MAX_ALERTS
    clock: Clock = SYSTEM_CLOCK

    def read(self, document: object, *, source: Definition) -> AlertBatch:
        resource = source.resource
        assert isinstance(resource, Source), "webhook bodies are read for Sources only"
        mapping = resource.spec.webhook
        assert mapping is not None, "validation refuses type webhook without a mapping"
        received_at = self.clock.now()
        if mapping.items is None:
            scope = Scope({"body": document, "item": document})
            return AlertBatch(alerts=[_alert(mapping, scope, where="", received_at=received_at)])
        items = self._items(mapping.items, document)
        alerts = []
        for index, item in enumerate(items):
            scope = Scope({"item": item})
            where = f"items[{index}]."
            alerts.append(_alert(mapping, scope, where=where, received_at=received_at))
        return AlertBatch(alerts=alerts)

    def _items(self, source: str, document: object) -> list[Any]:
        items = _value(Scope({"body": document}), source, BODY_NAMES, where="items")
        if not isinstance(items, list):
            msg = f"items: must yield a list, got {_described(items)}"
            raise MappingError(msg)
        if len(items) > self.max_alerts:
            msg = (
                f"items: {len(items)} items, over the limit of {self.max_alerts} alerts per "
                "body; send fewer per request"
            )
            raise MappingError(msg)
        return items


def _alert(mapping: WebhookMapping, scope: Scope, *, where: str, received_at: datetime) -> Alert:
    names = item_names(mapping)
    labels = _string_map(
        mapping.labels_from, mapping.labels, scope, names=names, where=where, field="labels"
    )
    annotations = _string_map(
        mapping.annotations_from,
        mapping.annotations,
        scope,
        names=names,
        where=where,
        field="annotations",
    )
    status: AlertStatus = "firing"
    if mapping.status is not None:
        status = _status(_value(scope, mapping.status, names, where=f"{where}status"), where)
    fingerprint = label_fingerprint(labels)
    if mapping.fingerprint is not None:
        found = _value(scope, mapping.fingerprint, names, where=f"{where}fingerprint")
        fingerprint = _string(found, f"{where}fingerprint")
        if not fingerprint:
            raise MappingError(f"{where}fingerprint: must not be empty")
    starts_at = received_at
    if mapping.starts_at is not None:
        found = _value(scope, mapping.starts_at, names, where=f"{where}startsAt")
        starts_at = _timestamp(found, f"{where}startsAt")
    return Alert(
        status=status,
        fingerprint=fingerprint,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
    )


def _value(scope: Scope, source: str, names: frozenset[str], *, where: str) -> Any:
    try:
        return scope.evaluate(source, allowed=names)
    except ExpressionError as exc:
        raise MappingError(f"{where}: {exc}") from exc


def _string_map(
    whole: str | None,
    entries: Mapping[str, str],
    scope: Scope,
    *,
    names: frozenset[str],
    where: str,
    field: str,
) -> dict[str, str]:
    found: dict[str, str] = {}
    if whole is not None:
        path = f"{where}{field}From"
        value = _value(scope, whole, names, where=path)
        if not isinstance(value, dict):
            msg = f"{path}: must yield a map of strings, got {_described(value)}"
            raise MappingError(msg)
        for key, entry in value.items():
            found[_string(key, f"{path} (a key)")] = _string(entry, f"{path}.{key}")
    for name, source in entries.items():
        path = f"{where}{field}.{name}"
        found[name] = _string(_value(scope, source, names, where=path), path)
    return found


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        msg = f"{path}: must yield a string, got {_described(value)}; convert with string()"
        raise MappingError(msg)
    return value


def _status(value: object, where: str) -> AlertStatus:
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    msg = f'{where}status: must yield "firing" or "resolved", got {_described(value)}'
    raise MappingError(msg)


def _timestamp(value: object, path: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            msg = f"{path}: {value} is out of range as Unix seconds"
            raise MappingError(msg) from exc
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            msg = f"{path}: {_described(value)} is not an RFC 3339 time"
            raise MappingError(msg) from exc
    else:
        msg = (
            f"{path}: must yield an RFC 3339 string, a timestamp or Unix seconds (an int),"
            f" got {_described(value)}"
        )
        raise MappingError(msg)
    if moment.tzinfo is None:
        msg = f"{path}: {_described(value)} has no UTC offset (add Z or +00:00)"
        raise MappingError(msg)
    return moment


def _described(value: object) -> str:
    """A value as an error shows it: its type, and the value cut short."""
    shown = repr(value)
    if len(shown) > _SHOWN_VALUE_CHARACTERS:
        shown = shown[:_SHOWN_VALUE_CHARACTERS] + "…"
    return f"{type(value).__name__} {shown}"
