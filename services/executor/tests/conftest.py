"""kmock as the Kubernetes API server for the pod runner's suite (`k8s`, from
`tests.support.kubernetes`)."""

from tests.support.kubernetes import k8s, kmock_options

__all__ = ["k8s", "kmock_options"]
