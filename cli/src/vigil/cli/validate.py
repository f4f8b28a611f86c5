"""`vigil validate PATH`: check definitions offline, exactly as the controller would."""

from __future__ import annotations

import sys
from pathlib import Path

from vigil.common.validation import read_documents, validate_documents


def validate(path: Path) -> int:
    documents, errors = read_documents(path)
    report = validate_documents(documents)
    report.errors[:0] = errors
    for status in report.statuses:
        mark = "ok   " if status.ready else "error"
        detail = "" if status.ready else f": {' '.join(status.message.split())}"
        sys.stdout.write(
            f"{mark} {status.kind} {status.namespace}/{status.name} ({status.origin}){detail}\n"
        )
    for problem in report.errors:
        sys.stdout.write(f"error {' '.join(problem.split())}\n")
    if not report.statuses and not report.errors:
        sys.stdout.write(f"error {path}: no Source, Workflow or Sink found\n")
        return 1
    invalid = len(report.problems())
    sys.stdout.write(
        f"{len(report.definitions)} valid, {invalid} invalid\n"
        if invalid
        else f"{len(report.definitions)} valid\n"
    )
    return 1 if invalid else 0
