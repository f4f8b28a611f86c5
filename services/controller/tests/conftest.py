"""The controller's suites use the project-wide real-infrastructure fixtures (`nats_url`: a
fresh nats-server per test), defined once in `tests/conftest.py`."""

from tests.conftest import fresh_nats_server, nats_url

__all__ = ["fresh_nats_server", "nats_url"]
