"""A page of the alert listing filtered by matchers: bounded by alerts examined and by
matching work, always making progress, and walking every match exactly once through
its cursors (the store adapters' loop, replayed here over a list)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.support.properties import BUDGETS, check
from vigil.common.matchers import Matcher, matches_all, parse_matcher
from vigil.common.scanning import LabelScan

type Labels = dict[str, str]


def one_page(
    alerts: list[Labels],
    matchers: list[Matcher],
    *,
    start: int,
    limit: int,
    batch: int = 4,
    max_alerts: int = 10_000,
    max_work: int = 1 << 30,
) -> tuple[list[int], int | None]:
    """The positions on the page starting at `start`, and the next page's start."""
    scan: LabelScan[int] = LabelScan(
        matchers=matchers, limit=limit, max_alerts=max_alerts, max_work=max_work
    )
    position = start
    while not scan.done:
        rows = list(enumerate(alerts))[position : position + batch]
        scan.feed((labels, index) for index, labels in rows)
        if len(rows) < batch:
            break
        position += batch
    hits, resume = scan.page()
    return hits, None if resume is None else resume + 1


def every_page(alerts: list[Labels], matchers: list[Matcher], **bounds: int) -> list[list[int]]:
    pages: list[list[int]] = []
    start: int | None = 0
    while start is not None:
        hits, start = one_page(alerts, matchers, start=start, **bounds)
        pages.append(hits)
        assert len(pages) <= len(alerts) + 1, "a page made no progress"
    return pages


def test_a_never_matching_regex_stops_after_max_alerts_with_a_cursor() -> None:
    alerts = [{"pod": f"api-{n}"} for n in range(25)]
    never = [parse_matcher('pod=~"db-.*"')]

    hits, start = one_page(alerts, never, start=0, limit=5, max_alerts=10)

    assert (hits, start) == ([], 10)
    assert every_page(alerts, never, limit=5, max_alerts=10) == [[], [], []]


def test_long_labels_spend_the_work_budget_before_max_alerts() -> None:
    alerts = [{"pod": "a" * 1000} for _ in range(20)]
    matcher = parse_matcher('pod=~"a*b"')
    per_alert = matcher.cost(alerts[0])

    hits, start = one_page(alerts, [matcher], start=0, limit=5, max_work=3 * per_alert)

    assert (hits, start) == ([], 3)


def test_an_alert_costlier_than_the_whole_budget_is_still_examined_alone() -> None:
    alerts = [{"pod": "a" * 1000}, {"pod": "a"}]
    matcher = parse_matcher('pod=~"a+"')

    assert one_page(alerts, [matcher], start=0, limit=5, max_work=10) == ([0], 1)
    assert one_page(alerts, [matcher], start=1, limit=5, max_work=10) == ([1], None)


def test_a_full_page_resumes_after_its_last_item() -> None:
    alerts = [{"pod": "api"}] * 7

    assert one_page(alerts, [parse_matcher('pod=~"a.*"')], start=0, limit=3) == ([0, 1, 2], 3)


LABELS = st.fixed_dictionaries(
    {}, optional={"pod": st.sampled_from(["api", "api-2", "db", ""]), "team": st.just("ops")}
)
MATCHERS = st.lists(
    st.sampled_from(['pod=~"api.*"', 'pod!~"db"', 'team="ops"', 'pod=~""', 'pod!="api"']).map(
        parse_matcher
    ),
    max_size=2,
)


@BUDGETS
def test_following_the_cursors_yields_every_match_exactly_once_in_order(budget: str) -> None:
    @given(
        alerts=st.lists(LABELS, max_size=40),
        matchers=MATCHERS,
        limit=st.integers(1, 6),
        batch=st.integers(1, 5),
        max_alerts=st.integers(1, 12),
        max_work=st.integers(1, 200),
    )
    def holds(
        *,
        alerts: list[Labels],
        matchers: list[Matcher],
        limit: int,
        batch: int,
        max_alerts: int,
        max_work: int,
    ) -> None:
        pages = every_page(
            alerts, matchers, limit=limit, batch=batch, max_alerts=max_alerts, max_work=max_work
        )

        assert all(len(page) <= limit for page in pages)
        assert [hit for page in pages for hit in page] == [
            index for index, labels in enumerate(alerts) if matches_all(matchers, labels)
        ]

    check(budget, holds)
