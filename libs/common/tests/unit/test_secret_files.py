"""File mode's Secret resolver (`SecretFiles`) on a real folder: values from `stringData`
and `data`, a rotation or a deletion seen at the next resolution without a restart, files
parsed again only when they change, and errors that name the Secret, the key and the
folder without quoting anything from the files."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from vigil.common.adapters.secret_files import SecretFiles
from vigil.common.errors import TransientError
from vigil.common.secrets import SecretKey, SecretUnavailable

TOKEN = SecretKey(namespace="ops", name="ingest-token", key="token")


def secret_yaml(name: str = "ingest-token", *, token: str = "first-token") -> str:  # noqa: S107
    return f"""apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: ops}}
stringData: {{token: {token}}}
"""


SOURCE = """apiVersion: vigil.dev/v1alpha1
kind: Source
metadata: {name: am, namespace: ops}
spec:
  type: alertmanager
  auth: {bearerTokenSecretRef: {name: ingest-token, key: token}}
"""


def replace_atomically(path: Path, text: str) -> None:
    """As editors and Kubernetes volume updates do: a new file renamed over the old."""
    swap = path.with_name(f".{path.name}.swap")
    swap.write_text(text, encoding="utf-8")
    swap.replace(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    definitions = tmp_path / "definitions"
    (definitions / "nested").mkdir(parents=True)
    (definitions / "source.yaml").write_text(SOURCE, encoding="utf-8")
    (definitions / "nested" / "secrets.yaml").write_text(secret_yaml(), encoding="utf-8")
    return definitions


async def test_a_value_is_read_from_string_data_or_base64_data_anywhere_in_the_folder(
    folder: Path,
) -> None:
    encoded = base64.b64encode(b"https://hooks.example.com/T0").decode()
    (folder / "hook.yml").write_text(
        f"""apiVersion: v1
kind: Secret
metadata: {{name: hook, namespace: ops}}
data: {{url: {encoded}}}
""",
        encoding="utf-8",
    )
    secrets = SecretFiles(folder)

    assert await secrets.resolve(TOKEN) == "first-token"
    assert (
        await secrets.resolve(SecretKey(namespace="ops", name="hook", key="url"))
        == "https://hooks.example.com/T0"
    )


async def test_a_rotated_value_is_used_at_the_next_resolution(folder: Path) -> None:
    secrets = SecretFiles(folder)
    file = folder / "nested" / "secrets.yaml"
    assert await secrets.resolve(TOKEN) == "first-token"

    replace_atomically(file, secret_yaml(token="second-token"))
    assert await secrets.resolve(TOKEN) == "second-token"

    file.write_text(secret_yaml(token="third-token-written-in-place"), encoding="utf-8")
    assert await secrets.resolve(TOKEN) == "third-token-written-in-place"


async def test_an_unchanged_file_is_not_parsed_again(folder: Path) -> None:
    """The cache is keyed by each file's mtime, size and inode: a change that keeps all
    three (here forged with utime) is not seen; touching the file makes it seen."""
    secrets = SecretFiles(folder)
    file = folder / "nested" / "secrets.yaml"
    assert await secrets.resolve(TOKEN) == "first-token"
    before = file.stat()

    with file.open("r+", encoding="utf-8") as same_inode:
        same_inode.write(secret_yaml(token="forgedtoken"))  # as long as "first-token"
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert file.stat().st_size == before.st_size
    assert await secrets.resolve(TOKEN) == "first-token"

    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert await secrets.resolve(TOKEN) == "forgedtoken"


async def test_a_deleted_secret_is_unavailable_naming_it_and_the_folder(folder: Path) -> None:
    secrets = SecretFiles(folder)
    assert await secrets.resolve(TOKEN) == "first-token"

    (folder / "nested" / "secrets.yaml").unlink()

    with pytest.raises(SecretUnavailable) as raised:
        await secrets.resolve(TOKEN)
    assert str(raised.value) == f"Secret ops/ingest-token is not defined in {folder}"
    assert raised.value.secret == TOKEN
    assert isinstance(raised.value, TransientError)


async def test_a_missing_key_names_the_secret_the_key_and_the_folder(folder: Path) -> None:
    secrets = SecretFiles(folder)

    with pytest.raises(SecretUnavailable) as raised:
        await secrets.resolve(SecretKey(namespace="ops", name="ingest-token", key="password"))

    assert str(raised.value) == (f"Secret ops/ingest-token has no key 'password' in {folder}")


async def test_a_secret_in_another_namespace_is_not_this_one(folder: Path) -> None:
    secrets = SecretFiles(folder)

    with pytest.raises(SecretUnavailable, match="Secret demo/ingest-token is not defined"):
        await secrets.resolve(SecretKey(namespace="demo", name="ingest-token", key="token"))


async def test_a_broken_edit_makes_its_secrets_unavailable_without_quoting_the_file(
    folder: Path,
) -> None:
    """A revoked value is not kept alive by a typo, and the error (logged, and named in a
    503) carries the file and the position, not the line PyYAML would quote."""
    secrets = SecretFiles(folder)
    assert await secrets.resolve(TOKEN) == "first-token"
    file = folder / "nested" / "secrets.yaml"

    broken = secret_yaml(token="leaked-if-quoted").replace("leaked-if-quoted}", "leaked-if-quoted")
    replace_atomically(file, broken)  # the closing brace is missing

    with pytest.raises(SecretUnavailable) as raised:
        await secrets.resolve(TOKEN)
    message = str(raised.value)
    assert message == (
        f"Secret ops/ingest-token is not defined in {folder} (unreadable: {file}: not valid "
        "YAML: expected ',' or '}', but got '<stream end>' (line 5, column 1))"
    )
    assert "leaked-if-quoted" not in message  # PyYAML's own message quotes the line


async def test_a_secret_that_is_not_base64_is_unavailable_naming_the_field(folder: Path) -> None:
    secrets = SecretFiles(folder)
    replace_atomically(
        folder / "nested" / "secrets.yaml",
        secret_yaml().replace("stringData: {token: first-token}", "data: {token: '*'}"),
    )

    with pytest.raises(SecretUnavailable, match=r"document 1: Secret: data\.token is not base64"):
        await secrets.resolve(TOKEN)


async def test_a_single_file_of_definitions_works_as_a_folder_does(folder: Path) -> None:
    file = folder / "nested" / "secrets.yaml"
    secrets = SecretFiles(file)
    assert await secrets.resolve(TOKEN) == "first-token"

    replace_atomically(file, secret_yaml(token="second-token"))

    assert await secrets.resolve(TOKEN) == "second-token"


async def test_a_folder_that_does_not_exist_is_named_in_the_error(tmp_path: Path) -> None:
    secrets = SecretFiles(tmp_path / "nowhere")

    with pytest.raises(SecretUnavailable) as raised:
        await secrets.resolve(TOKEN)

    assert str(raised.value) == (
        f"Secret ops/ingest-token is not defined in {tmp_path / 'nowhere'} "
        f"(unreadable: {tmp_path / 'nowhere'}: no such file or directory)"
    )


async def test_a_secret_defined_twice_takes_its_last_definition_in_file_order(
    folder: Path,
) -> None:
    (folder / "zz-later.yaml").write_text(secret_yaml(token="later-token"), encoding="utf-8")

    assert await SecretFiles(folder).resolve(TOKEN) == "later-token"
