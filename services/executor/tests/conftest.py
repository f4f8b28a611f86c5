"""Fixtures of the executor's suites: kmock as the Kubernetes API server (`k8s`, from
`tests.support.kubernetes`) and fake model servers (`primary`, `fallback`, from
`tests.support.llm`)."""

from tests.support.kubernetes import k8s, kmock_options
from tests.support.llm import fallback, primary

__all__ = ["fallback", "k8s", "kmock_options", "primary"]
