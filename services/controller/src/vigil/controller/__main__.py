"""`python -m vigil.controller`."""

from __future__ import annotations

from vigil.common.runtime import service_main
from vigil.controller.app import run
from vigil.controller.settings import ControllerSettings


def main() -> None:
    service_main(service="controller", settings=ControllerSettings(), run=run)


if __name__ == "__main__":
    main()
