"""Validation of definitions: schema, every template and CEL expression compiled,
references checked (a Secret: that it exists with the key; its value is not kept). Shared
by the controller (file mode) and `vigil validate`.

Input is a list of parsed YAML documents with their origin; output is, per resource, either
a `Definition` ready to publish or a precise message saying what is wrong and where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from vigil.common.definitions import Definition, DefinitionStatus
from vigil.common.errors import InvalidInput
from vigil.common.expressions import compile_expression
from vigil.common.findings import schema_problems
from vigil.common.matchers import parse_matcher
from vigil.common.resource_base import SecretKeyRef
from vigil.common.resources import (
    AGENT_TOOLS,
    KINDS,
    AnyResource,
    Sink,
    Source,
    Step,
    WebhookMapping,
    Workflow,
)
from vigil.common.secrets import read_secret
from vigil.common.templating import compile_template

_RESOURCE = TypeAdapter[AnyResource](AnyResource)
YAML_SUFFIXES = (".yaml", ".yml")
AVAILABLE_SINK_TYPES = ("log", "webhook", "slack", "msteams", "pagerduty", "email")
AVAILABLE_SOURCE_TYPES = ("alertmanager", "webhook", "schedule")


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so `on:` stays a string key."""


_BOOL = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml_documents(text: str) -> list[Any]:
    """All documents of `text`, parsed with YAML 1.2 booleans."""
    return list(yaml.load_all(text, Loader=_Yaml12Loader))


@dataclass(frozen=True, slots=True, kw_only=True)
class RawDocument:
    origin: str
    body: Any


@dataclass(slots=True, kw_only=True)
class ValidationReport:
    definitions: list[Definition] = field(default_factory=list)
    statuses: list[DefinitionStatus] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # problems not tied to one resource

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.ready for s in self.statuses)

    def problems(self) -> list[str]:
        lines = list(self.errors)
        lines += [
            f"{s.origin}: {s.kind} {s.namespace}/{s.name}: {s.message}"
            for s in self.statuses
            if not s.ready
        ]
        return lines


