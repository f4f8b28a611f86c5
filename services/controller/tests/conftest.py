"""The controller's suites use the project-wide real-infrastructure fixtures (`nats_url`: a
fresh nats-server per test), defined once in `tests/conftest.py`, and kmock as the
Kubernetes API server (`k8s`, from `tests.support.kubernetes`)."""

from tests.conftest import fresh_nats_server, nats_url
from tests.support.kubernetes import k8s, kmock_options

__all__ = ["fresh_nats_server", "k8s", "kmock_options", "nats_url"]
