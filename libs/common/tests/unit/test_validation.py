"""Validation of Source/Workflow/Sink documents: schema, templates, CEL, references, secrets."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigil.common.definitions import Definition, DefinitionStatus
from vigil.common.resources import Sink
from vigil.common.validation import (
    RawDocument,
    ValidationReport,
    read_documents,
    validate_documents,
)

NAMESPACE = "monitoring"
API = "vigil.dev/v1alpha1"


def source(name: str = "alertmanager", namespace: str = NAMESPACE) -> RawDocument:
    return RawDocument(
        origin=f"sources.yaml#{name}",
        body={
            "apiVersion": API,
            "kind": "Source",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "alertmanager"},
        },
    )


def log_sink(name: str = "oncall") -> RawDocument:
    return RawDocument(
        origin=f"sinks.yaml#{name}",
        body={
            "apiVersion": API,
            "kind": "Sink",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"type": "log"},
        },
    )


def webhook_sink(name: str = "hook", ref: str = "hook-url") -> RawDocument:
    return RawDocument(
        origin=f"sinks.yaml#{name}",
        body={
            "apiVersion": API,
            "kind": "Sink",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "type": "webhook",
                "webhook": {"urlSecretRef": {"name": ref, "key": "url"}},
            },
        },
    )


def secret(
    name: str = "hook-url",
    namespace: str = NAMESPACE,
    *,
    string_data: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
) -> RawDocument:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
    }
    if string_data is not None:
        body["stringData"] = string_data
    if data is not None:
        body["data"] = data
    return RawDocument(origin=f"secrets.yaml#{name}", body=body)


def workflow_spec() -> dict[str, Any]:
    """A valid spec using cli, condition and notify steps; tests break one field of it."""
    return {
        "trigger": {
            "sources": ["alertmanager"],
            "matchers": ['alertname="KubePodCrashLooping"', 'severity=~"critical|warning"'],
            "filter": 'alert.labels.namespace != "kube-system"',
            "on": ["firing"],
        },
        "concurrency": {
            "key": "{{ alert.labels.namespace }}/{{ alert.labels.pod }}",
            "policy": "Forbid",
        },
        "cooldown": "10m",
        "timeout": "15m",
        "steps": [
            {
                "name": "describe",
                "cli": {
                    "command": [
                        "kubectl",
                        "describe",
                        "pod",
                        "{{ alert.labels.pod }}",
                        "-n",
                        "{{ alert.labels.namespace }}",
                    ],
                    "timeout": "60s",
                    "env": {"POD": "{{ alert.labels.pod }}"},
                },
            },
            {"name": "oom", "condition": 'steps.describe.output.stdout.contains("OOMKilled")'},
            {
                "name": "report",
                "when": "steps.oom.output.result",
                "notify": {
                    "sinks": ["oncall"],
                    "title": "{{ alert.labels.alertname }}: {{ alert.labels.pod }}",
                    "message": "OOMKilled",
                },
            },
        ],
        "onFailure": [
            {
                "name": "tell",
                "notify": {
                    "sinks": ["oncall"],
                    "message": "{{ workflow.name }} failed: {{ execution.error }}",
                },
            }
        ],
    }


def workflow(spec: dict[str, Any], name: str = "pod-crashloop") -> RawDocument:
    return RawDocument(
        origin=f"workflows.yaml#{name}",
        body={
            "apiVersion": API,
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        },
    )


def status_of(report: ValidationReport, kind: str, name: str) -> DefinitionStatus:
    (found,) = [s for s in report.statuses if s.kind == kind and s.name == name]
    return found


def validate_workflow(spec: dict[str, Any]) -> DefinitionStatus:
    report = validate_documents([source(), log_sink(), workflow(spec)])
    return status_of(report, "Workflow", "pod-crashloop")


def test_valid_source_workflow_and_sink_are_all_ready() -> None:
    report = validate_documents([source(), log_sink(), workflow(workflow_spec())])

    assert report.ok
    assert report.problems() == []
    assert {(s.kind, s.name, s.ready) for s in report.statuses} == {
        ("Source", "alertmanager", True),
        ("Sink", "oncall", True),
        ("Workflow", "pod-crashloop", True),
    }
    assert sorted(d.resource.kind for d in report.definitions) == ["Sink", "Source", "Workflow"]
    assert {d.origin for d in report.definitions} == {
        "sources.yaml#alertmanager",
        "sinks.yaml#oncall",
        "workflows.yaml#pod-crashloop",
    }


def test_document_order_does_not_matter_for_references() -> None:
    report = validate_documents([workflow(workflow_spec()), log_sink(), source()])

    assert report.ok


def _break_command(spec: dict[str, Any]) -> None:
    spec["steps"][0]["cli"]["command"][1] = "{{ alert.labels.pod "


def _break_env(spec: dict[str, Any]) -> None:
    spec["steps"][0]["cli"]["env"]["POD"] = "{{ alrt.labels.pod }}"


def _break_title(spec: dict[str, Any]) -> None:
    spec["steps"][2]["notify"]["title"] = "{% if alert %}"


def _break_on_failure_message(spec: dict[str, Any]) -> None:
    spec["onFailure"][0]["notify"]["message"] = "{{ error }}"


def _break_concurrency_key(spec: dict[str, Any]) -> None:
    spec["concurrency"]["key"] = "{{ alert.labels.pod }"


def _break_condition(spec: dict[str, Any]) -> None:
    spec["steps"][1]["condition"] = 'step.describe.output.stdout.contains("x")'


def _break_when(spec: dict[str, Any]) -> None:
    spec["steps"][2]["when"] = "steps.oom.output.result &&"


def _break_filter(spec: dict[str, Any]) -> None:
    spec["trigger"]["filter"] = 'labels.namespace != "kube-system"'


def _break_matcher(spec: dict[str, Any]) -> None:
    spec["trigger"]["matchers"][1] = "severity=~critical|warning)"


def _break_matcher_operator(spec: dict[str, Any]) -> None:
    spec["trigger"]["matchers"][0] = 'alertname~="KubePodCrashLooping"'


def _break_sink_reference(spec: dict[str, Any]) -> None:
    spec["steps"][2]["notify"]["sinks"] = ["oncall", "pagers"]


def _break_on_failure_sink(spec: dict[str, Any]) -> None:
    spec["onFailure"][0]["notify"]["sinks"] = ["nowhere"]


def _break_source_reference(spec: dict[str, Any]) -> None:
    spec["trigger"]["sources"] = ["alertmanager", "grafana"]


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (_break_command, "spec.steps[0].cli.command[1]: template syntax error"),
        (_break_env, "spec.steps[0].cli.env.POD: template uses unknown name(s) alrt"),
        (_break_title, "spec.steps[2].notify.title: template syntax error"),
        (_break_on_failure_message, "spec.onFailure[0].notify.message: template uses unknown"),
        (_break_concurrency_key, "spec.concurrency.key: template syntax error"),
        (_break_condition, "spec.steps[1].condition: CEL"),
        (_break_when, "spec.steps[2].when: CEL"),
        (_break_filter, "spec.trigger.filter: CEL"),
        (_break_matcher, "spec.trigger.matchers[1]: matcher"),
        (_break_matcher_operator, "spec.trigger.matchers[0]: matcher"),
        (
            _break_sink_reference,
            "spec.steps[2].notify.sinks: Sink monitoring/pagers is not defined",
        ),
        (_break_on_failure_sink, "spec.onFailure[0].notify.sinks: Sink monitoring/nowhere"),
        (_break_source_reference, "spec.trigger.sources: Source monitoring/grafana is not defined"),
    ],
)
def test_broken_workflow_is_not_ready_and_the_message_names_the_field(
    breaks: Callable[[dict[str, Any]], None], expected: str
) -> None:
    spec = workflow_spec()
    breaks(spec)

    status = validate_workflow(spec)

    assert not status.ready
    assert expected in status.message


def test_unknown_cel_variable_is_named_in_the_message() -> None:
    spec = workflow_spec()
    _break_condition(spec)

    status = validate_workflow(spec)

    assert "unknown name(s) step" in status.message


def test_every_problem_of_a_workflow_is_reported_at_once() -> None:
    spec = workflow_spec()
    _break_command(spec)
    _break_filter(spec)
    _break_sink_reference(spec)

    message = validate_workflow(spec).message

    assert "spec.steps[0].cli.command[1]" in message
    assert "spec.trigger.filter" in message
    assert "spec.steps[2].notify.sinks" in message


def test_broken_workflow_is_not_published_but_the_others_are() -> None:
    spec = workflow_spec()
    _break_command(spec)

    report = validate_documents([source(), log_sink(), workflow(spec)])

    assert not report.ok
    assert sorted(d.resource.kind for d in report.definitions) == ["Sink", "Source"]
    (problem,) = report.problems()
    assert problem.startswith(
        "workflows.yaml#pod-crashloop: Workflow monitoring/pod-crashloop: "
        "spec.steps[0].cli.command[1]: "
    )


def test_source_in_another_namespace_does_not_satisfy_a_reference() -> None:
    report = validate_documents([source(namespace="other"), log_sink(), workflow(workflow_spec())])

    status = status_of(report, "Workflow", "pod-crashloop")
    assert not status.ready
    assert "Source monitoring/alertmanager is not defined" in status.message


def test_omitted_trigger_sources_need_no_source_definition() -> None:
    spec = workflow_spec()
    del spec["trigger"]["sources"]

    report = validate_documents([log_sink(), workflow(spec)])

    assert report.ok


def test_step_with_two_kinds_is_rejected_naming_the_step() -> None:
    spec = workflow_spec()
    spec["steps"][1]["cli"] = {"command": ["true"]}

    status = validate_workflow(spec)

    assert not status.ready
    assert status.message == (
        "spec.steps[1]: step 'oom' must have exactly one of cli, condition, wait, notify, "
        "agent (found: cli, condition)"
    )


def test_step_without_a_kind_is_rejected() -> None:
    spec = workflow_spec()
    spec["steps"][1] = {"name": "oom"}

    status = validate_workflow(spec)

    assert not status.ready
    assert "spec.steps[1]" in status.message
    assert "(found: none)" in status.message


def test_unknown_field_is_rejected_with_its_path() -> None:
    spec = workflow_spec()
    spec["steps"][0]["cli"]["comand"] = ["x"]

    status = validate_workflow(spec)

    assert not status.ready
    assert "spec.steps[0].cli.comand" in status.message


def test_a_secret_in_string_data_makes_the_sink_ready_and_is_not_copied_into_it() -> None:
    url = "https://hooks.example.com/T000/B000"

    report = validate_documents([webhook_sink(), secret(string_data={"url": url})])

    assert report.ok
    (definition,) = report.definitions
    assert isinstance(definition.resource, Sink)
    assert url not in definition.model_dump_json(by_alias=True)


def test_a_secret_in_base64_data_makes_the_sink_ready_and_is_not_copied_into_it() -> None:
    url = "https://hooks.example.com/T000/B000"
    encoded = base64.b64encode(url.encode()).decode()

    report = validate_documents([secret(data={"url": encoded}), webhook_sink()])

    assert report.ok
    published = report.definitions[0].model_dump_json(by_alias=True)
    assert url not in published
    assert encoded not in published


def test_a_definition_written_with_secret_values_is_read_without_them() -> None:
    """A controller before issue 10 wrote resolved values under `secrets`."""
    (definition,) = validate_documents(
        [webhook_sink(), secret(string_data={"url": "x"})]
    ).definitions
    legacy = {**definition.model_dump(mode="json"), "secrets": {"hook-url/url": "https://h/1"}}

    read = Definition.model_validate_json(json.dumps(legacy))

    assert read == definition
    assert "https://h/1" not in read.model_dump_json()


def test_secret_that_is_not_base64_is_reported() -> None:
    report = validate_documents([secret(data={"url": "not base64!"})])

    assert not report.ok
    (error,) = report.errors
    assert error.startswith("secrets.yaml#hook-url: Secret: data.url is not base64")


def test_missing_secret_makes_the_sink_not_ready() -> None:
    report = validate_documents([webhook_sink()])

    status = status_of(report, "Sink", "hook")
    assert not status.ready
    assert status.message == "spec.webhook.urlSecretRef: Secret monitoring/hook-url is not defined"
    assert report.definitions == []


def test_missing_key_in_an_existing_secret_makes_the_sink_not_ready() -> None:
    report = validate_documents([webhook_sink(), secret(string_data={"token": "x"})])

    status = status_of(report, "Sink", "hook")
    assert not status.ready
    assert (
        "spec.webhook.urlSecretRef: Secret monitoring/hook-url has no key 'url'" in status.message
    )


def test_secret_in_another_namespace_is_not_visible() -> None:
    report = validate_documents(
        [webhook_sink(), secret(namespace="default", string_data={"url": "https://x"})]
    )

    assert not status_of(report, "Sink", "hook").ready


def test_missing_secret_message_names_the_referencing_field() -> None:
    report = validate_documents([webhook_sink()])

    assert "spec.webhook.urlSecretRef" in status_of(report, "Sink", "hook").message


def test_duplicate_resource_is_reported_and_the_first_is_kept() -> None:
    first = log_sink()
    second = RawDocument(origin="other.yaml#1", body=log_sink().body)

    report = validate_documents([first, second])

    assert not report.ok
    ready = [s for s in report.statuses if s.ready]
    duplicate = [s for s in report.statuses if not s.ready]
    assert [s.origin for s in ready] == ["sinks.yaml#oncall"]
    assert [(s.origin, s.message) for s in duplicate] == [("other.yaml#1", "defined twice")]
    assert len(report.definitions) == 1


def test_same_name_in_another_kind_or_namespace_is_not_a_duplicate() -> None:
    report = validate_documents([source("oncall"), log_sink("oncall"), source("oncall", "other")])

    assert report.ok
    assert len(report.definitions) == 3


def test_unknown_kind_and_non_mapping_documents_are_reported() -> None:
    report = validate_documents(
        [
            RawDocument(origin="a.yaml#1", body=["not", "a", "mapping"]),
            RawDocument(origin="b.yaml#1", body={"apiVersion": API, "kind": "Alert"}),
        ]
    )

    assert not report.ok
    assert report.errors == [
        "a.yaml#1: a document must be a mapping",
        "b.yaml#1: kind 'Alert' is not one of Source, Workflow, Sink, Secret",
    ]


def test_secret_with_malformed_metadata_is_reported_not_raised() -> None:
    report = validate_documents(
        [
            RawDocument(
                origin="s.yaml#1", body={"apiVersion": "v1", "kind": "Secret", "metadata": "x"}
            )
        ]
    )

    assert not report.ok


def _agent_step(output_schema: Any) -> dict[str, Any]:
    return {
        "name": "investigate",
        "agent": {"goal": "Why?", "tools": ["logs"], "outputSchema": output_schema},
    }


def test_an_agent_step_with_an_output_schema_is_ready() -> None:
    spec = workflow_spec()
    spec["steps"].insert(
        0,
        _agent_step(
            {
                "type": "object",
                "properties": {
                    "affectedService": {"type": "string"},
                    "blastRadius": {"enum": ["pod", "namespace", "cluster"]},
                },
                "required": ["affectedService"],
            }
        ),
    )

    assert validate_workflow(spec).ready


@pytest.mark.parametrize(
    ("output_schema", "problem"),
    [
        ({"type": "string"}, 'must be a JSON Schema of "type": "object"'),
        ({"type": "object"}, "must name the fields it adds under `properties`"),
        (
            {"type": "object", "properties": {"rootCause": {"type": "string"}}},
            "redefines the finding's own fields: rootCause",
        ),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": "one"}}},
            "is not a valid JSON Schema: 'one' is not of type 'number' at properties/n/minimum",
        ),
    ],
)
def test_an_unusable_output_schema_is_rejected_saying_why(
    output_schema: dict[str, Any], problem: str
) -> None:
    spec = workflow_spec()
    spec["steps"].insert(0, _agent_step(output_schema))

    status = validate_workflow(spec)

    assert not status.ready
    assert f"spec.steps[0].agent.outputSchema {problem}" in status.message


def test_an_output_schema_whose_ref_names_nothing_is_rejected() -> None:
    spec = workflow_spec()
    dangling = {"type": "object", "properties": {"owner": {"$ref": "#/$defs/team"}}}
    spec["steps"].insert(0, _agent_step(dangling))

    status = validate_workflow(spec)

    assert not status.ready
    assert "outputSchema has a $ref that does not resolve here: #/$defs/team" in status.message


def test_a_yaml_error_names_the_file_and_position_but_quotes_no_line(tmp_path: Path) -> None:
    """The line PyYAML would quote may hold a Secret's value; the message is logged."""
    file = tmp_path / "secrets.yaml"
    file.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: t}\nstringData: {token: hunter2\n",
        encoding="utf-8",
    )

    documents, errors = read_documents(tmp_path)

    assert documents == []
    assert errors == [
        f"{file}: not valid YAML: expected ',' or '}}', but got '<stream end>' (line 5, column 1)"
    ]


