"""Console benchmark: how long ingest takes to render each console page with 1,000
executions (and 1,000 alerts) in the store (`make bench`).

The real app (`vigil.ingest.api.build_app`, the console with its templates) over a SQLite
store in a temporary folder, called in-process through httpx's ASGI transport: no
socket, no browser, so a figure is the server's work for one page, store reads included.
Each round requests every page `REQUESTS` times; a round's figure is the median request,
and the reported figure is the median of `ROUNDS` rounds with min and max. The last row
renders 1,000 rows into one table (the template alone): what a page of 1,000 would cost.
Figures go to docs/benchmarks.md under "## Console pages". A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.document import write_section
from bench.platform_report import machine
from tests.support.definitions import alertmanager_source
from tests.support.documents import make_execution, make_occurrence
from tests.support.ingest import fake_ingest, report_statuses
from vigil.common.documents import Execution, ExecutionFilter, StepRecord
from vigil.common.store import Store
from vigil.common.testing import definitions_view, sqlite_store
from vigil.ingest.access import CONSOLE_COOKIE, FixedTokens, TokenTable, cookie_value
from vigil.ingest.api import build_app
from vigil.ingest.console.pages import Console

SECTION = "## Console pages"
EXECUTIONS = 1000
ALERTS = 1000
ROUNDS = 3
REQUESTS = 30
TARGET_MS = 100.0
TOKEN = secrets.token_hex(16)  # a throwaway API token for the run
STDOUT = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda  264212084 24856492  81534420  24% /\n"  # noqa: E501 - a df line


def execution(n: int, at: datetime) -> Execution:
    """A finished 3-step execution with the outputs the quickstart's steps leave."""
    base = make_execution(
        f"01BENCH{n:06d}",
        at=at,
        namespace="demo",
        workflow="disk-filling-up",
        state="succeeded" if n % 7 else "failed",
        alert=f"demo/alertmanager/fp-{n % 200}",
        finished_at=at + timedelta(seconds=2),
    )
    steps = [
        StepRecord(
            name="measure",
            kind="cli",
            state="succeeded",
            attempt=1,
            started_at=at,
            finished_at=at + timedelta(milliseconds=30),
            output={
                "command": ["df", "-P", "--", "/"],
                "exitCode": 0,
                "stdout": STDOUT,
                "stderr": "",
                "truncated": False,
                "artifactId": None,
            },
        ),
        StepRecord(
            name="critical",
            kind="condition",
            state="succeeded",
            attempt=1,
            started_at=at + timedelta(milliseconds=30),
            finished_at=at + timedelta(milliseconds=31),
            output={"result": True},
        ),
        StepRecord(
            name="report",
            kind="notify",
            state="succeeded",
            attempt=1,
            started_at=at + timedelta(milliseconds=31),
            finished_at=at + timedelta(seconds=2),
            output={
                "title": f"HostDiskFillingUp on db-{n}:9100 (critical)",
                "message": "Disk / will be full within 4 hours\n" + STDOUT,
                "deliveries": [{"sink": "console", "status": "delivered", "id": f"{n}/r/1/c"}],
            },
        ),
    ]
    return base.model_copy(update={"steps": steps})


async def fill(store: Store, now: datetime) -> str:
    """1,000 executions and 1,000 alerts; the id of the newest execution."""
    newest = ""
    for n in range(EXECUTIONS):
        made = execution(n, now - timedelta(seconds=EXECUTIONS - n))
        await store.insert_execution(made)
        newest = made.id
    labels = ("critical", "warning", "info")
    for n in range(ALERTS):
        await store.record_alert(
            make_occurrence(
                at=now - timedelta(seconds=ALERTS - n),
                fingerprint=f"fp-{n}",
                namespace="demo",
                labels={
                    "alertname": "HostDiskFillingUp",
                    "severity": labels[n % 3],
                    "instance": f"db-{n}:9100",
                    "team": "db" if n % 2 else "web",
                },
            )
        )
    return newest


