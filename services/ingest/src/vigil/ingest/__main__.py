"""`python -m vigil.ingest`."""

from __future__ import annotations

from vigil.common.runtime import service_main
from vigil.ingest.app import run
from vigil.ingest.settings import IngestSettings


def main() -> None:
    service_main(service="ingest", settings=IngestSettings(), run=run)


if __name__ == "__main__":
    main()
