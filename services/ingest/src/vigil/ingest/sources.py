"""The source adapter port: how ingest reads the body of a webhook for one Source type.

`/hooks/{namespace}/{source}` authenticates the request by the Source's `auth`, parses the
body as JSON, and hands it to the adapter registered for the Source's `spec.type`, which
returns the alerts it holds (and their Alertmanager group, where there is one). Adding a
source type is a new module under `adapters/` and one entry in `app.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vigil.common.definitions import Definition
from vigil.common.messages import Alert, Group


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertBatch:
    """The alerts one webhook body carried, and the group they came in."""

    alerts: list[Alert]
    group: Group = field(default_factory=Group)


class SourceAdapter(Protocol):
    def read(self, document: object, *, source: Definition) -> AlertBatch:
        """The alerts in a parsed JSON body for this Source.

        Raises InvalidInput naming the field and the problem when the body is not one this
        source type reads (the client gets a 422 and nothing is stored).
        """


type SourceAdapters = Mapping[str, SourceAdapter]
