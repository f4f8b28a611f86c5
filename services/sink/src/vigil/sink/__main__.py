"""`python -m vigil.sink`."""

from __future__ import annotations

from vigil.common.runtime import service_main
from vigil.sink.app import run
from vigil.sink.settings import SinkSettings


def main() -> None:
    service_main(service="sink", settings=SinkSettings(), run=run)


if __name__ == "__main__":
    main()
