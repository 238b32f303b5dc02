"""The house plan's size rule (docs/architecture.md): modules under 500 lines and functions
under 80 in the packages, so each stays around one concept. Rule tables and data are exempt,
named here with the reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["vmcore", "foundation", "signature", "store", "ingest", "symbol_cache", "agent",
            "analyzer", "web", "crashfleet"]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Rule tables and data, not logic: an ordered table reads best in one place.
EXEMPT_MODULES = {"vmcore/_oops_rules.py"}


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES if (ROOT / pkg).is_dir()
            for p in sorted((ROOT / pkg).rglob("*.py"))
            if "migrations/versions" not in p.as_posix()]


def test_packages_found() -> None:
    assert len(_modules()) > 80


def test_no_module_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules()
            if (n := p.read_text().count("\n")) > MAX_MODULE_LINES
            and str(p.relative_to(ROOT)) not in EXEMPT_MODULES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_80_lines() -> None:
    long = {}
    for p in _modules():
        rel = str(p.relative_to(ROOT))
        if rel in EXEMPT_MODULES:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{rel}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
