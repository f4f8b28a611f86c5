"""Store contract, run on both adapters.

Alert history: occurrences, status changes, listing with label matchers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.documents import (
    RETENTION,
    make_occurrence,
    now_ms,
)
from vigil.common.documents import (
    AlertFilter,
    AlertRecord,
    StatusChange,
    alert_id,
)
from vigil.common.errors import InvalidInput
from vigil.common.store import Store

pytestmark = pytest.mark.integration

# --- alerts ----------------------------------------------------------------------------


async def test_first_occurrence_creates_the_alert_history(store: Store) -> None:
    at = now_ms()
    received = make_occurrence(at=at, labels={"alertname": "Down", "severity": "critical"})

    record = await store.record_alert(received)

    assert record == AlertRecord(
        id=alert_id("shop", "alertmanager", "fp-1"),
        namespace="shop",
        source="alertmanager",
        fingerprint="fp-1",
        status="firing",
        labels={"alertname": "Down", "severity": "critical"},
        annotations={"summary": "api is crash-looping"},
        starts_at=at - timedelta(minutes=1),
        first_seen=at,
        last_seen=at,
        occurrences=1,
        history=[StatusChange(status="firing", at=at)],
        expire_at=at + RETENTION.alerts,
    )
    assert await store.get_alert(record.id) == record
    assert await store.get_alert("shop/alertmanager/unknown") is None


async def test_repeated_occurrence_counts_and_moves_last_seen(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at))

    record = await store.record_alert(make_occurrence(at=at + timedelta(minutes=1)))

    assert record.occurrences == 2
    assert record.first_seen == at
    assert record.last_seen == at + timedelta(minutes=1)
    assert record.status == "firing"
    assert record.history == [StatusChange(status="firing", at=at)]
    assert await store.get_alert(record.id) == record


async def test_resolved_then_firing_again_follows_the_status_with_history(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at))

    resolved = await store.record_alert(
        make_occurrence(at=at + timedelta(minutes=1), status="resolved")
    )
    refired = await store.record_alert(make_occurrence(at=at + timedelta(minutes=2)))

    assert resolved.status == "resolved"
    assert resolved.ends_at == at + timedelta(minutes=1)
    assert refired.status == "firing"
    assert refired.ends_at is None
    assert refired.history == [
        StatusChange(status="firing", at=at),
        StatusChange(status="resolved", at=at + timedelta(minutes=1)),
        StatusChange(status="firing", at=at + timedelta(minutes=2)),
    ]
    assert refired.occurrences == 3
    assert await store.get_alert(refired.id) == refired


async def test_late_older_notification_is_counted_but_changes_no_status(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at))
    resolved = await store.record_alert(
        make_occurrence(at=at + timedelta(minutes=2), status="resolved")
    )

    late = await store.record_alert(
        make_occurrence(at=at + timedelta(minutes=1), labels={"alertname": "Changed"})
    )

    assert late.occurrences == 3
    assert late.status == "resolved"
    assert late.labels == resolved.labels
    assert late.last_seen == at + timedelta(minutes=2)
    assert late.history == resolved.history
    assert await store.get_alert(late.id) == late


async def test_list_alerts_is_most_recently_seen_first_and_filters(store: Store) -> None:
    at = now_ms()
    await store.record_alert(make_occurrence(at=at, fingerprint="a"))
    await store.record_alert(make_occurrence(at=at + timedelta(seconds=1), fingerprint="b"))
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=2), fingerprint="c", source="grafana")
    )
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=3), fingerprint="d", namespace="bank")
    )
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=4), fingerprint="a", status="resolved")
    )

    async def fingerprints(query: AlertFilter) -> list[str]:
        return [a.fingerprint for a in (await store.list_alerts(query)).items]

    assert await fingerprints(AlertFilter()) == ["a", "d", "c", "b"]
    assert await fingerprints(AlertFilter(status="firing")) == ["d", "c", "b"]
    assert await fingerprints(AlertFilter(status="resolved")) == ["a"]
    assert await fingerprints(AlertFilter(namespace="shop")) == ["a", "c", "b"]
    assert await fingerprints(AlertFilter(source="grafana")) == ["c"]
    assert await fingerprints(AlertFilter(namespace="shop", source="alertmanager")) == ["a", "b"]


LABELLED = {
    "crit": {"alertname": "Down", "severity": "critical"},
    "warn": {"alertname": "Down", "severity": "warning"},
    "empty": {"alertname": "Down", "severity": ""},
    "none": {"alertname": "Slow"},
    "dotted": {"alertname": "Slow", "team.name": "db"},
    "newline": {"alertname": "Odd", "severity": "critical\n"},
}


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        (['severity="critical"'], {"crit"}),
        (["severity=critical"], {"crit"}),
        (['severity="critical\\n"'], {"newline"}),
        (['severity=""'], {"empty", "none", "dotted"}),
        (['severity!="critical"'], {"warn", "empty", "none", "dotted", "newline"}),
        (['severity!=""'], {"crit", "warn", "newline"}),
        (['severity=~"crit.*|warn.*"'], {"crit", "warn"}),
        (['severity=~"crit"'], set()),  # anchored at both ends, like Alertmanager
        (['severity=~"(?i)CRITICAL"'], {"crit"}),  # not "critical\n": the end is the end
        (['severity=~"warning|"'], {"warn", "empty", "none", "dotted"}),
        (['severity=~".*"'], set(LABELLED) - {"newline"}),
        (['severity!~"crit.*"'], {"warn", "empty", "none", "dotted", "newline"}),
        (['severity!~"crit.*|"'], {"warn", "newline"}),
        (['severity!~".+"'], {"empty", "none", "dotted", "newline"}),  # "." stops at \n
        (['alertname="Down"', 'severity!~"warn.*"'], {"crit", "empty"}),
        (['alertname="Slow"', 'alertname!="Down"'], {"none", "dotted"}),
        (['"team.name"="db"'], {"dotted"}),
        (['"team.name"=~"d."', 'alertname="Slow"'], {"dotted"}),
        (['"team.name"!="db"'], {"crit", "warn", "empty", "none", "newline"}),
    ],
)
async def test_list_alerts_applies_label_matchers_as_alertmanager_does(
    store: Store, matchers: list[str], expected: set[str]
) -> None:
    at = now_ms()
    for offset, (fingerprint, labels) in enumerate(LABELLED.items()):
        await store.record_alert(
            make_occurrence(
                at=at + timedelta(seconds=offset), fingerprint=fingerprint, labels=labels
            )
        )

    page = await store.list_alerts(AlertFilter(matchers=matchers))

    assert {a.fingerprint for a in page.items} == expected


async def test_list_alerts_rejects_an_invalid_matcher(store: Store) -> None:
    await store.record_alert(make_occurrence(at=now_ms()))

    with pytest.raises(InvalidInput, match="invalid regular expression"):
        await store.list_alerts(AlertFilter(matchers=['severity=~"(unclosed"']))


@pytest.mark.parametrize(
    "matchers",
    [[], ['alertname="Down"'], ['"team.name"!="db"']],
    ids=["all", "label-matcher", "unusual-label-name"],
)
async def test_list_alerts_cursor_walks_every_match_exactly_once(
    store: Store, matchers: list[str]
) -> None:
    at = now_ms()
    # Pairs seen at the same instant: the cursor must break ties by id.
    for number in range(13):
        labels = {"alertname": "Down" if number % 3 else "Slow"}
        await store.record_alert(
            make_occurrence(
                at=at + timedelta(seconds=number // 2),
                fingerprint=f"fp-{number:02d}",
                labels=labels,
            )
        )
    everything = await store.list_alerts(AlertFilter(matchers=matchers), limit=100)
    expected = [a.id for a in everything.items]
    assert len(expected) == (8 if matchers == ['alertname="Down"'] else 13)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_alerts(AlertFilter(matchers=matchers), limit=3, cursor=cursor)
        assert len(page.items) <= 3
        seen += [a.id for a in page.items]
        if page.next is None:
            break
        cursor = page.next

    assert seen == expected
    keys = [(a.last_seen, a.id) for a in everything.items]
    assert keys == sorted(keys, reverse=True)
