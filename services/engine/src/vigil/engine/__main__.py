"""`python -m vigil.engine`."""

from __future__ import annotations

from vigil.common.runtime import service_main
from vigil.engine.app import run
from vigil.engine.settings import EngineSettings


def main() -> None:
    service_main(service="engine", settings=EngineSettings(), run=run)


if __name__ == "__main__":
    main()
