"""One page of the alert listing filtered by label matchers, in a bounded scan.

The store adapters (`vigil.common.adapters.sqlite`, `vigil.common.adapters.mongo`) read
alerts in listing order, in batches, and feed them here; matchers run in Python with RE2
(`vigil.common.matchers`), never in the database (MongoDB's `$regex` is PCRE, which
backtracks). A page examines at most `SCAN_ALERTS` alerts and at most `SCAN_WORK` units
of matching work (label bytes * RE2 program size); when either runs out before the page
is full, the page is returned short, possibly empty, with a cursor after the last alert
examined, so a never-matching regex over a million alerts costs a bounded amount per
request and the client goes on with `next`. At least one alert is examined per page, so
every page makes progress.

`feed` is CPU work: the adapters run it in a worker thread (RE2 releases the GIL while it
matches), so the event loop stays free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vigil.common.matchers import Matcher

# Alerts examined by one page at most.
SCAN_ALERTS = 10_000
# Matching work of one page at most: sum of (label length + 1) * RE2 program size, about 0.1 s
# of CPU for RE2's slowest case (≈ 3 ns per unit), far less for ordinary patterns.
SCAN_WORK = 32 * 1024 * 1024
# Alerts an adapter reads from the store per batch (one thread hop per batch).
SCAN_BATCH = 256


@dataclass(slots=True, kw_only=True)
class LabelScan[T]:
    """The matches among alerts fed in listing order, until the page is full or the
    budget is spent. `T` is the adapter's row: whatever it needs to build the page."""

    matchers: Sequence[Matcher]
    limit: int
    max_alerts: int = SCAN_ALERTS
    max_work: int = SCAN_WORK
    hits: list[T] = field(default_factory=list)
    scanned: int = 0
    work: int = 0
    exhausted: bool = False  # the budget ran out before the page was full
    last: T | None = None  # the last alert examined

    @property
    def done(self) -> bool:
        return self.exhausted or len(self.hits) > self.limit

    def feed(self, batch: Iterable[tuple[Mapping[str, str], T]]) -> None:
        """Examine `batch` (labels, row) in order; stop as soon as `done`."""
        for labels, row in batch:
            if self.done:
                return
            cost = sum(m.cost(labels) for m in self.matchers)
            if self.scanned and (
                self.scanned >= self.max_alerts or self.work + cost > self.max_work
            ):
                self.exhausted = True
                return
            self.scanned += 1
            self.work += cost
            self.last = row
            if all(m.matches(labels) for m in self.matchers):
                self.hits.append(row)

    def page(self) -> tuple[list[T], T | None]:
        """The page's rows and the row the next page starts after (None: nothing left).

        Call when `done`, or when the store has no more rows to feed.
        """
        if len(self.hits) > self.limit:
            return self.hits[: self.limit], self.hits[self.limit - 1]
        if self.exhausted:
            return self.hits, self.last
        return self.hits, None
