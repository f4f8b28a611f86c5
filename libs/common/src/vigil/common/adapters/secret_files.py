"""File mode's `SecretResolver`: `kind: Secret` YAML in the definitions folder.

The folder (or file) is the one the controller reads; `vigil up` hands it to ingest and the
sink as `VIGIL_DEFINITIONS`. Every resolution lists and stats the YAML files (off the
event loop) and parses again only a file whose modification time, size or inode changed,
so a rotated value is used from the next request on, without a restart. A file that cannot
be read or parsed contributes no Secret and is named in the error: a broken edit never
keeps a revoked value alive. As in validation (`vigil.common.validation`), a Secret defined
twice takes its last definition in file order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vigil.common.errors import InvalidInput
from vigil.common.secrets import SecretKey, read_secret, value_of
from vigil.common.validation import load_yaml_documents, yaml_files, yaml_problem

type Stamp = tuple[int, int, int]  # (mtime_ns, size, inode): an edit or a rename changes it
type Secrets = dict[tuple[str, str], Mapping[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _FileSecrets:
    stamp: Stamp
    secrets: Secrets = field(default_factory=dict)
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Index:
    secrets: Secrets = field(default_factory=dict)
    problems: tuple[str, ...] = ()


class SecretFiles:
    """Secrets from the YAML under `path`, re-read when a file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._files: dict[Path, _FileSecrets] = {}
        self._index = _Index()
        self._lock = threading.Lock()  # resolutions run in worker threads

    async def resolve(self, secret: SecretKey) -> str:
        index = await asyncio.to_thread(self._current)
        values = index.secrets.get((secret.namespace, secret.name))
        where = f"in {self._path}"
        if values is None and index.problems:
            where += f" (unreadable: {'; '.join(index.problems)})"
        return value_of(secret, values, where=where)

    def _current(self) -> _Index:
        with self._lock:
            if not self._path.exists():
                self._files.clear()
                self._index = _Index(problems=(f"{self._path}: no such file or directory",))
                return self._index
            stamps = _stamps(yaml_files(self._path))
            if stamps == {file: known.stamp for file, known in self._files.items()}:
                return self._index
            for file, stamp in stamps.items():
                known = self._files.get(file)
                if known is None or known.stamp != stamp:
                    self._files[file] = _read(file, stamp)
            for gone in self._files.keys() - stamps.keys():
                del self._files[gone]
            merged: Secrets = {}
            problems: list[str] = []
            for file in sorted(self._files):
                merged.update(self._files[file].secrets)
                if self._files[file].problem is not None:
                    problems.append(f"{file}: {self._files[file].problem}")
            self._index = _Index(secrets=merged, problems=tuple(problems))
            return self._index


def _stamps(files: list[Path]) -> dict[Path, Stamp]:
    stamps: dict[Path, Stamp] = {}
    for file in files:
        try:
            status = file.stat()
        except OSError:
            continue  # removed since it was listed: it has no Secrets any more
        stamps[file] = (status.st_mtime_ns, status.st_size, status.st_ino)
    return stamps


def _read(file: Path, stamp: Stamp) -> _FileSecrets:
    """The Secrets of one file, or the reason it has none (stamped before reading, so a
    write during the read changes the stamp and the file is read again)."""
    try:
        documents = load_yaml_documents(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return _FileSecrets(stamp=stamp, problem=f"not valid YAML: {yaml_problem(exc)}")
    except (OSError, UnicodeDecodeError) as exc:
        return _FileSecrets(stamp=stamp, problem=f"unreadable: {exc}")
    secrets: Secrets = {}
    for number, body in enumerate(documents, start=1):
        if not isinstance(body, dict) or (body.get("kind"), body.get("apiVersion")) != (
            "Secret",
            "v1",
        ):
            continue
        try:
            document = read_secret(body)
        except InvalidInput as exc:
            return _FileSecrets(stamp=stamp, problem=f"document {number}: Secret: {exc}")
        secrets[(document.namespace, document.name)] = document.values
    return _FileSecrets(stamp=stamp, secrets=secrets)
