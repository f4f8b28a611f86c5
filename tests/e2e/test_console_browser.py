"""The console in a real browser: Debian's chromium driven by Playwright, against `vigil up`
with the quickstart's definitions (and one slow workflow, to have something to cancel).

What a user does and sees: sign in with the API token, watch a new execution appear
without reloading, open it (timeline, output), cancel a running step, find an alert by
matcher. Every page is also checked for the accessibility basics (a label for every
control, one h1, state badges readable against their colour) and saved as a screenshot
under `.artifacts/console/`. Skipped, saying so, where chromium is not installed
(`make chromium` installs Debian's package where apt can).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.nats import free_port
from tests.support.platform import Platform, WebhookReceiver, running_platform

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
CHROMIUM = Path(os.environ.get("VIGIL_TEST_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / ".artifacts" / "console"
WAIT_MS = 20_000  # for the platform to act; pages themselves answer at once
# The page checks, run in the browser: the problems found, as sentences.
CHECKS = (Path(__file__).parent / "console_checks.js").read_text()

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM}: run `make chromium`"
    ),
]

SLOW = """\
apiVersion: vigil.dev/v1alpha1
kind: Workflow
metadata: {name: slow-check, namespace: demo}
spec:
  trigger:
    sources: [alertmanager]
    matchers: ['alertname="SlowCheck"']
  steps:
    - name: look_for_a_while
      cli: {command: [sleep, "300"]}
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver
) -> Iterator[Platform]:
    definitions = tmp_path_factory.mktemp("definitions")
    for file in QUICKSTART.glob("*.yaml"):
        text = file.read_text().replace("http://127.0.0.1:9095/notifications", receiver.url)
        (definitions / file.name).write_text(text)
    (definitions / "slow.yaml").write_text(SLOW)
    with running_platform(definitions=definitions, data_dir=tmp_path_factory.mktemp("data")) as up:
        yield up


