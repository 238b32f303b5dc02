"""Writing a benchmark's results into docs/benchmarks.md, one ``## <Title>`` section each."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_section"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace section ``## title`` (up to the next ``## `` heading) with ``body``, or append
    it; the other sections stay as they are."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    text = re.sub(r"\n?<!-- /?bench:[a-z]+ -->\n?", "\n", text)  # markers of an older layout
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text.rstrip("\n") + "\n")
