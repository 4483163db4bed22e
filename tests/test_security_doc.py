"""docs/SECURITY.md names the test behind each mitigation: every name it cites must exist, so the
threat model cannot silently point at a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `tests/test_x.py::test_y` sets the file; a following `::test_z` refers to the same file
_REF = re.compile(r"`(tests/[\w/]+\.py)?::(test_\w+)")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_cited_test_exists() -> None:
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    current: str | None = None
    missing: list[str] = []
    cited = 0
    cache: dict[str, set[str]] = {}
    for m in _REF.finditer(text):
        current = m.group(1) or current
        assert current is not None, f"::{m.group(2)} cited before any file"
        path = ROOT / current
        if current not in cache:
            cache[current] = _tests_in(path) if path.exists() else set()
        cited += 1
        if m.group(2) not in cache[current]:
            missing.append(f"{current}::{m.group(2)}")
    assert cited > 50
    assert not missing, "docs/SECURITY.md cites tests that do not exist: " + ", ".join(missing)
