"""The terminal views (`vigil executions`, `execution`, `alerts`, `definitions`) as a user
runs them: the real command in a subprocess, against ingest's real app served by uvicorn
on loopback, with the shipped fakes behind it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tests.support.definitions import alertmanager_source
from tests.support.documents import make_execution, make_finished_run, make_occurrence
from tests.support.ingest import fake_ingest, report_statuses
from vigil.cli import views
from vigil.common.adapters.ops import HttpServer
from vigil.common.documents import DeliveryRecord
from vigil.common.store import Store
from vigil.common.testing import (
    EPOCH,
    definitions_view,
    sqlite_store,
)
from vigil.ingest.access import FixedTokens, TokenTable
from vigil.ingest.api import build_app

TOKEN = "operator-token-0123456789"


@dataclass(frozen=True, slots=True, kw_only=True)
class Running:
    url: str
    store: Store


@contextlib.asynccontextmanager
async def vigil(folder: Path) -> AsyncIterator[Running]:
    async with sqlite_store(folder) as store:
        view = definitions_view(alertmanager_source("ops"))
        report_statuses(
            view,
            "ops",
            [
                ("Source", "am", True, "valid"),
                ("Workflow", "broken", False, "spec.steps[0].cli.command: must not be empty"),
            ],
            at=EPOCH,
        )
        ingest = fake_ingest(store, view)
        app = build_app(ingest, checks={}, tokens=FixedTokens(TokenTable.of(TOKEN)))
        server = HttpServer(app, host="127.0.0.1", port=0)
        task = asyncio.create_task(server.serve())
        await server.listening.wait()
        try:
            yield Running(url=f"http://127.0.0.1:{server.port}", store=store)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str


async def run(*args: str, token: str | None = TOKEN) -> Ran:
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_API_TOKEN", "VIGIL_URL")}
    if token is not None:
        env["VIGIL_API_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vigil.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def test_executions_lists_newest_first_filters_and_prints_the_apis_json(
    tmp_path: Path,
) -> None:
    async with vigil(tmp_path) as up:
        await up.store.insert_execution(
            make_finished_run("01ADONE", at=EPOCH + timedelta(minutes=1))
        )
        await up.store.insert_execution(
            make_execution("01BBUSY", at=EPOCH, namespace="ops", workflow="disk", state="running")
        )
        listed = await run("executions", "--url", up.url)
        running = await run("executions", "--url", up.url, "--state", "running")
        searched = await run("executions", "--url", up.url, "--search", "pod=API", "--limit", "1")
        missed = await run("executions", "--url", up.url, "--search", "pod=web")
        recent = await run("executions", "--url", up.url, "--since", "7d")
        as_json = await run("executions", "--url", up.url, "--output", "json")

    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split() == ["ID", "WORKFLOW", "ALERT", "STATE", "STARTED", "(UTC)", "DURATION"]
    assert [r.split()[0] for r in rows] == ["01BBUSY", "01ADONE"]
    assert "KubePodCrashLooping" in rows[1]
    assert "succeeded" in rows[1]
    assert rows[1].rstrip().endswith("4.0 s")
    assert [r.split()[0] for r in running.out.splitlines()[1:]] == ["01BBUSY"]
    assert searched.code == 0, searched.err
    assert [r.split()[0] for r in searched.out.splitlines()[1:]] == ["01BBUSY"]
    assert missed.out == "no executions\n"
    assert recent.out == "no executions\n"  # they started in January 2026, by the real clock
    page = json.loads(as_json.out)
    assert [e["id"] for e in page["items"]] == ["01BBUSY", "01ADONE"]


async def test_one_execution_shows_its_timeline_command_output_and_deliveries(
    tmp_path: Path,
) -> None:
    async with vigil(tmp_path) as up:
        await up.store.insert_execution(
            make_finished_run("01ADONE", at=EPOCH + timedelta(minutes=1))
        )
        await up.store.record_delivery(
            DeliveryRecord(
                id="d1",
                idempotency_key="01ADONE/tell/1/log",
                execution_id="01ADONE",
                step="tell",
                sink="log",
                sink_type="log",
                attempt=1,
                status="delivered",
                at=EPOCH,
            )
        )
        shown = await run("execution", "01ADONE", "--url", up.url)
        missing = await run("execution", "01NOPE", "--url", up.url)

    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == "KubePodCrashLooping pod=api-7f9c  [succeeded]"
    timeline = lines[lines.index("") + 1 :]
    assert timeline[0].split() == ["STEP", "KIND", "STATE", "ATTEMPT", "AT", "DURATION"]
    assert timeline[1].split() == ["measure", "cli", "succeeded", "2", "+1.0", "s", "2.0", "s"]
    assert "$ df -h '/var/lib data'" in lines
    assert "  /dev/sda1  93%  /var <lib>" in lines
    assert "full output: artifact 01ADONE/measure/2/output" in lines
    assert "title: Disk 93% full on db-1" in lines
    assert "delivery to log (log) attempt 1: delivered" in lines
    assert missing.code == 1
    assert "404 no execution 01NOPE" in missing.err


async def test_alerts_are_found_by_matcher_and_a_bad_matcher_is_named(tmp_path: Path) -> None:
    async with vigil(tmp_path) as up:
        for fingerprint, team in (("fp-db", "db"), ("fp-web", "web")):
            await up.store.record_alert(
                make_occurrence(
                    at=EPOCH,
                    fingerprint=fingerprint,
                    namespace="ops",
                    labels={"alertname": "DiskFull", "team": team, "severity": "critical"},
                )
            )
        found = await run("alerts", "--url", up.url, "--match", 'team="db"')
        bad = await run("alerts", "--url", up.url, "--match", "team=~(")

    assert found.code == 0, found.err
    rows = found.out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["ops/alertmanager/fp-db"]
    assert "DiskFull severity=critical" in rows[0]
    assert bad.code == 1
    assert "vigil alerts: /api/v1/alerts: 400 match:" in bad.err


async def test_definitions_say_which_are_invalid_and_why(tmp_path: Path) -> None:
    async with vigil(tmp_path) as up:
        shown = await run("definitions", "--url", up.url)
    assert shown.code == 0
    assert any(
        line.split()[:3] == ["Workflow", "ops/broken", "INVALID"] and "must not be empty" in line
        for line in shown.out.splitlines()
    ), shown.out
    assert "1 definition(s) invalid" in shown.err


async def test_a_missing_token_and_an_unreachable_vigil_are_one_line_each(
    tmp_path: Path,
) -> None:
    async with vigil(tmp_path) as up:
        refused = await run("executions", "--url", up.url, token=None)
    assert refused.code == 1
    assert refused.err.startswith(f"vigil executions: {up.url} wants an API token: set VIGIL_")
    gone = await run("definitions", "--url", up.url)  # the server has stopped
    assert gone.code == 1
    assert f"cannot reach Vigil at {up.url}" in gone.err
    assert gone.err.count("\n") == 1


async def test_watch_prints_a_line_per_new_execution_or_change_of_state(tmp_path: Path) -> None:
    async with vigil(tmp_path) as up:
        loop = asyncio.get_running_loop()
        await up.store.insert_execution(
            make_execution("01AFIRST", at=EPOCH, namespace="ops", workflow="disk", state="running")
        )
        changes = iter(
            [
                make_execution(
                    "01BNEXT", at=EPOCH, namespace="ops", workflow="disk", state="running"
                ),
                None,  # nothing new: nothing printed
            ]
        )

        def between_rounds(_: float) -> None:
            change = next(changes)
            if change is not None:
                insert = up.store.insert_execution(change)
                asyncio.run_coroutine_threadsafe(insert, loop).result(timeout=10)

        out = io.StringIO()
        api = views.Api(url=up.url, token=TOKEN)
        await asyncio.to_thread(
            views.watch_executions,
            api,
            views.ExecutionQuery(),
            output="table",
            out=out,
            rounds=3,
            sleep=between_rounds,
        )

    header, *rows = out.getvalue().splitlines()
    assert header.startswith("ID")
    assert [r.split()[0] for r in rows] == ["01AFIRST", "01BNEXT"]