def pagerduty_sink(spec: dict[str, Any]) -> RawDocument:
    return RawDocument(
        origin="sinks.yaml#pager",
        body={
            "apiVersion": API,
            "kind": "Sink",
            "metadata": {"name": "pager", "namespace": NAMESPACE},
            "spec": {"type": "pagerduty", **spec},
        },
    )


def test_a_pagerduty_sink_with_its_routing_key_secret_is_ready() -> None:
    block = {"pagerduty": {"routingKeySecretRef": {"name": "pd", "key": "routing-key"}}}
    report = validate_documents(
        [pagerduty_sink(block), secret("pd", string_data={"routing-key": "R" * 32})]
    )

    assert status_of(report, "Sink", "pager").ready
    (definition,) = report.definitions
    assert "R" * 32 not in definition.model_dump_json(), "the key stays in the Secret"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({}, "type pagerduty needs a `pagerduty` block"),
        ({"pagerduty": {}}, "pagerduty.routingKeySecretRef"),
        (
            {"pagerduty": {"routingKeySecretRef": {"name": "pd", "key": "k"}, "url": "nowhere"}},
            "pagerduty.url",
        ),
    ],
)
def test_a_bad_pagerduty_block_is_refused_naming_the_field(
    spec: dict[str, Any], problem: str
) -> None:
    report = validate_documents([pagerduty_sink(spec)])

    status = status_of(report, "Sink", "pager")
    assert not status.ready
    assert problem in status.message