async def timed(http: httpx.AsyncClient, path: str) -> float:
    start = time.perf_counter()
    answer = await http.get(path)
    elapsed = time.perf_counter() - start
    if answer.status_code != 200:
        msg = f"{answer.request.url}: {answer.status_code} {answer.text[:200]}"
        raise SystemExit(msg)
    return elapsed * 1000


async def measure(folder: Path) -> dict[str, list[float]]:
    now = datetime.now(UTC)
    medians: dict[str, list[float]] = {}
    async with sqlite_store(folder) as store:
        newest = await fill(store, now)
        view = definitions_view(alertmanager_source("demo", "alertmanager"))
        report_statuses(
            view,
            "demo",
            [
                ("Source", "alertmanager", True, "valid"),
                ("Workflow", "disk-filling-up", True, "valid"),
            ],
            at=now,
        )
        ingest = fake_ingest(store, view)
        app = build_app(ingest, checks={}, tokens=FixedTokens(TokenTable.of(TOKEN)))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://console.bench",
            cookies={CONSOLE_COOKIE: cookie_value(TOKEN)},
        ) as http:
            first = (await http.get("/executions")).text
            cursor = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
            pages = {
                "executions, first page (50 rows)": "/executions",
                "executions, an older page (cursor)": cursor.replace("&amp;", "&"),
                "executions, filtered by state (failed)": "/executions?state=failed",
                "one execution (3 steps, outputs, deliveries)": f"/executions/{newest}",
                "alerts, first page": "/alerts",
                'alerts, matcher team="db"': "/alerts?match=team%3D%22db%22",
                "definitions (a Workflow's success rate read)": "/definitions",
            }
            console = Console(ingest=ingest, tokens=None)
            every = await all_executions(store)
            row_of = console.env.get_template("rows.html").module.execution_row  # type: ignore[attr-defined]
            for _ in range(ROUNDS):
                for name, path in pages.items():
                    samples = [await timed(http, path) for _ in range(REQUESTS)]
                    medians.setdefault(name, []).append(statistics.median(samples))
                samples = []
                for _ in range(5):
                    start = time.perf_counter()
                    html = "".join(
                        str(row_of({"execution": e, "labels": [], "seconds": 2.0})) for e in every
                    )
                    samples.append((time.perf_counter() - start) * 1000)
                assert html.count("<tr ") == EXECUTIONS, html.count("<tr ")
                medians.setdefault("1,000 rows into one table (template only)", []).append(
                    statistics.median(samples)
                )
    return medians


async def all_executions(store: Store) -> list[Execution]:
    found: list[Execution] = []
    cursor: str | None = None
    while True:
        page = await store.list_executions(ExecutionFilter(), limit=500, cursor=cursor)
        found += page.items
        if page.next is None:
            return found
        cursor = page.next


def report(medians: dict[str, list[float]]) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, Python "
        f"{sys.version.split()[0]}; command: `python -m bench.console_bench` (in `make bench`).",
        "",
        f"The real app over SQLite holding {EXECUTIONS:,} finished 3-step executions and "
        f"{ALERTS:,} alerts, called in-process (httpx's ASGI transport: no socket, no "
        f"browser); each figure is the median of {ROUNDS} rounds (min to max) of the median of "
        f"{REQUESTS} requests. Target: under {TARGET_MS:.0f} ms per page.",
        "",
        "| page | ms per request | |",
        "|---|---:|---|",
    ]
    for name, values in medians.items():
        mid = statistics.median(values)
        verdict = "✓" if mid < TARGET_MS else "✗"
        lines.append(f"| {name} | {mid:.1f} ({min(values):.1f} to {max(values):.1f}) | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-console-bench-") as folder:
        medians = asyncio.run(measure(Path(folder)))
    body = report(medians)
    print(f"{SECTION}\n\n{body}")
    if not options.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
