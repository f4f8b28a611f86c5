"""`python -m vigil.common.adapters.provisioning`: create or update the JetStream layout, once.

The streams of DESIGN §3 and the config bucket, made by the `provisioner` NATS user of
`vigil.common.bus_permissions`, the only user allowed to change streams (a stream's
configuration can republish to any subject, so that right is kept from every service).
`vigil up` runs it after starting nats-server and before the services; in Kubernetes it is
a Job run at install and upgrade (deploy/nats/README.md). Services then start with
`VIGIL_NATS_PROVISION=false`. Settings as every service's: `VIGIL_NATS_URL`,
`VIGIL_NATS_USER`, `VIGIL_NATS_PASSWORD_FILE`, `VIGIL_ALERTS_MAX_AGE_DAYS`,
`VIGIL_STREAM_REPLICAS` (copies of every stream and of the bucket: 3 on a 3-node cluster).

Exit 0 once everything is in place; 1 if NATS did not let it within the deadline
(`VIGIL_PROVISION_TIMEOUT_SECONDS`, 30 by default: JetStream may still be starting); 2 for
settings that cannot work.
"""

from __future__ import annotations

import asyncio
import os
import sys

import structlog
from pydantic import ValidationError

from vigil.common.adapters.jetstream import JetStreamBus
from vigil.common.adapters.service import provision
from vigil.common.errors import InvalidInput, TransientError
from vigil.common.logging import configure_logging
from vigil.common.settings import ServiceSettings

log = structlog.get_logger("vigil.provisioning")

RETRY_SECONDS = 0.5


async def provision_bus(settings: ServiceSettings, *, timeout: float) -> None:
    """Provision, retrying transient failures until `timeout` seconds have passed.

    Raises the last TransientError then, and InvalidInput (an unreadable password file)
    at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            bus = await JetStreamBus.connect(
                settings.nats_url,
                name="vigil-provisioning",
                credentials=settings.bus_credentials(),
            )
            try:
                await provision(bus, settings)
            finally:
                await bus.close()
            return
        except TransientError as exc:
            if loop.time() + RETRY_SECONDS > deadline:
                raise
            log.info("provisioning_retried", reason=str(exc))
            await asyncio.sleep(RETRY_SECONDS)


def main() -> int:
    configure_logging(service="provisioning", fmt=os.environ.get("VIGIL_LOG_FORMAT", "auto"))
    try:
        settings = ServiceSettings()
        timeout = float(os.environ.get("VIGIL_PROVISION_TIMEOUT_SECONDS", "30"))
    except (ValidationError, ValueError) as exc:
        log.error("provisioning_refused", reason=str(exc))
        return 2
    try:
        asyncio.run(provision_bus(settings, timeout=timeout))
    except InvalidInput as exc:
        log.error("provisioning_refused", reason=str(exc))
        return 2
    except TransientError as exc:
        log.error("provisioning_failed", reason=str(exc))
        return 1
    log.info("bus_provisioned", user=settings.nats_user or "anonymous")
    return 0


if __name__ == "__main__":
    sys.exit(main())
