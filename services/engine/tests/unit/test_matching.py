"""Which workflows an alert starts, the reason the others do not, and the trigger key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vigil.common.messages import Alert, AlertReceived, Group
from vigil.common.resources import Workflow
from vigil.engine.domain.matching import Match, match, trigger_key

STARTS_AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LABELS = {
    "alertname": "KubePodCrashLooping",
    "severity": "critical",
    "namespace": "shop",
    "pod": "api-7f9c",
}


def make_workflow(
    trigger: dict[str, Any], *, name: str = "pod-crashloop", namespace: str = "monitoring"
) -> Workflow:
    return Workflow.model_validate(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"trigger": trigger, "steps": [{"name": "echo", "cli": {"command": ["true"]}}]},
        }
    )


def make_received(
    *,
    labels: dict[str, str] | None = None,
    status: str = "firing",
    starts_at: datetime = STARTS_AT,
    fingerprint: str = "3a0f6a6b1e9d2c11",
    source: str = "alertmanager",
    namespace: str = "monitoring",
    received_at: datetime = STARTS_AT,
) -> AlertReceived:
    alert = Alert.model_validate(
        {
            "status": status,
            "fingerprint": fingerprint,
            "labels": LABELS if labels is None else labels,
            "startsAt": starts_at,
        }
    )
    group = Group.model_validate({"key": "{}:{}", "receiver": "vigil", "labels": {"a": "b"}})
    return AlertReceived(
        namespace=namespace, source=source, received_at=received_at, alert=alert, group=group
    )


def test_alert_satisfying_every_rule_matches() -> None:
    workflow = make_workflow(
        {
            "sources": ["alertmanager"],
            "matchers": ['alertname="KubePodCrashLooping"', 'severity=~"critical|warning"'],
            "filter": 'alert.labels.namespace != "kube-system"',
            "on": ["firing"],
        }
    )

    assert match(workflow, make_received()) == Match(matched=True)


def test_empty_trigger_matches_any_firing_alert_from_any_source() -> None:
    assert match(make_workflow({}), make_received(source="grafana")).matched


def test_alert_from_another_namespace_never_matches() -> None:
    result = match(make_workflow({}), make_received(namespace="other"))

    assert result == Match(matched=False, reason="alert is in namespace other")


def test_source_not_listed_in_trigger_sources_does_not_match() -> None:
    workflow = make_workflow({"sources": ["alertmanager", "webhooks"]})

    assert match(workflow, make_received(source="webhooks")).matched
    assert match(workflow, make_received(source="grafana")) == Match(
        matched=False, reason="source grafana is not in trigger.sources"
    )


def test_resolved_alert_does_not_match_the_default_on_firing() -> None:
    result = match(make_workflow({}), make_received(status="resolved"))

    assert result == Match(matched=False, reason="status resolved is not in trigger.on")


def test_on_resolved_matches_resolved_but_not_firing() -> None:
    workflow = make_workflow({"on": ["resolved"]})

    assert match(workflow, make_received(status="resolved")).matched
    assert match(workflow, make_received(status="firing")).reason == (
        "status firing is not in trigger.on"
    )


@pytest.mark.parametrize(
    ("matcher", "matched"),
    [
        ('severity="critical"', True),
        ('severity="warning"', False),
        ('severity!="warning"', True),
        ('severity!="critical"', False),
        ('severity=~"crit.*"', True),
        ('severity=~"crit"', False),
        ('severity!~"info|warning"', True),
        ('severity!~"critical|warning"', False),
        ('team=""', True),
        ('team!=""', False),
    ],
)
def test_every_matcher_operator_is_applied(matcher: str, matched: bool) -> None:
    assert match(make_workflow({"matchers": [matcher]}), make_received()).matched is matched


def test_reason_names_the_first_matcher_that_fails_with_the_actual_value() -> None:
    workflow = make_workflow(
        {"matchers": ['alertname="KubePodCrashLooping"', 'severity=~"info|warning"', 'pod="x"']}
    )

    result = match(workflow, make_received())

    assert result == Match(
        matched=False, reason="matcher severity=~\"info|warning\" does not hold ('critical')"
    )


def test_reason_says_when_the_label_is_absent() -> None:
    result = match(make_workflow({"matchers": ['team="ops"']}), make_received())

    assert result.reason == 'matcher team="ops" does not hold (absent)'


def test_false_filter_does_not_match_and_is_quoted_in_the_reason() -> None:
    workflow = make_workflow({"filter": 'alert.labels.namespace == "kube-system"'})

    result = match(workflow, make_received())

    assert result == Match(
        matched=False, reason="filter 'alert.labels.namespace == \"kube-system\"' is false"
    )


@pytest.mark.parametrize(
    "expression",
    [
        'group.receiver == "vigil" && group.labels.a == "b"',
        'workflow.name == "pod-crashloop" && workflow.namespace == "monitoring"',
        'alert.status == "firing" && alert.fingerprint == "3a0f6a6b1e9d2c11"',
        'alert.startsAt.startsWith("2024-05-01T10:00:00")',
    ],
)
def test_filter_sees_alert_group_and_workflow(expression: str) -> None:
    assert match(make_workflow({"filter": expression}), make_received()).matched


def test_filter_that_fails_to_evaluate_does_not_match_and_gives_the_error() -> None:
    workflow = make_workflow({"filter": 'alert.labels.team == "ops"'})

    result = match(workflow, make_received())

    assert not result.matched
    assert result.reason.startswith("filter failed: ")
    assert "no such key 'team'" in result.reason


def test_filter_dividing_by_zero_does_not_match_instead_of_raising() -> None:
    workflow = make_workflow({"filter": "size(alert.labels) / 0 == 1"})

    assert not match(workflow, make_received()).matched


def test_status_rule_is_checked_before_matchers() -> None:
    workflow = make_workflow({"matchers": ['team="ops"']})

    assert "trigger.on" in match(workflow, make_received(status="resolved")).reason


def test_trigger_key_is_equal_for_the_same_occurrence() -> None:
    workflow = make_workflow({})
    first = make_received(received_at=STARTS_AT)
    redelivered = make_received(received_at=datetime(2024, 5, 1, 10, 5, tzinfo=UTC))

    assert trigger_key(workflow, first) == trigger_key(workflow, redelivered)


@pytest.mark.parametrize(
    ("workflow", "received"),
    [
        (make_workflow({}), make_received(status="resolved")),
        (make_workflow({}), make_received(starts_at=datetime(2024, 5, 1, 11, 0, tzinfo=UTC))),
        (make_workflow({}, name="other-workflow"), make_received()),
        (make_workflow({}, namespace="shop"), make_received(namespace="shop")),
        (make_workflow({}), make_received(source="grafana")),
        (make_workflow({}), make_received(fingerprint="ffffffffffffffff")),
    ],
    ids=["status", "startsAt", "workflow", "namespace", "source", "fingerprint"],
)
def test_trigger_key_differs_for_another_occurrence_or_workflow(
    workflow: Workflow, received: AlertReceived
) -> None:
    assert trigger_key(workflow, received) != trigger_key(make_workflow({}), make_received())


def test_trigger_key_is_a_short_stable_hex_string() -> None:
    key = trigger_key(make_workflow({}), make_received())

    assert len(key) == 40
    assert int(key, 16) >= 0
