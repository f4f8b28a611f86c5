"""The API token of `vigil up`: `VIGIL_API_TOKEN` when set, else one kept in the data dir.

On first start a random token is written to `<data-dir>/api-token` (mode 0600, created
exclusively so two starts cannot race) and ingest reads that file as its tokens file: more
lines, with scopes, may be added to it, and changes apply without a restart.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_FILE = "api-token"  # noqa: S105 (a file name, not a token)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiAccess:
    """What ingest is told about API auth, and how to tell the user."""

    env: dict[str, str]
    hint: str


def ensure_token_file(data_dir: Path) -> tuple[Path, bool]:
    """The data dir's token file, created with a new token if missing; True if created."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"vigil_{secrets.token_urlsafe(32)}\n")
    return path, True


def api_access(*, data_dir: Path, no_auth: bool, environ: dict[str, str]) -> ApiAccess:
    if no_auth:
        return ApiAccess(
            env={"VIGIL_INGEST_API_AUTH": "none"},
            hint="the API is open to anyone who can reach the port (--no-auth)",
        )
    if environ.get("VIGIL_API_TOKEN"):
        return ApiAccess(
            env={"VIGIL_INGEST_API_AUTH": "tokens"},
            hint='send "Authorization: Bearer $VIGIL_API_TOKEN" to /api/v1',
        )
    path, _ = ensure_token_file(data_dir)
    return ApiAccess(
        env={"VIGIL_INGEST_API_AUTH": "tokens", "VIGIL_INGEST_API_TOKENS_FILE": str(path)},
        hint=f'export VIGIL_API_TOKEN=$(head -n1 {path}) and send "Authorization: Bearer '
        '$VIGIL_API_TOKEN" to /api/v1',
    )
