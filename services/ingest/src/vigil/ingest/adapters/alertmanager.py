"""The `alertmanager` source type: Alertmanager's webhook payload, version 4.

Each alert keeps its group context (group key, receiver, group and common labels, the
external URL): what Vigil's templates see as `group`.
"""

from __future__ import annotations

from pydantic import ValidationError

from vigil.common.alertmanager import WebhookPayload
from vigil.common.definitions import Definition
from vigil.common.errors import InvalidInput
from vigil.common.messages import Alert, Group
from vigil.common.validation import format_validation_error
from vigil.ingest.sources import AlertBatch


class AlertmanagerSource:
    def read(self, document: object, *, source: Definition) -> AlertBatch:
        try:
            payload = WebhookPayload.model_validate(document)
        except ValidationError as exc:
            msg = "body is not an Alertmanager webhook payload (version 4): " + (
                format_validation_error(exc)
            )
            raise InvalidInput(msg) from exc
        return AlertBatch(
            alerts=[Alert.from_webhook(item) for item in payload.alerts],
            group=Group.from_webhook(payload),
        )
