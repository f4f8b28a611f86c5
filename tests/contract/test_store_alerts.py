"""Store contract, run on both adapters.

Alert history: occurrences, status changes, listing with label matchers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

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
from vigil.common.matchers import parse_matcher
from vigil.common.scanning import SCAN_ALERTS, SCAN_WORK
from vigil.common.store import Store
from vigil.common.testing import sqlite_store

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


# --- regular expressions: RE2, bounded scans -------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("operator", ["=~", "!~"])
async def test_a_backtracking_bomb_over_a_long_label_answers_at_once(
    store: Store, operator: str
) -> None:
    # `(a+)+` over 29 characters took 21 s in Python's `re` (SQLite's REGEXP function) and
    # PCRE ($regex); over 45 it would take days. RE2 answers in microseconds.
    at = now_ms()
    await store.record_alert(make_occurrence(at=at, labels={"x": "a" * 45 + "!"}))
    await store.record_alert(
        make_occurrence(at=at + timedelta(seconds=1), fingerprint="fp-2", labels={"x": "a" * 45})
    )

    page = await store.list_alerts(AlertFilter(matchers=[f'x{operator}"(a+)+"']))

    assert [a.fingerprint for a in page.items] == (["fp-2"] if operator == "=~" else ["fp-1"])
    assert page.next is None


@pytest.mark.parametrize(
    "matcher",
    ['x=~"(a)\\\\1"', 'x=~"(?=a)a"', f'x=~"{"a" * 1025}"'],
    ids=["backreference", "lookahead", "too-long"],
)
async def test_list_alerts_refuses_a_pattern_re2_cannot_run_naming_the_matcher(
    store: Store, matcher: str
) -> None:
    with pytest.raises(InvalidInput, match=r"^matcher 'x=~"):
        await store.list_alerts(AlertFilter(matchers=[matcher]))


async def test_a_page_stops_scanning_when_its_matching_budget_is_spent(store: Store) -> None:
    """Alerts with long labels spend a page's matching work before its alert count: the page
    comes back short, with `next`, and following `next` still finds every match once."""
    at = now_ms()
    long_value = "a" * 300_000
    per_page = SCAN_WORK // parse_matcher('x=~"a*b"').cost({"x": long_value})
    assert 5 < per_page < 40
    received = [
        make_occurrence(
            at=at + timedelta(seconds=n),
            fingerprint=f"fp-{n:02d}",
            labels={"x": long_value + ("b" if n in (3, 10) else "")},
        )
        for n in range(50)
    ]
    await store.record_alerts(received)
    query = AlertFilter(matchers=['x=~"a*b"'])

    first = await store.list_alerts(query, limit=10)
    assert first.items == []  # the newest `per_page` alerts do not match, the rest is unread
    assert first.next is not None

    found: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        page = await store.list_alerts(query, limit=10, cursor=cursor)
        pages += 1
        found += [a.fingerprint for a in page.items]
        if page.next is None:
            break
        cursor = page.next
    assert found == ["fp-10", "fp-03"]
    assert pages >= 3


async def test_a_never_matching_regex_reads_at_most_scan_alerts_per_page(tmp_path: Path) -> None:
    """The first page reads SCAN_ALERTS alerts, finds none and says where to go on.

    SQLite only: recording 10,000 alerts one by one takes minutes on mongoeco. The MongoDB
    adapter stops in the same way (the same `LabelScan`), shown by the budget test above.
    """
    async with sqlite_store(tmp_path) as store:
        at = now_ms()
        await store.record_alerts(
            [
                make_occurrence(
                    at=at + timedelta(milliseconds=n),
                    fingerprint=f"fp-{n:05d}",
                    labels={"n": str(n)},
                )
                for n in range(SCAN_ALERTS + 5)
            ]
        )
        query = AlertFilter(matchers=['n=~"none|4"'])

        first = await store.list_alerts(query)
        assert first.items == []
        assert first.next is not None
        last = await store.list_alerts(query, cursor=first.next)
        assert [a.fingerprint for a in last.items] == ["fp-00004"]
        assert last.next is None
