"""docs/benchmarks.md: each benchmark owns one `## ` section and replaces only that one."""

from __future__ import annotations

import re
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(title: str, body: str, *, document: Path = DOCUMENT) -> None:
    """Replace (or append) the section `title` of the document, keeping the others."""
    text = document.read_text() if document.exists() else "# Benchmarks\n"
    section = f"{title}\n\n{body}\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text(text)