@pytest.fixture(scope="module", autouse=True)
def artifacts() -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # The system's chromium; --no-sandbox because CI runs as root in a container.
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, platform: Platform) -> AsyncIterator[Page]:
    """A signed-in executions page (the sign-in form filled as a user would) whose live
    stream is open, so that what a test sends next reaches it."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    await opened.goto(f"{platform.url}/executions")
    await expect(opened.get_by_role("heading", name="Sign in")).to_be_visible()
    assert platform.token is not None
    await opened.get_by_label("API token").fill(platform.token)
    await opened.get_by_role("button", name="Sign in").click()
    await opened.wait_for_url("**/executions")
    # The server opens the stream once it hears the events: an execution started before
    # that would only show after a reload.
    await expect(opened.locator("#live-status")).to_contain_text("Live")
    try:
        yield opened
    finally:
        await context.close()


def post_alerts(platform: Platform, alerts: list[dict[str, Any]]) -> None:
    body: dict[str, Any] = json.loads((QUICKSTART / "alerts.json").read_text())
    body["alerts"] = alerts
    answer = httpx.post(f"{platform.url}/hooks/demo/alertmanager", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def alert(name: str, fingerprint: str, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} in the browser test"},
        "startsAt": "2026-11-24T09:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


async def accessible(page: Page, name: str) -> None:
    """The basics, on the page as rendered: every control has a label, one h1 and no
    skipped heading level, every state badge at least 4.5:1 against its colour; then a
    screenshot for the artefacts."""
    problems = await page.evaluate(CHECKS)
    assert problems == [], problems
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_a_new_execution_appears_without_a_reload_and_opens_with_its_timeline(
    page: Page, platform: Platform
) -> None:
    await accessible(page, "executions-before")
    await page.evaluate("window.notReloaded = true")
    await expect(page.locator("#live-status")).to_contain_text("Live")

    sent = time.monotonic()
    post_alerts(
        platform,
        [alert("HostDiskFillingUp", "b0b0b0b0b0b0b001", instance="db-9:9100", severity="critical")],
    )
    row = page.locator("#executions tbody tr", has_text="db-9:9100")
    await expect(row).to_be_visible(timeout=WAIT_MS)
    appeared = time.monotonic() - sent
    print(f"webhook → row on the open page: {appeared * 1000:.0f} ms")  # noqa: T201 - a figure
    assert await page.evaluate("window.notReloaded === true"), "the page was reloaded"
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=WAIT_MS)
    await accessible(page, "executions")

    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    lanes = page.locator(".timeline li")
    await expect(lanes).to_have_count(4)  # measure, critical, report, escalate
    await expect(lanes.first).to_contain_text("measure: succeeded")
    await expect(page.locator("#step-measure pre.command")).to_have_text("df -P -- /")
    await expect(page.locator("#step-measure pre.output").last).to_contain_text("Filesystem")
    await expect(page.locator("#step-report")).to_contain_text("delivered")
    await accessible(page, "execution")


async def test_cancel_asks_first_and_stops_the_running_step(page: Page, platform: Platform) -> None:
    post_alerts(platform, [alert("SlowCheck", "c0c0c0c0c0c0c001", instance="db-7:9100")])
    row = page.locator("#executions tbody tr", has_text="SlowCheck")
    await expect(row.locator(".badge")).to_have_text("running", timeout=WAIT_MS)
    await row.get_by_role("link").click()
    await expect(page.locator("#step-look_for_a_while .badge")).to_have_text(
        "running", timeout=WAIT_MS
    )

    await page.get_by_role("link", name="Cancel…").click()
    await expect(page.get_by_role("heading", name="Cancel this execution?")).to_be_visible()
    await accessible(page, "cancel")
    await page.get_by_label("Reason (optional)").fill("not needed after all")
    await page.get_by_role("button", name="Cancel the execution").click()
    await expect(page.get_by_role("status")).to_have_text("Cancellation requested.")

    # Without JavaScript on this page: reload until the engine has stopped the step.
    deadline = time.monotonic() + WAIT_MS / 1000
    state = ""
    while time.monotonic() < deadline:
        await page.reload()
        state = await page.locator("#step-look_for_a_while .badge").inner_text()
        if state == "cancelled":
            break
        await page.wait_for_timeout(200)
    assert state == "cancelled"
    await expect(page.locator("h1 .badge")).to_have_text("cancelled")


async def test_the_alert_search_finds_by_matcher(page: Page, platform: Platform) -> None:
    post_alerts(
        platform,
        [
            alert("HostDiskFillingUp", "d0d0d0d0d0d0d001", instance="db-5:9100", team="db"),
            alert("HostDiskFillingUp", "d0d0d0d0d0d0d002", instance="web-5:9100", team="web"),
        ],
    )
    await page.get_by_role("link", name="Alerts").click()
    await page.get_by_label("Matcher").fill('team="db"')
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("#alerts tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("db-5:9100")
    await accessible(page, "alerts")

    await rows.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Executions it started")).to_be_visible()
    await accessible(page, "alert")


async def test_the_definitions_page_lists_every_definition_valid(page: Page) -> None:
    await page.get_by_role("link", name="Definitions").click()
    await expect(page.locator("td", has_text="demo/disk-filling-up")).to_be_visible()
    await expect(page.locator("td", has_text="demo/slow-check")).to_be_visible()
    await expect(page.locator("code.copy")).to_contain_text("/hooks/demo/alertmanager")
    await expect(page.locator(".badge", has_text="invalid")).to_have_count(0)
    await accessible(page, "definitions")


async def test_the_overview_charts_the_last_hour(page: Page, platform: Platform) -> None:
    post_alerts(
        platform,
        [alert("HostDiskFillingUp", "e0e0e0e0e0e0e001", instance="db-3:9100", severity="warning")],
    )
    await expect(page.locator("#executions tbody tr", has_text="db-3:9100")).to_be_visible(
        timeout=WAIT_MS
    )
    await page.get_by_role("link", name="Overview").click()
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    await expect(page.locator("#started-caption")).to_contain_text("executions started")
    await expect(page.locator("#started-caption")).not_to_contain_text("0 executions started")
    await expect(page.get_by_role("cell", name="ALERTS")).to_be_visible()
    await accessible(page, "overview")


async def test_without_javascript_every_page_and_action_still_works(
    browser: Browser, platform: Platform
) -> None:
    """Only the live updates need a script: signing in, reading, searching and re-running
    are links and forms."""
    context = await browser.new_context(java_script_enabled=False)
    plain = await context.new_page()
    try:
        await plain.goto(f"{platform.url}/executions")
        assert platform.token is not None
        await plain.get_by_label("API token").fill(platform.token)
        await plain.get_by_role("button", name="Sign in").click()
        await plain.wait_for_url("**/executions")
        await expect(plain.locator("#live-status")).to_be_hidden()
        post_alerts(
            platform,
            [alert("HostDiskFillingUp", "f0f0f0f0f0f0f001", instance="db-8:9100",
                   severity="critical")],
        )  # fmt: skip
        await plain.get_by_label("Alert labels contain").fill("db-8")
        await plain.get_by_role("button", name="Filter").click()
        row = plain.locator("#executions tbody tr", has_text="db-8:9100")
        deadline = time.monotonic() + WAIT_MS / 1000
        while await row.count() == 0 and time.monotonic() < deadline:
            await plain.wait_for_timeout(200)
            await plain.reload()  # no live updates without a script: the user reloads
        await row.get_by_role("link").click()
        await expect(plain.get_by_role("heading", name="Timeline")).to_be_visible()
        await plain.get_by_role("link", name="Re-run…").click()
        await plain.get_by_role("button", name="Start a new execution").click()
        # "Execution requested" until the engine starts it; the page reloads itself (meta).
        await expect(plain.get_by_role("heading", level=1)).to_contain_text(
            "HostDiskFillingUp", timeout=WAIT_MS
        )
        await expect(plain.locator("h1 .badge")).to_be_visible()
    finally:
        await context.close()


async def test_the_pages_read_on_a_phone(browser: Browser, platform: Platform) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    phone = await context.new_page()
    try:
        await phone.goto(f"{platform.url}/login")
        assert platform.token is not None
        await phone.get_by_label("API token").fill(platform.token)
        await phone.get_by_role("button", name="Sign in").click()
        await phone.wait_for_url("**/executions")
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the executions page scrolls sideways: {width}px"
        await phone.screenshot(path=str(SHOTS / "executions-phone.png"), full_page=True)
    finally:
        await context.close()
