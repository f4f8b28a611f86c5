"""`python -m vigil.executor`."""

from __future__ import annotations

from vigil.common.runtime import service_main
from vigil.executor.app import run
from vigil.executor.settings import ExecutorSettings


def main() -> None:
    service_main(service="executor", settings=ExecutorSettings(), run=run)


if __name__ == "__main__":
    main()
