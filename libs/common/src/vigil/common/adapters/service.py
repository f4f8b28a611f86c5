"""What every service's composition root does first and last, written once.

Open the store, connect to NATS and provision the streams, and close both whatever
happens; the readiness checks `/readyz` runs (NATS connected, store answering, definitions
loaded); the ops server; the Secret resolver of the services that use Secret values. Each
`app.py` adds only its own handlers and loops.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import structlog

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.ops import HttpServer, ReadinessCheck, ops_app
from vigil.common.adapters.secret_files import SecretFiles
from vigil.common.adapters.stores import open_store
from vigil.common.definitions import DefinitionsView
from vigil.common.errors import TransientError
from vigil.common.secrets import SecretResolver
from vigil.common.settings import SecretSettings, ServiceSettings
from vigil.common.store import Store
from vigil.common.streams import stream_specs

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def opened_store(settings: ServiceSettings) -> AsyncIterator[Store]:
    store = await open_store(settings.store_url, retention=settings.retention())
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def secret_resolver(settings: SecretSettings) -> AsyncIterator[SecretResolver]:
    """Where this service reads Secret values at use: the definitions folder or the API."""
    if settings.secrets_from == "file":
        if not settings.definitions.exists():
            # Not fatal: a Source or Sink without Secrets works; one with them is refused,
            # naming the Secret and this folder.
            log.warning("secrets_folder_missing", definitions=str(settings.definitions))
        yield SecretFiles(settings.definitions)
        return
    # kubernetes-asyncio is imported only in Kubernetes mode.
    from vigil.common.adapters.kubernetes import api_client
    from vigil.common.adapters.kubernetes_secrets import KubernetesSecrets

    async with api_client() as api:
        yield KubernetesSecrets(api, ttl=settings.secrets_cache_seconds)


@contextlib.asynccontextmanager
async def connected_bus(settings: ServiceSettings, *, service: str) -> AsyncIterator[JetStreamBus]:
    """A bus connected as `vigil-{service}` with the service's NATS user, if it has one.

    With `nats_provision` (the default) every stream of DESIGN §3 and the config bucket
    are provisioned first; without it they must exist (`vigil.common.adapters.provisioning`
    made them), and a service user with least privilege could not make them anyway.
    """
    bus = await JetStreamBus.connect(
        settings.nats_url, name=f"vigil-{service}", credentials=settings.bus_credentials()
    )
    try:
        if settings.nats_provision:
            try:
                await provision(bus, settings)
            except TransientError as exc:
                if settings.nats_user is None:
                    raise
                msg = (
                    f"{exc} (as NATS user {settings.nats_user}: if it may not change streams, "
                    "set VIGIL_NATS_PROVISION=false and provision with the provisioner user)"
                )
                raise TransientError(msg) from exc
        yield bus
    finally:
        await bus.close()


async def provision(bus: JetStreamBus, settings: ServiceSettings) -> None:
    """Create or update every stream of DESIGN §3 and the config bucket, each with
    `VIGIL_STREAM_REPLICAS` copies."""
    await bus.ensure_streams(
        stream_specs(
            alerts_max_age_days=settings.stream_max_age_days,
            replicas=settings.stream_replicas,
        )
    )
    await bus.ensure_config_bucket(replicas=settings.stream_replicas)


def readiness_checks(
    *,
    bus: JetStreamBus,
    store: Store | None = None,
    definitions: DefinitionsView | None = None,
) -> dict[str, ReadinessCheck]:
    """The `/readyz` checks of a service using these dependencies."""

    async def nats_ready() -> None:
        if not bus.connected:
            raise TransientError("not connected to NATS")

    checks: dict[str, ReadinessCheck] = {"nats": nats_ready}
    if store is not None:
        checks["store"] = store.ping
    if definitions is not None:
        view = definitions

        async def definitions_ready() -> None:
            if not view.ready.is_set():
                raise TransientError("definitions not loaded")

        checks["definitions"] = definitions_ready
    return checks


def ops_server(settings: ServiceSettings, checks: Mapping[str, ReadinessCheck]) -> HttpServer:
    """`/healthz`, `/readyz` and `/metrics` on the service's ops address."""
    return HttpServer(ops_app(checks), host=settings.ops_host, port=settings.ops_port)