def yaml_files(path: Path) -> list[Path]:
    """The YAML files of `path`: a folder's, recursively and sorted, or `path` itself."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
    return [path] if path.exists() else []


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without the excerpt PyYAML quotes: the line may hold a
    Secret's value, and this message is logged and shown."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem or 'syntax error'} (line {mark.line + 1}, column {mark.column + 1})"
    return type(exc).__name__


def read_documents(path: Path) -> tuple[list[RawDocument], list[str]]:
    """Every YAML document under `path` (a file or a folder, recursively), and parse errors."""
    if not path.exists():
        return [], [f"{path}: no such file or directory"]
    documents: list[RawDocument] = []
    errors: list[str] = []
    for file in yaml_files(path):
        try:
            loaded = load_yaml_documents(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            errors.append(f"{file}: not valid YAML: {yaml_problem(exc)}")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{file}: not readable: {exc}")
            continue
        for index, body in enumerate(loaded):
            if body is None:
                continue
            documents.append(RawDocument(origin=f"{file}#{index + 1}", body=body))
    return documents, errors


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        location = ""
        for item in error["loc"]:
            location += f"[{item}]" if isinstance(item, int) else f".{item}"
        # A discriminated union adds the kind as a location step; drop it.
        for kind in KINDS:
            location = location.replace(f".{kind}.", ".", 1)
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location.lstrip('.') or 'document'}: {message}")
    return "; ".join(parts)


@dataclass(slots=True, kw_only=True)
class _Parsed:
    resources: list[tuple[str, Source | Workflow | Sink]] = field(default_factory=list)
    secrets: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)  # keys


def _parse(documents: Iterable[RawDocument], report: ValidationReport, now: datetime) -> _Parsed:
    """Schema-check every document; collect Secrets; report what does not parse."""
    parsed = _Parsed()
    seen: set[tuple[str, str, str]] = set()
    for document in documents:
        body = document.body
        if not isinstance(body, dict):
            report.errors.append(f"{document.origin}: a document must be a mapping")
            continue
        if body.get("kind") == "Secret" and body.get("apiVersion") == "v1":
            try:
                secret = read_secret(body)
            except InvalidInput as exc:
                report.errors.append(f"{document.origin}: Secret: {exc}")
                continue
            # Only which keys exist: a definition references a Secret, never holds a value.
            parsed.secrets[(secret.namespace, secret.name)] = frozenset(secret.values)
            continue
        kind = body.get("kind")
        if kind not in KINDS:
            report.errors.append(
                f"{document.origin}: kind {kind!r} is not one of Source, Workflow, Sink, Secret"
            )
            continue
        raw_meta = body.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        where = {
            "kind": kind,
            "namespace": str(meta.get("namespace", "default")),
            "name": str(meta.get("name", "?")),
            "origin": document.origin,
            "now": now,
        }
        try:
            resource = _RESOURCE.validate_python(body)
        except ValidationError as exc:
            report.statuses.append(_status(**where, message=format_validation_error(exc)))
            continue
        identity = (resource.kind, resource.metadata.namespace, resource.metadata.name)
        if identity in seen:
            report.statuses.append(_status(**where, message="defined twice"))
            continue
        seen.add(identity)
        parsed.resources.append((document.origin, resource))
    return parsed


@dataclass(slots=True, kw_only=True)
class _Catalog:
    defined: set[tuple[str, str, str]]
    ready: set[tuple[str, str, str]] = field(default_factory=set)

    def reference(self, where: str, kind: str, namespace: str, name: str) -> str | None:
        """A problem with a reference to `kind namespace/name`, or None if it is usable."""
        if (kind, namespace, name) not in self.defined:
            return f"{where}: {kind} {namespace}/{name} is not defined"
        if (kind, namespace, name) not in self.ready:
            return f"{where}: {kind} {namespace}/{name} is not ready (see its own error)"
        return None


def _problems(
    resource: Source | Workflow | Sink,
    parsed: _Parsed,
    catalog: _Catalog,
) -> list[str]:
    """What is wrong with a schema-valid resource (its Secrets are checked, not copied)."""
    namespace = resource.metadata.namespace
    problems: list[str] = []
    for where, ref in _secret_refs(resource):
        keys = parsed.secrets.get((namespace, ref.name))
        if keys is None:
            problems.append(f"{where}: Secret {namespace}/{ref.name} is not defined")
        elif ref.key not in keys:
            problems.append(f"{where}: Secret {namespace}/{ref.name} has no key {ref.key!r}")
    if isinstance(resource, Workflow):
        problems += _check_workflow(resource, catalog)
    if isinstance(resource, Source) and resource.spec.type not in AVAILABLE_SOURCE_TYPES:
        problems.append(
            f"spec.type: source type {resource.spec.type} is not available in this build"
            f" yet (available: {', '.join(AVAILABLE_SOURCE_TYPES)})"
        )
    if isinstance(resource, Source) and resource.spec.webhook is not None:
        problems += _check_webhook_mapping(resource.spec.webhook)
    if isinstance(resource, Sink) and resource.spec.type not in AVAILABLE_SINK_TYPES:
        problems.append(
            f"spec.type: sink type {resource.spec.type} is not available in this build yet"
            f" (available: {', '.join(AVAILABLE_SINK_TYPES)})"
        )
    return problems


def validate_documents(documents: Iterable[RawDocument]) -> ValidationReport:
    report = ValidationReport()
    now = datetime.now(UTC)
    parsed = _parse(documents, report, now)
    catalog = _Catalog(
        defined={(r.kind, r.metadata.namespace, r.metadata.name) for _, r in parsed.resources}
    )
    # Workflows last: they may only reference Sources and Sinks that are themselves ready.
    for origin, resource in sorted(parsed.resources, key=lambda item: item[1].kind == "Workflow"):
        meta = resource.metadata
        problems = _problems(resource, parsed, catalog)
        report.statuses.append(
            _status(
                kind=resource.kind,
                namespace=meta.namespace,
                name=meta.name,
                origin=origin,
                now=now,
                message="; ".join(problems) or "valid",
                ready=not problems,
            )
        )
        if not problems:
            catalog.ready.add((resource.kind, meta.namespace, meta.name))
            report.definitions.append(Definition(resource=resource, origin=origin))
    return report


def _status(
    *,
    kind: str,
    namespace: str,
    name: str,
    origin: str,
    now: datetime,
    message: str,
    ready: bool = False,
) -> DefinitionStatus:
    return DefinitionStatus(
        kind=kind,
        namespace=namespace,
        name=name,
        ready=ready,
        message=message,
        origin=origin,
        observed_at=now,
    )


def _check_webhook_mapping(mapping: WebhookMapping) -> list[str]:
    """Each CEL expression of a webhook mapping compiles over the names it may read."""
    problems: list[str] = []
    per_item = frozenset({"item"}) if mapping.items is not None else frozenset({"body", "item"})
    expressions = [("items", mapping.items, frozenset({"body"}))]
    expressions += [(name, source, per_item) for name, source in mapping.expressions().items()]
    for name, source, allowed in expressions:
        if source is None:
            continue
        try:
            compile_expression(source, allowed=allowed)
        except InvalidInput as exc:
            hint = ""
            if "body" in str(exc) and mapping.items is not None and name != "items":
                hint = (
                    " (with `items` set, each item's fields read `item` only: reading the"
                    " whole body once per item would cost the body's size per alert)"
                )
            problems.append(f"spec.webhook.{name}: {exc}{hint}")
    return problems


def _secret_refs(resource: Source | Workflow | Sink) -> Iterator[tuple[str, SecretKeyRef]]:
    """Every secret the resource references, with the field that references it."""
    if isinstance(resource, Source) and resource.spec.auth:
        auth = resource.spec.auth
        if auth.bearer_token_secret_ref:
            yield "spec.auth.bearerTokenSecretRef", auth.bearer_token_secret_ref
        if auth.basic_auth_secret_ref:
            ref = auth.basic_auth_secret_ref
            where = "spec.auth.basicAuthSecretRef"
            yield f"{where}.usernameKey", SecretKeyRef(name=ref.name, key=ref.username_key)
            yield f"{where}.passwordKey", SecretKeyRef(name=ref.name, key=ref.password_key)
        if auth.hmac:
            yield "spec.auth.hmac.secretRef", auth.hmac.secret_ref
    if isinstance(resource, Sink):
        if resource.spec.webhook and resource.spec.webhook.url_secret_ref:
            yield "spec.webhook.urlSecretRef", resource.spec.webhook.url_secret_ref
        if resource.spec.webhook and resource.spec.webhook.signing_secret_ref:
            yield "spec.webhook.signingSecretRef", resource.spec.webhook.signing_secret_ref
        if resource.spec.slack and resource.spec.slack.webhook_url_secret_ref:
            yield "spec.slack.webhookUrlSecretRef", resource.spec.slack.webhook_url_secret_ref
        if resource.spec.slack and resource.spec.slack.token_secret_ref:
            yield "spec.slack.tokenSecretRef", resource.spec.slack.token_secret_ref
        if resource.spec.msteams:
            yield "spec.msteams.webhookUrlSecretRef", resource.spec.msteams.webhook_url_secret_ref
        if resource.spec.pagerduty:
            routing = resource.spec.pagerduty.routing_key_secret_ref
            yield "spec.pagerduty.routingKeySecretRef", routing
        if resource.spec.email and resource.spec.email.password_secret_ref:
            yield "spec.email.passwordSecretRef", resource.spec.email.password_secret_ref


_STEP_REFERENCE = re.compile(r"""\bsteps\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['"]([^'"]+)['"]\s*\])""")


def _step_references(source: str) -> set[str]:
    return {dotted or quoted for dotted, quoted in _STEP_REFERENCE.findall(source)}


def _check_workflow(workflow: Workflow, catalog: _Catalog) -> list[str]:
    spec = workflow.spec
    namespace = workflow.metadata.namespace
    step_names = {s.name for s in [*spec.steps, *spec.on_failure]}
    problems: list[str] = []

    def unknown_steps(where: str, source: str) -> None:
        for name in sorted(_step_references(source) - step_names):
            problems.append(f"{where}: refers to step {name!r}, which this workflow does not have")

    def template(where: str, source: str | None) -> None:
        if source is None:
            return
        try:
            compile_template(source)
        except InvalidInput as exc:
            problems.append(f"{where}: {exc}")
        else:
            unknown_steps(where, source)

    def expression(where: str, source: str | None) -> None:
        if source is None:
            return
        try:
            compile_expression(source)
        except InvalidInput as exc:
            problems.append(f"{where}: {exc}")
        else:
            unknown_steps(where, source)

    for index, matcher in enumerate(spec.trigger.matchers):
        try:
            parse_matcher(matcher)
        except InvalidInput as exc:
            problems.append(f"spec.trigger.matchers[{index}]: {exc}")
    expression("spec.trigger.filter", spec.trigger.filter)
    for source in spec.trigger.sources or []:
        problem = catalog.reference("spec.trigger.sources", "Source", namespace, source)
        if problem:
            problems.append(problem)
    template("spec.concurrency.key", spec.concurrency.key)
    for group, steps in (("steps", spec.steps), ("onFailure", spec.on_failure)):
        for index, step in enumerate(steps):
            where = f"spec.{group}[{index}]"
            problems += _check_step(where, step, namespace, catalog)
            expression(f"{where}.when", step.when)
            expression(f"{where}.condition", step.condition)
            if step.wait:
                expression(f"{where}.wait.until", step.wait.until)
            if step.cli:
                for position, arg in enumerate(step.cli.command):
                    template(f"{where}.cli.command[{position}]", arg)
                for key, value in step.cli.env.items():
                    template(f"{where}.cli.env.{key}", value)
            if step.notify:
                template(f"{where}.notify.title", step.notify.title)
                template(f"{where}.notify.message", step.notify.message)
            if step.agent:
                template(f"{where}.agent.goal", step.agent.goal)
    return problems


def _check_step(where: str, step: Step, namespace: str, catalog: _Catalog) -> list[str]:
    problems = []
    if step.notify:
        for sink in step.notify.sinks:
            problem = catalog.reference(f"{where}.notify.sinks", "Sink", namespace, sink)
            if problem:
                problems.append(problem)
    if step.agent is not None:
        for tool in step.agent.tools:
            if tool not in AGENT_TOOLS:
                problems.append(
                    f"{where}.agent.tools: no tool {tool!r} (tools: {', '.join(AGENT_TOOLS)})"
                )
        if step.agent.output_schema is not None:
            problems += [
                f"{where}.agent.outputSchema {problem}"
                for problem in schema_problems(step.agent.output_schema)
            ]
    return problems
