"""Fixtures of libs/common's suites: kmock as the Kubernetes API server (`k8s`, from
`tests.support.kubernetes`) for the Kubernetes adapters."""

from tests.support.kubernetes import k8s, kmock_options

__all__ = ["k8s", "kmock_options"]
