"""Which workflows an alert starts, and why the others do not.

Pure: takes a workflow definition and an alert message, says yes or gives the reason. The
reason is shown by `vigil test` and logged, so it names the exact rule that did not hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from vigil.common.errors import VigilError
from vigil.common.expressions import evaluate_bool
from vigil.common.matchers import Matcher, parse_matcher
from vigil.common.messages import AlertReceived
from vigil.common.resources import Workflow
from vigil.engine.domain.context import alert_context


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    matched: bool
    reason: str = ""


@lru_cache(maxsize=1024)
def _compiled(matchers: tuple[str, ...]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(m) for m in matchers)


def match(workflow: Workflow, received: AlertReceived) -> Match:
    trigger = workflow.spec.trigger
    alert = received.alert
    if received.namespace != workflow.metadata.namespace:
        return Match(matched=False, reason=f"alert is in namespace {received.namespace}")
    if trigger.sources is not None and received.source not in trigger.sources:
        return Match(matched=False, reason=f"source {received.source} is not in trigger.sources")
    if alert.status not in trigger.on:
        return Match(matched=False, reason=f"status {alert.status} is not in trigger.on")
    for matcher in _compiled(tuple(trigger.matchers)):
        if not matcher.matches(alert.labels):
            actual = alert.labels.get(matcher.name)
            shown = "absent" if actual is None else repr(actual)
            return Match(matched=False, reason=f"matcher {matcher} does not hold ({shown})")
    if trigger.filter:
        try:
            if not evaluate_bool(trigger.filter, alert_context(received, workflow)):
                return Match(matched=False, reason=f"filter {trigger.filter!r} is false")
        except VigilError as exc:
            return Match(matched=False, reason=f"filter failed: {exc}")
    return Match(matched=True)


def trigger_key(workflow: Workflow, received: AlertReceived) -> str:
    """One alert occurrence (source, fingerprint, status, startsAt) starts one execution."""
    alert = received.alert
    identity = "|".join(
        (
            workflow.metadata.namespace,
            workflow.metadata.name,
            received.source,
            alert.fingerprint,
            alert.status,
            alert.starts_at.isoformat(),
        )
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:40]
