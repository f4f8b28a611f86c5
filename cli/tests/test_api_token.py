"""The API token of `vigil up`: generated once, private to its owner, kept across runs."""

from __future__ import annotations

import stat
from pathlib import Path

from vigil.cli.apitoken import api_access, ensure_token_file


def test_the_token_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    path, created = ensure_token_file(tmp_path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token.startswith("vigil_")
    assert len(token) > 40

    again, created_again = ensure_token_file(tmp_path)
    assert (again, created_again) == (path, False)
    assert again.read_text().strip() == token


def test_ingest_is_told_where_the_token_is_or_that_auth_is_off(tmp_path: Path) -> None:
    generated = api_access(data_dir=tmp_path, no_auth=False, environ={})
    assert generated.env == {
        "VIGIL_INGEST_API_AUTH": "tokens",
        "VIGIL_INGEST_API_TOKENS_FILE": str(tmp_path / "api-token"),
    }
    given = api_access(data_dir=tmp_path / "other", no_auth=False, environ={"VIGIL_API_TOKEN": "x"})
    assert given.env == {"VIGIL_INGEST_API_AUTH": "tokens"}
    assert not (tmp_path / "other").exists()
    off = api_access(data_dir=tmp_path / "off", no_auth=True, environ={})
    assert off.env == {"VIGIL_INGEST_API_AUTH": "none"}
