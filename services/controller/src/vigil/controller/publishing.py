"""Publishing a validation report to the config bucket, replacing what was there.

Workflows and sinks are written before sources: ingest accepts alerts only for sources it
knows, so by the time a source is visible its workflows are already in the bucket (KV
watchers see writes in order).
"""

from __future__ import annotations

import structlog

from vigil.common.definitions import ConfigBucket, definition_key, status_key
from vigil.common.validation import ValidationReport

log = structlog.get_logger(__name__)

_ORDER = {"Sink": 0, "Workflow": 1, "Source": 2}


async def publish_report(bucket: ConfigBucket, report: ValidationReport) -> None:
    wanted: dict[str, bytes] = {}
    for definition in sorted(report.definitions, key=lambda d: _ORDER[d.resource.kind]):
        meta = definition.resource.metadata
        key = definition_key(definition.resource.kind, meta.namespace, meta.name)
        wanted[key] = definition.model_dump_json(by_alias=True).encode()
    for status in report.statuses:
        wanted[status_key(status.kind, status.namespace, status.name)] = (
            status.model_dump_json().encode()
        )
    existing = set(await bucket.keys())
    for key, value in wanted.items():
        await bucket.put(key, value)
    for key in sorted(existing - wanted.keys()):
        await bucket.delete(key)
        log.info("definition_removed", key=key)
    for status in report.statuses:
        if status.ready:
            log.info(
                "definition_ready", kind=status.kind, namespace=status.namespace, name=status.name
            )
        else:
            log.error(
                "definition_invalid",
                kind=status.kind,
                namespace=status.namespace,
                name=status.name,
                origin=status.origin,
                message=status.message,
            )
    for problem in report.errors:
        log.error("definitions_unreadable", problem=problem)
