"""Our own repository holds no key-shaped string: the tests generate keys at run time."""

from __future__ import annotations

from pathlib import Path

from tests.scan.helpers import run_scan

ROOT = Path(__file__).resolve().parents[2]


def test_this_repository_tree_and_history_are_clean() -> None:
    tree = run_scan(["-f", "json", "--no-baseline"], ROOT)
    assert tree.code == 0 and tree.findings() == [], tree
    assert tree.json()["scanned"]["files"] > 20
    history = run_scan(["--history", "-f", "json", "--no-baseline"], ROOT)
    assert history.code == 0 and history.findings() == [], history
    assert history.json()["scanned"]["blobs"] > 20
