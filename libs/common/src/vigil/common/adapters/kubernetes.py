"""A Kubernetes API client configured as kubectl would be: `KUBECONFIG` (or
`~/.kube/config`), else the pod's service account. Used by the controller and the executor
in Kubernetes mode; kubernetes-asyncio comes with the `kubernetes` extra of vigil-common,
so the services that never talk to Kubernetes do not carry it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from kubernetes_asyncio import client, config

from vigil.common.errors import InvalidInput


@contextlib.asynccontextmanager
async def api_client() -> AsyncIterator[client.ApiClient]:
    """A client configured from `KUBECONFIG` (or ~/.kube/config), else in-cluster."""
    configuration = client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"  # expanded by the loader
    try:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (config.ConfigException, FileNotFoundError, TypeError) as from_file:
        try:
            # kubernetes-asyncio leaves this one unannotated.
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as in_cluster:
            msg = (
                f"Kubernetes mode needs a kubeconfig ({kubeconfig}: {from_file}) or to run in a "
                f"pod with a service account ({in_cluster})"
            )
            raise InvalidInput(msg) from in_cluster
    async with client.ApiClient(configuration=configuration) as api:
        yield api
