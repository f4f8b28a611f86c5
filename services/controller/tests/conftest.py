"""The controller's suites use the project-wide real-infrastructure fixtures (`nats_url`: a
fresh nats-server per test), defined once in `tests/conftest.py`, and kmock as the
Kubernetes API server (`k8s`), made to answer as a real one (`tests.support.kubernetes`)."""

from collections.abc import AsyncIterator
from typing import Any

import kmock as kmock_package
import pytest

from tests.conftest import fresh_nats_server, nats_url
from tests.support.kubernetes import VigilApiServer, closing_client, k8s_fixture

__all__ = ["fresh_nats_server", "k8s", "kmock_options", "nats_url"]


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": VigilApiServer, "client_fct": closing_client}


@pytest.fixture
async def k8s(
    kmock: kmock_package.KubernetesEmulator,
) -> AsyncIterator[kmock_package.KubernetesEmulator]:
    async for server in k8s_fixture(kmock):
        yield server