def test_a_pagerduty_sink_without_its_secret_is_not_ready_naming_the_field() -> None:
    block = {"pagerduty": {"routingKeySecretRef": {"name": "pd", "key": "routing-key"}}}
    report = validate_documents([pagerduty_sink(block)])

    assert status_of(report, "Sink", "pager").message == (
        "spec.pagerduty.routingKeySecretRef: Secret monitoring/pd is not defined"
    )


def test_a_webhook_signing_secret_must_exist_naming_the_field() -> None:
    sink = webhook_sink()
    sink.body["spec"]["webhook"]["signingSecretRef"] = {"name": "signing", "key": "key"}
    report = validate_documents([sink, secret(string_data={"url": "https://x"})])

    assert status_of(report, "Sink", "hook").message == (
        "spec.webhook.signingSecretRef: Secret monitoring/signing is not defined"
    )


def email_sink(block: dict[str, Any]) -> RawDocument:
    return RawDocument(
        origin="sinks.yaml#mail",
        body={
            "apiVersion": API,
            "kind": "Sink",
            "metadata": {"name": "mail", "namespace": NAMESPACE},
            "spec": {"type": "email", "email": block},
        },
    )


EMAIL = {"host": "smtp.example.com", "from": "vigil@example.com", "to": ["oncall@example.com"]}


def test_an_email_sink_with_auth_and_its_secret_is_ready() -> None:
    block = {**EMAIL, "username": "vigil", "passwordSecretRef": {"name": "smtp", "key": "pw"}}
    report = validate_documents([email_sink(block), secret("smtp", string_data={"pw": "x"})])

    assert status_of(report, "Sink", "mail").ready


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"to": []}, "email.to"),
        ({"to": ["oncall@example.com\r\nBcc: x@evil.test"]}, "is not an email address"),
        ({"from": "Vigil <vigil@example.com>"}, "is not an email address"),
        ({"tls": "ssl"}, "email.tls"),
        ({"username": "vigil"}, "both `username` and `passwordSecretRef`, or neither"),
        ({"port": 0}, "email.port"),
    ],
)
def test_a_bad_email_block_is_refused_naming_the_problem(
    change: dict[str, Any], problem: str
) -> None:
    report = validate_documents([email_sink({**EMAIL, **change})])

    status = status_of(report, "Sink", "mail")
    assert not status.ready
    assert problem in status.message
