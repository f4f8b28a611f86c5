"""Secret values by reference: the `SecretResolver` port.

Definitions in the config bucket and every message carry references only (a Secret's name
and key, in the namespace of the resource that names it). The process that uses a value
asks a resolver for it at that moment: ingest when it checks a Source's credentials, the
sink when it addresses a webhook. So a value lives in memory of the process using it, and
in its store (the definitions folder, the Kubernetes API), nowhere else.

Adapters: `vigil.common.adapters.secret_files` (file mode: `kind: Secret` YAML in the
definitions folder) and `vigil.common.adapters.kubernetes_secrets` (Secret objects through
the API). The fake is `vigil.common.testing.MemorySecrets`. The controller checks that a
reference can be resolved (`vigil.common.validation`) without publishing the value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.common.errors import InvalidInput, TransientError


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretKey:
    """One value of one Secret: what a definition's `...SecretRef` points at."""

    namespace: str
    name: str
    key: str

    @property
    def secret(self) -> str:
        return f"Secret {self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.secret} key {self.key!r}"


class SecretUnavailable(TransientError):
    """A Secret's value cannot be read now; the message names the Secret and why.

    Transient: the controller published the definition only after it found the Secret and
    its key, so a value missing at use time is a change in flight (a rotation, a Secret
    being recreated, the API out of reach), and a definition whose Secret stays missing is
    withdrawn by the controller at its next reconcile.
    """

    def __init__(self, secret: SecretKey, problem: str) -> None:
        super().__init__(f"{secret.secret} {problem}")
        self.secret = secret


class SecretResolver(Protocol):
    async def resolve(self, secret: SecretKey) -> str:
        """The current value of `secret`.

        Raises SecretUnavailable, naming the Secret, when it or its key is missing or its
        store cannot be read.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretDocument:
    """A `kind: Secret` document (YAML or API object), its values decoded."""

    namespace: str
    name: str
    values: Mapping[str, str]


def _mapping(body: Mapping[str, Any], field_name: str) -> Mapping[str, Any]:
    value = body.get(field_name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = f"{field_name} must be a mapping, got {type(value).__name__}"
        raise InvalidInput(msg)
    return value


def read_secret(body: Mapping[str, Any]) -> SecretDocument:
    """The values of a Secret body: `stringData` as is, `data` base64-decoded (UTF-8).

    Raises InvalidInput naming the field when the body is not a usable Secret.
    """
    meta = _mapping(body, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("metadata.name is required")
    values: dict[str, str] = {}
    for key, value in _mapping(body, "stringData").items():
        values[str(key)] = str(value)
    for key, value in _mapping(body, "data").items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"data.{key} is not base64 UTF-8: {exc}") from exc
    return SecretDocument(namespace=str(meta.get("namespace", "default")), name=name, values=values)


def value_of(secret: SecretKey, values: Mapping[str, str] | None, *, where: str) -> str:
    """`secret`'s value among the Secret's `values` (None: no such Secret `where`)."""
    if values is None:
        raise SecretUnavailable(secret, f"is not defined {where}")
    if secret.key not in values:
        raise SecretUnavailable(secret, f"has no key {secret.key!r} {where}")
    return values[secret.key]
