"""Validated definitions as the controller publishes them to the `vigil-config` KV bucket.

The controller is the only writer. Engine, ingest and sink keep a `DefinitionsView`: an
in-memory copy fed by a KV watch, ready once the initial values have arrived. A definition
names the Secrets it uses and never holds their values: whoever needs one resolves it at
use time (`vigil.common.secrets`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar, Protocol

import structlog
from pydantic import ValidationError, model_validator

from vigil.common.messages import SHOWN_IN_CAMEL_CASE, Contract
from vigil.common.resources import AnyResource, Sink, Source, Workflow

log = structlog.get_logger(__name__)


class Definition(Contract):
    """A valid resource; the Secrets it references by name are resolved where used."""

    schema_name: ClassVar[str] = "definition.v1"

    resource: AnyResource
    origin: str = ""

    @model_validator(mode="before")
    @classmethod
    def _drop_secret_values(cls, data: Any) -> Any:
        """A controller before issue 10 wrote resolved values under `secrets`: read such a
        definition, but never keep the values (they are rewritten away at its next put)."""
        if isinstance(data, dict) and "secrets" in data:
            return {name: value for name, value in data.items() if name != "secrets"}
        return data


class DefinitionStatus(Contract):
    """Validation state of one resource, valid or not (for the API and `vigil validate`)."""

    model_config = SHOWN_IN_CAMEL_CASE
    schema_name: ClassVar[str] = "definition-status.v1"

    kind: str
    namespace: str
    name: str
    ready: bool
    message: str
    origin: str = ""
    observed_at: datetime
    # A ready schedule Source: when it fires next (filled in by the API, never stored).
    next_fire_at: datetime | None = None


def definition_key(kind: str, namespace: str, name: str) -> str:
    return f"def.{kind.lower()}.{namespace}.{name}"


def status_key(kind: str, namespace: str, name: str) -> str:
    return f"status.{kind.lower()}.{namespace}.{name}"


class ConfigBucket(Protocol):
    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self) -> list[str]: ...

    def watch(self) -> AsyncIterator[tuple[str, bytes | None] | None]: ...


class DefinitionsView:
    """Read side of the config bucket, kept current by `run()`."""

    def __init__(self) -> None:
        self._definitions: dict[str, Definition] = {}
        self._statuses: dict[str, DefinitionStatus] = {}
        self.ready = asyncio.Event()

    async def run(self, bucket: ConfigBucket) -> None:
        async for change in bucket.watch():
            if change is None:
                self.ready.set()
                continue
            self.apply(*change)

    def apply(self, key: str, value: bytes | None) -> None:
        try:
            if key.startswith("def."):
                definition = None if value is None else Definition.model_validate_json(value)
                _put(self._definitions, key, definition)
            elif key.startswith("status."):
                status = None if value is None else DefinitionStatus.model_validate_json(value)
                _put(self._statuses, key, status)
        except ValidationError as exc:
            log.error("definition_undecodable", key=key, error=str(exc))

    def add(self, definition: Definition) -> None:
        """Insert directly (offline tools such as `vigil test`)."""
        meta = definition.resource.metadata
        key = definition_key(definition.resource.kind, meta.namespace, meta.name)
        self._definitions[key] = definition

    def _get(self, kind: str, namespace: str, name: str) -> Definition | None:
        return self._definitions.get(definition_key(kind, namespace, name))

    def source_definition(self, namespace: str, name: str) -> Definition | None:
        found = self._get("Source", namespace, name)
        return found if found and isinstance(found.resource, Source) else None

    def source(self, namespace: str, name: str) -> Source | None:
        found = self._get("Source", namespace, name)
        return found.resource if found and isinstance(found.resource, Source) else None

    def sink(self, namespace: str, name: str) -> Definition | None:
        found = self._get("Sink", namespace, name)
        return found if found and isinstance(found.resource, Sink) else None

    def workflow(self, namespace: str, name: str) -> Workflow | None:
        found = self._get("Workflow", namespace, name)
        return found.resource if found and isinstance(found.resource, Workflow) else None

    def workflows(self, namespace: str) -> list[Workflow]:
        prefix = f"def.workflow.{namespace}."
        return [
            d.resource
            for key, d in sorted(self._definitions.items())
            if key.startswith(prefix) and isinstance(d.resource, Workflow)
        ]

    def sources(self) -> list[Source]:
        """Every Source, of every namespace, in key order."""
        return [
            d.resource
            for key, d in sorted(self._definitions.items())
            if key.startswith("def.source.") and isinstance(d.resource, Source)
        ]

    def statuses(self) -> list[DefinitionStatus]:
        return [self._statuses[k] for k in sorted(self._statuses)]


def _put[V](target: dict[str, V], key: str, value: V | None) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value
