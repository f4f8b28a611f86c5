"""Kubernetes mode, the pure part: from the objects the controller watches to the
definitions it publishes and the `status` it writes back.

`Snapshot` holds the Sources, Workflows, Sinks and Secrets as the watch last saw them.
Validation is the same as in file mode (`vigil.common.validation`) and runs over the whole
snapshot, because readiness crosses objects (a Workflow is not ready while its Sink is
not). `status_updates` compares what each object's status says with what it should say
and returns a merge patch only where they differ, so an unchanged object costs nothing.
`next_fire_updates` does the same for a schedule Source's `nextFireAt`, which moves on
with the clock rather than with the objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vigil.common.cron import Cron
from vigil.common.definitions import DefinitionStatus
from vigil.common.validation import RawDocument, ValidationReport, validate_documents

type Key = tuple[str, str, str]  # (kind, namespace, name)
type Body = dict[str, Any]

GROUP_VERSION = "vigil.dev/v1alpha1"
TRIGGER_SUMMARY_LENGTH = 80


def key_of(body: Body) -> Key:
    meta = body.get("metadata", {})
    return (str(body.get("kind")), str(meta.get("namespace", "default")), str(meta.get("name")))


@dataclass(slots=True)
class Snapshot:
    """The watched objects as they are now."""

    resources: dict[Key, Body] = field(default_factory=dict)
    secrets: dict[tuple[str, str], Body] = field(default_factory=dict)

    def put(self, body: Body) -> None:
        kind, namespace, name = key_of(body)
        if kind == "Secret":
            self.secrets[(namespace, name)] = body
        else:
            self.resources[(kind, namespace, name)] = body

    def remove(self, body: Body) -> None:
        kind, namespace, name = key_of(body)
        if kind == "Secret":
            self.secrets.pop((namespace, name), None)
        else:
            self.resources.pop((kind, namespace, name), None)

    def status_of(self, key: Key) -> Body:
        status = self.resources.get(key, {}).get("status")
        return status if isinstance(status, dict) else {}

    def documents(self) -> list[RawDocument]:
        """What validation reads: each object as its YAML would be written (no status)."""
        documents = [
            RawDocument(
                origin=f"{kind} {namespace}/{name}",
                body={
                    "apiVersion": body.get("apiVersion", GROUP_VERSION),
                    "kind": kind,
                    "metadata": body.get("metadata", {}),
                    "spec": body.get("spec"),
                },
            )
            for (kind, namespace, name), body in sorted(self.resources.items())
        ]
        documents += [
            RawDocument(
                origin=f"Secret {namespace}/{name}",
                body={
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": namespace},
                    "data": body.get("data") or {},
                    "stringData": body.get("stringData") or {},
                },
            )
            for (namespace, name), body in sorted(self.secrets.items())
        ]
        return documents

    def validate(self) -> ValidationReport:
        return validate_documents(self.documents())


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate:
    key: Key
    patch: Body  # merge patch of `status`
    rejected: str | None = None  # it newly became invalid: the reason, for an Event


def trigger_summary(spec: Body) -> str:
    """One line for `kubectl get workflows`: the sources and matchers of the trigger."""
    trigger = spec.get("trigger") or {}
    parts = [", ".join(trigger.get("matchers") or []) or "any alert"]
    if trigger.get("sources"):
        parts.insert(0, "/".join(trigger["sources"]) + ":")
    if trigger.get("filter"):
        parts.append("if " + str(trigger["filter"]))
    summary = " ".join(parts)
    if len(summary) > TRIGGER_SUMMARY_LENGTH:
        return summary[: TRIGGER_SUMMARY_LENGTH - 1] + "…"
    return summary


def _desired(status: DefinitionStatus, body: Body, current: Body, now: datetime) -> Body:
    generation = body.get("metadata", {}).get("generation")
    ready = "True" if status.ready else "False"
    previous = next((c for c in current.get("conditions") or [] if c.get("type") == "Ready"), None)
    changed = previous is None or previous.get("status") != ready
    condition = {
        "type": "Ready",
        "status": ready,
        "reason": "Valid" if status.ready else "Invalid",
        "message": status.message,
        "lastTransitionTime": (
            now.isoformat().replace("+00:00", "Z")
            if changed or previous is None
            else previous.get("lastTransitionTime")
        ),
        "observedGeneration": generation,
    }
    desired: Body = {"observedGeneration": generation, "conditions": [condition]}
    if status.kind == "Source":
        desired["webhookPath"] = f"/hooks/{status.namespace}/{status.name}"
    if status.kind == "Workflow" and isinstance(body.get("spec"), dict):
        desired["trigger"] = trigger_summary(body["spec"])
    return desired


def status_updates(
    report: ValidationReport, snapshot: Snapshot, *, now: datetime
) -> list[StatusUpdate]:
    """A status patch for every watched object whose status should change."""
    updates = []
    for status in report.statuses:
        key = (status.kind, status.namespace, status.name)
        body = snapshot.resources.get(key)
        if body is None:
            continue
        current = snapshot.status_of(key)
        desired = _desired(status, body, current, now)
        if all(current.get(name) == value for name, value in desired.items()):
            continue
        was_ready = next(
            (c.get("status") for c in current.get("conditions") or [] if c.get("type") == "Ready"),
            None,
        )
        previous_message = next(
            (c.get("message") for c in current.get("conditions") or [] if c.get("type") == "Ready"),
            None,
        )
        newly_rejected = not status.ready and (
            was_ready != "False" or previous_message != status.message
        )
        updates.append(
            StatusUpdate(
                key=key, patch=desired, rejected=status.message if newly_rejected else None
            )
        )
    return updates


def _is_ready(status: Body) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _next_fire(body: Body, status: Body, now: datetime) -> datetime | None:
    """The next tick of a ready schedule Source after `now`; None for any other Source."""
    spec = body.get("spec") or {}
    schedule = spec.get("schedule")
    if spec.get("type") != "schedule" or not isinstance(schedule, dict) or not _is_ready(status):
        return None
    try:
        cron = Cron.parse(str(schedule.get("cron")), str(schedule.get("timeZone") or "UTC"))
    except ValueError:
        return None  # validation said Ready: a spec changed since is reconciled next
    return cron.next_after(now)


def next_fire_updates(
    snapshot: Snapshot, *, now: datetime
) -> tuple[list[StatusUpdate], datetime | None]:
    """`status.nextFireAt` of every Source whose value should change (set, moved on, or
    removed from a Source that is no longer a ready schedule), and the earliest next fire.

    The controller has no store: this is the cron's next tick after its clock. A tick the
    engine will still catch up on after downtime shows in `/api/v1/definitions`, not here.
    """
    updates = []
    earliest: datetime | None = None
    for key, body in snapshot.resources.items():
        if key[0] != "Source":
            continue
        status = snapshot.status_of(key)
        upcoming = _next_fire(body, status, now)
        if upcoming is not None and (earliest is None or upcoming < earliest):
            earliest = upcoming
        wanted = None if upcoming is None else _stamp(upcoming)
        if status.get("nextFireAt") != wanted:
            updates.append(StatusUpdate(key=key, patch={"nextFireAt": wanted}, rejected=None))
    return updates, earliest
