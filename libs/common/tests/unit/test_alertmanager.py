"""The Alertmanager v4 webhook payload and Alertmanager-compatible label fingerprints."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from vigil.common.alertmanager import WebhookAlert, WebhookPayload, label_fingerprint

FNV64_OFFSET = 14695981039346656037
FNV64_PRIME = 1099511628211


def reference_fingerprint(labels: dict[str, str]) -> str:
    """Prometheus `LabelSet.Fingerprint`, written out independently of the code under test."""
    data = b"".join(
        name.encode() + b"\xff" + value.encode() + b"\xff" for name, value in sorted(labels.items())
    )
    digest = FNV64_OFFSET
    for byte in data:
        digest = ((digest ^ byte) * FNV64_PRIME) % 2**64
    return format(digest, "016x")


def payload() -> dict[str, Any]:
    """A body as Alertmanager 0.27 sends it, with fields Vigil does not model."""
    return {
        "receiver": "vigil",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "namespace": "shop",
                    "pod": "api-7f9c",
                    "severity": "critical",
                },
                "annotations": {"summary": "Pod shop/api-7f9c is crash looping"},
                "startsAt": "2024-05-01T10:00:00.123456Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": "3a0f6a6b1e9d2c11",
            },
            {
                "status": "resolved",
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "namespace": "shop",
                    "pod": "web-1",
                    "severity": "warning",
                },
                "annotations": {},
                "startsAt": "2024-05-01T09:00:00Z",
                "endsAt": "2024-05-01T09:30:00Z",
                "generatorURL": "",
                "fingerprint": "77aa0f6a6b1e9d2c",
            },
        ],
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}/{severity=~"critical|warning"}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
    }


def test_parses_a_realistic_v4_payload() -> None:
    parsed = WebhookPayload.model_validate(payload())

    assert parsed.group_key == '{}/{severity=~"critical|warning"}:{alertname="KubePodCrashLooping"}'
    assert parsed.receiver == "vigil"
    assert parsed.status == "firing"
    assert parsed.group_labels == {"alertname": "KubePodCrashLooping"}
    assert parsed.common_labels == {"alertname": "KubePodCrashLooping", "namespace": "shop"}
    assert parsed.external_url == "http://alertmanager:9093"
    assert [a.labels["pod"] for a in parsed.alerts] == ["api-7f9c", "web-1"]
    assert [a.status for a in parsed.alerts] == ["firing", "resolved"]


def test_alert_fields_are_parsed_with_timezone_aware_times() -> None:
    first, second = WebhookPayload.model_validate(payload()).alerts

    assert first.starts_at == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert first.annotations == {"summary": "Pod shop/api-7f9c is crash looping"}
    assert first.generator_url == "http://prometheus:9090/graph?g0.expr=up"
    assert first.fingerprint == "3a0f6a6b1e9d2c11"
    assert second.ends_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def test_go_nanosecond_timestamps_are_accepted() -> None:
    body = payload()
    body["alerts"][0]["startsAt"] = "2024-05-01T10:00:00.123456789Z"

    first = WebhookPayload.model_validate(body).alerts[0]

    assert first.starts_at.replace(microsecond=0) == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_unknown_fields_are_ignored_at_every_level() -> None:
    body = payload()
    body["newTopLevelField"] = {"anything": 1}
    body["alerts"][0]["silencedBy"] = ["abc"]

    parsed = WebhookPayload.model_validate(body)

    assert len(parsed.alerts) == 2
    assert "newTopLevelField" not in parsed.model_dump(by_alias=True)


def test_optional_fields_default_when_absent() -> None:
    parsed = WebhookPayload.model_validate(
        {
            "status": "firing",
            "alerts": [{"status": "firing", "labels": {}, "startsAt": "2024-05-01T10:00:00Z"}],
        }
    )

    assert parsed.group_key == ""
    assert parsed.group_labels == {}
    alert = parsed.alerts[0]
    assert (alert.annotations, alert.ends_at, alert.fingerprint) == ({}, None, "")


def _broken(mutate: str) -> dict[str, Any]:
    body = copy.deepcopy(payload())
    match mutate:
        case "no alerts":
            body["alerts"] = []
        case "alerts missing":
            del body["alerts"]
        case "bad status":
            body["status"] = "pending"
        case "bad alert status":
            body["alerts"][1]["status"] = "silenced"
        case "missing labels":
            del body["alerts"][0]["labels"]
        case "missing startsAt":
            del body["alerts"][0]["startsAt"]
        case "bad version":
            body["version"] = "3"
    return body


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        ("no alerts", ("alerts",)),
        ("alerts missing", ("alerts",)),
        ("bad status", ("status",)),
        ("bad alert status", ("alerts", 1, "status")),
        ("missing labels", ("alerts", 0, "labels")),
        ("missing startsAt", ("alerts", 0, "startsAt")),
        ("bad version", ("version",)),
    ],
)
def test_wrongly_shaped_payload_is_rejected_naming_the_field(
    mutate: str, location: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookPayload.model_validate(_broken(mutate))

    assert [error["loc"] for error in caught.value.errors()] == [location]


def test_fingerprint_of_alertname_foo_is_alertmanagers() -> None:
    labels = {"alertname": "foo"}

    assert label_fingerprint(labels) == reference_fingerprint(labels) == "c5a7cb176f0f418a"


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "api-1"},
        {"é": "ünïcode", "a": ""},
    ],
)
def test_fingerprint_equals_the_reference_fnv1a(labels: dict[str, str]) -> None:
    assert label_fingerprint(labels) == reference_fingerprint(labels)


def test_fingerprint_is_sixteen_lowercase_hex_digits() -> None:
    fingerprint = label_fingerprint({"alertname": "x"})

    assert len(fingerprint) == 16
    assert set(fingerprint) <= set("0123456789abcdef")


def test_fingerprint_is_deterministic_and_independent_of_label_order() -> None:
    forward = {"alertname": "A", "pod": "p", "namespace": "n"}
    backward = dict(reversed(list(forward.items())))

    assert label_fingerprint(forward) == label_fingerprint(backward)
    assert label_fingerprint(forward) == label_fingerprint(dict(forward))


@pytest.mark.parametrize(
    "other",
    [
        {"alertname": "A", "pod": "q"},
        {"alertname": "A"},
        {"alertname": "Ap", "": ""},  # separators keep name/value boundaries apart
        {"alertnam": "eA", "pod": "p"},
    ],
)
def test_fingerprint_differs_for_different_label_sets(other: dict[str, str]) -> None:
    assert label_fingerprint({"alertname": "A", "pod": "p"}) != label_fingerprint(other)


def test_identity_prefers_the_fingerprint_alertmanager_sent() -> None:
    alert = WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "foo"},
            "startsAt": "2024-05-01T10:00:00Z",
            "fingerprint": "0123456789abcdef",
        }
    )

    assert alert.identity() == "0123456789abcdef"


def test_identity_falls_back_to_the_label_fingerprint() -> None:
    alert = WebhookAlert.model_validate(
        {"status": "firing", "labels": {"alertname": "foo"}, "startsAt": "2024-05-01T10:00:00Z"}
    )

    assert alert.identity() == reference_fingerprint({"alertname": "foo"})
