"""Signing in to the console and acting from it, through the real ASGI app with the shipped
fakes (`tests.support.console`): a token into a cookie and back out, and that an action
(cancel, re-run) asks first, needs scope operate and a form from the console itself, and
publishes what the API would."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.console import (
    OPERATOR,
    READER,
    console,
    csrf_of,
    finished_run,
    running,
)
from vigil.common.messages import CancelRequested, RunRequested
from vigil.ingest.access import CONSOLE_COOKIE, FixedTokens, csrf_token, parse_tokens

# --- signing in ------------------------------------------------------------------------


async def test_a_page_without_a_token_sends_the_browser_to_sign_in_and_back(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        asked = await ui.http.get("/executions?state=running")
        assert asked.status_code == 303
        location = urlsplit(asked.headers["location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": ["/executions?state=running"]}

        form = await ui.http.get(asked.headers["location"])
        assert form.status_code == 200
        assert 'value="/executions?state=running"' in form.text
        assert '<label for="token">API token</label>' in form.text

        signed = await ui.http.post(
            "/login", data={"token": READER, "next": "/executions?state=running"}
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/executions?state=running"
        cookie = signed.headers["set-cookie"].lower()
        assert f"{CONSOLE_COOKIE}=" in cookie
        assert f'{CONSOLE_COOKIE}="' not in cookie  # a value that needs no quoting
        assert "httponly" in cookie
        assert "samesite=strict" in cookie

        page = await ui.http.get("/executions?state=running")
        assert page.status_code == 200
        assert "<h1>Executions</h1>" in page.text


async def test_a_wrong_token_is_refused_on_the_sign_in_page_and_sets_no_cookie(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        refused = await ui.http.post("/login", data={"token": "guess-0123456789", "next": "/"})
        assert refused.status_code == 401
        assert "That token is not valid" in refused.text
        assert "set-cookie" not in refused.headers
        empty = await ui.http.post("/login", data={"token": "", "next": "/"})
        assert empty.status_code == 401
        assert "Paste an API token" in empty.text
        assert (await ui.http.get("/executions")).status_code == 303


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "", "executions"]
)
async def test_sign_in_only_goes_back_to_a_path_of_this_console(
    tmp_path: Path, target: str
) -> None:
    async with console(tmp_path) as ui:
        signed = await ui.http.post("/login", data={"token": OPERATOR, "next": target})
        assert signed.headers["location"] == "/executions"


async def test_the_cookie_opens_the_console_but_not_the_api(tmp_path: Path) -> None:
    """A script uses a bearer header; the cookie counts for pages only."""
    async with console(tmp_path) as ui:
        await ui.sign_in()
        assert (await ui.http.get("/executions")).status_code == 200
        api = await ui.http.get("/api/v1/executions")
        assert api.status_code == 401


async def test_signing_out_forgets_the_cookie(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.sign_in()
        page = await ui.http.get("/executions")
        out = await ui.http.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert (await ui.http.get("/executions")).status_code == 303


async def test_without_auth_the_console_is_open_and_has_no_sign_in(tmp_path: Path) -> None:
    async with console(tmp_path, tokens=None) as ui:
        assert (await ui.http.get("/executions")).status_code == 200
        login = await ui.http.get("/login")
        assert login.status_code == 303
        assert login.headers["location"] == "/executions"


# --- cancel and re-run -----------------------------------------------------------------


async def test_cancel_asks_first_then_publishes_the_request_and_comes_back(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=1)))
        await ui.sign_in(OPERATOR)
        page = await ui.http.get("/executions/01BUSY")
        assert '<a class="button danger" href="/executions/01BUSY/cancel">Cancel…</a>' in page.text

        confirm = await ui.http.get("/executions/01BUSY/cancel")
        assert confirm.status_code == 200
        assert 'action="/executions/01BUSY/cancel"' in confirm.text
        assert ui.bus.published == []

        done = await ui.http.post(
            "/executions/01BUSY/cancel",
            data={"csrf": csrf_of(confirm.text), "reason": "wrong pod"},
        )
        assert done.status_code == 303
        assert done.headers["location"].startswith("/executions/01BUSY?notice=")
        [request] = ui.bus.messages(CancelRequested)
        assert (request.execution_id, request.reason) == ("01BUSY", "wrong pod")
        assert ui.bus.published[0].msg_id == "cancel/01BUSY"
        back = await ui.http.get(done.headers["location"])
        assert "Cancellation requested." in back.text


async def test_a_form_without_the_consoles_csrf_token_or_from_another_origin_is_refused(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=1)))
        await ui.sign_in(OPERATOR)

        forged = await ui.http.post("/executions/01BUSY/cancel", data={"reason": "x"})
        assert forged.status_code == 403
        assert "stale or was not posted from this console" in forged.text
        guessed = await ui.http.post("/executions/01BUSY/cancel", data={"csrf": csrf_token(READER)})
        assert guessed.status_code == 403
        elsewhere = await ui.http.post(
            "/executions/01BUSY/cancel",
            data={"csrf": csrf_token(OPERATOR)},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403
        assert "posted from https://evil.example" in elsewhere.text
        assert ui.bus.published == []


async def test_a_reader_may_not_cancel_even_with_a_good_form(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(running("01BUSY", at=timedelta(minutes=1)))
        await ui.sign_in(READER)
        confirm = await ui.http.get("/executions/01BUSY/cancel")
        assert confirm.status_code == 403
        refused = await ui.http.post("/executions/01BUSY/cancel", data={"csrf": csrf_token(READER)})
        assert refused.status_code == 403
        assert ui.bus.published == []


async def test_a_finished_execution_cannot_be_cancelled(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        await ui.store.insert_execution(finished_run("01DONE", at=timedelta(minutes=1)))
        await ui.sign_in(OPERATOR)
        page = await ui.http.get("/executions/01DONE")
        assert "Cancel…" not in page.text
        assert (await ui.http.get("/executions/01DONE/cancel")).status_code == 409
        late = await ui.http.post("/executions/01DONE/cancel", data={"csrf": csrf_of(page.text)})
        assert late.status_code == 409
        assert "already finished (succeeded)" in late.text
        assert ui.bus.published == []


async def test_rerun_starts_the_same_workflow_with_the_same_alert(tmp_path: Path) -> None:
    async with console(tmp_path) as ui:
        original = finished_run("01DONE", at=timedelta(minutes=1), state="failed")
        await ui.store.insert_execution(original)
        await ui.sign_in(OPERATOR)
        confirm = await ui.http.get("/executions/01DONE/rerun")
        assert "Start a new execution" in confirm.text

        started = await ui.http.post(
            "/executions/01DONE/rerun", data={"csrf": csrf_of(confirm.text)}
        )

        assert started.status_code == 303
        [request] = ui.bus.messages(RunRequested)
        assert (request.namespace, request.workflow) == ("ops", "disk")
        assert request.alert == original.alert
        assert started.headers["location"] == f"/executions/{request.execution_id}?requested=1"


async def test_a_token_with_cookie_syntax_in_it_still_signs_in(tmp_path: Path) -> None:
    """A tokens file may hold any non-blank characters; the cookie carries them encoded."""
    odd = 'semi;colon "quoted" =equal, comma ünï'.replace(" ", "_")
    async with console(
        tmp_path, tokens=FixedTokens(parse_tokens(f"{odd} read\n", origin="t"))
    ) as ui:
        await ui.sign_in(odd)
        assert (await ui.http.get("/executions")).status_code == 200
        ui.http.cookies.clear()
        ui.http.cookies.set(CONSOLE_COOKIE, "not*base64")
        assert (await ui.http.get("/executions")).status_code == 303
