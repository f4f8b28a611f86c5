"""The data directory is its owner's alone: created 0700, and closed when found open."""

from __future__ import annotations

import stat
from pathlib import Path

from vigil.cli.lock import private_dir


def test_a_new_data_dir_is_created_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "data"
    assert private_dir(path) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_an_open_data_dir_is_closed_and_says_how_it_was(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    assert private_dir(path) == 0o755
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert private_dir(path) is None
