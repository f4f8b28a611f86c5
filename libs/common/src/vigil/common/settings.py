"""Settings shared by every service; each service subclasses with its own env prefix.

Shared infrastructure settings (`VIGIL_NATS_URL`, `VIGIL_STORE_URL`, `VIGIL_LOG_*`,
`VIGIL_STREAM_REPLICAS`) are read under one global name so that `vigil up` and a
Kubernetes ConfigMap set them once.
The bus credentials (`VIGIL_NATS_USER` with `VIGIL_NATS_PASSWORD_FILE` or
`VIGIL_NATS_PASSWORD`) are one NATS user of `vigil.common.bus_permissions`; the password
is a `SecretStr`, never shown in a log line or an error.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vigil.common.errors import InvalidInput
from vigil.common.store import Retention


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list set in the environment as `a,b,c` (not as JSON).
type CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)]


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a port on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _global(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


TRACE_URL_ENV = "VIGIL_TRACE_URL"
TRACE_URL_DESCRIPTION = (
    "A trace UI's URL with `{trace_id}` in it (e.g. https://jaeger.example.com/trace/"
    "{trace_id}): the API's executions and the sinks' reports link to their trace; no link "
    "when unset (VIGIL_TRACE_URL, one setting for ingest and sink)."
)


def checked_trace_url(value: str | None) -> str | None:
    """`VIGIL_TRACE_URL` as given, refused when it has no `{trace_id}` to fill in."""
    if value is not None and "{trace_id}" not in value:
        msg = f"{TRACE_URL_ENV} must contain `{{trace_id}}`, where the trace id goes"
        raise ValueError(msg)
    return value


# A NATS user name becomes a subject token of its inbox prefix (`_INBOX.<user>`).
_NATS_USER = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class BusCredentials:
    """The NATS user a process connects as. `repr` never shows the password."""

    user: str
    password: SecretStr


def redacted_url(url: str) -> str:
    """`url` without a password in it, for log lines and errors (`nats://u:***@host`)."""
    parts = []
    for server in url.split(","):
        # nats-py takes `u:p@host:4222` without a scheme too: read it as nats:// would.
        bare = "://" not in server
        split = urlsplit(f"nats://{server.strip()}" if bare else server.strip())
        if split.password is None:
            parts.append(server)
            continue
        # Host and port as written: parsing the port would fail on a malformed one.
        netloc = f"{split.username}:***@{split.netloc.rpartition('@')[2]}"
        redacted = urlunsplit(split._replace(netloc=netloc))
        parts.append(redacted.removeprefix("nats://") if bare else redacted)
    return ",".join(parts)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        # An error must not print what it was given: that may be a password or a token.
        hide_input_in_errors=True,
    )

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=_global("VIGIL_NATS_URL"),
        description="NATS server URL(s), comma-separated: every node of a cluster, so a "
        "service reconnects to another when the one it uses goes away.",
    )
    nats_user: str | None = Field(
        default=None,
        validation_alias=_global("VIGIL_NATS_USER"),
        description="NATS user to connect as (one per service, DESIGN §14); unset = anonymous.",
    )
    nats_password_file: Path | None = Field(
        default=None,
        validation_alias=_global("VIGIL_NATS_PASSWORD_FILE"),
        description="File holding the NATS user's password (first line), read at connect.",
    )
    nats_password: SecretStr | None = Field(
        default=None,
        validation_alias=_global("VIGIL_NATS_PASSWORD"),
        description="The NATS user's password, where a file is not an option.",
    )
    nats_provision: bool = Field(
        default=True,
        validation_alias=_global("VIGIL_NATS_PROVISION"),
        description="Create or update the streams and the config bucket at start-up; false "
        "where a provisioner does it and this service's NATS user may not (DESIGN §14).",
    )
    store_url: str = Field(
        default="sqlite:///.vigil/vigil.db",
        validation_alias=_global("VIGIL_STORE_URL"),
        description="Execution store: sqlite:///path or mongodb://host:port/db.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        validation_alias=_global("VIGIL_LOG_FORMAT"),
        description="json in production; console for a terminal; auto picks by isatty.",
    )
    log_level: str = Field(default="info", validation_alias=_global("VIGIL_LOG_LEVEL"))
    ops_host: str = Field(default="127.0.0.1", description="Bind address of /healthz, /metrics.")
    ops_port: int = Field(default=0, description="Port of /healthz, /readyz, /metrics; 0 = any.")
    shutdown_grace_seconds: float = Field(
        default=10.0, description="Seconds to finish in-flight work after SIGTERM."
    )
    retention_days: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_global("VIGIL_RETENTION_DAYS"),
        description="Days finished executions, alerts, artifacts and deliveries are kept.",
    )
    stream_max_age_days: float = Field(
        default=7.0,
        validation_alias=_global("VIGIL_ALERTS_MAX_AGE_DAYS"),
        description="Days the ALERTS stream keeps alerts for replay.",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=_global("VIGIL_STREAM_REPLICAS"),
        description="Copies JetStream keeps of every stream and of the config bucket, set "
        "when provisioning creates or updates them: 1 on a single nats-server (embedded), "
        "3 on a 3-node cluster (production); at most 5, and never more than the servers.",
    )

    @model_validator(mode="after")
    def _credentials_complete(self) -> Self:
        if self.nats_password is not None and self.nats_password_file is not None:
            msg = "set VIGIL_NATS_PASSWORD or VIGIL_NATS_PASSWORD_FILE, not both"
            raise ValueError(msg)
        has_password = self.nats_password is not None or self.nats_password_file is not None
        if self.nats_user is None and has_password:
            msg = "a NATS password is set but VIGIL_NATS_USER is not: set the user too"
            raise ValueError(msg)
        if self.nats_user is not None and not has_password:
            msg = (
                f"VIGIL_NATS_USER={self.nats_user} needs a password: set "
                "VIGIL_NATS_PASSWORD_FILE (or VIGIL_NATS_PASSWORD)"
            )
            raise ValueError(msg)
        if self.nats_user is not None and not _NATS_USER.match(self.nats_user):
            msg = (
                f"VIGIL_NATS_USER {self.nats_user!r} may hold only letters, digits, '-' and "
                "'_' (it names the user's reply subjects)"
            )
            raise ValueError(msg)
        return self

    def bus_credentials(self) -> BusCredentials | None:
        """The NATS user and password to connect with; None to connect anonymously.

        The password file is read now, not at start-up, so a rotated Secret is picked up by
        the next connection; InvalidInput names the file when it cannot be used.
        """
        if self.nats_user is None:
            return None
        if self.nats_password is not None:
            return BusCredentials(user=self.nats_user, password=self.nats_password)
        assert self.nats_password_file is not None  # the validator above
        path = self.nats_password_file
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            msg = f"VIGIL_NATS_PASSWORD_FILE {path}: cannot read it ({exc.strerror})"
            raise InvalidInput(msg) from exc
        except UnicodeDecodeError as exc:
            msg = f"VIGIL_NATS_PASSWORD_FILE {path}: not UTF-8 text"
            raise InvalidInput(msg) from exc
        password = lines[0].strip() if lines else ""
        if not password:
            msg = f"VIGIL_NATS_PASSWORD_FILE {path}: the file is empty"
            raise InvalidInput(msg)
        return BusCredentials(user=self.nats_user, password=SecretStr(password))

    def retention(self) -> Retention:
        keep = timedelta(days=self.retention_days)
        return Retention(executions=keep, alerts=keep, artifacts=keep, deliveries=keep)


class SecretSettings(ServiceSettings):
    """A service that resolves Secret values at use (ingest, the sink): where it reads them.

    Shared names, so `vigil up` and a ConfigMap set them once for both services.
    """

    secrets_from: Literal["file", "kubernetes"] = Field(
        default="file",
        validation_alias=_global("VIGIL_SECRETS_FROM"),
        description="`file`: `kind: Secret` YAML under `definitions`; `kubernetes`: the "
        "Secret objects, through the API (needs `get` on secrets).",
    )
    definitions: Path = Field(
        default=Path("examples/quickstart"),
        validation_alias=_global("VIGIL_DEFINITIONS"),
        description="File mode: the folder (or file) of definitions the controller reads.",
    )
    secrets_cache_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=_global("VIGIL_SECRETS_CACHE_SECONDS"),
        description="Kubernetes mode: seconds a Secret read from the API is reused (a "
        "rotation takes effect within this many seconds).",
    )
