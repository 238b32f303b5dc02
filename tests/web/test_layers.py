"""The web package stands beside agent and analyzer, below the shell: it imports store,
ingest, signature, vmcore and foundation, never agent, analyzer, symbol_cache or crashfleet."""

from __future__ import annotations

import ast
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
FORBIDDEN = {"agent", "analyzer", "symbol_cache", "crashfleet"}


def test_web_imports_only_lower_layers() -> None:
    seen: dict[str, set[str]] = {}
    for path in sorted(WEB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                seen.setdefault(name.split(".")[0], set()).add(path.name)
    bad = {top: files for top, files in seen.items() if top in FORBIDDEN}
    assert not bad, f"web imports upward or sideways: {bad}"
    assert {"store", "foundation"} <= set(seen)
