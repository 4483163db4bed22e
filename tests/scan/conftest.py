"""Fixtures for the scanner's tests (helpers live in tests/scan/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scan.helpers import Repo

@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every git the tests run sees the same configuration, whatever the machine's is."""
    home = tmp_path_factory.mktemp("gitconfig")
    cfg = home / "gitconfig"
    cfg.write_text("[user]\n\tname = Test\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n"
                   "[protocol \"file\"]\n\tallow = always\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "PRE_COMMIT", "PRE_COMMIT_FROM_REF",
                "PRE_COMMIT_TO_REF", "PRE_COMMIT_REMOTE_NAME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "repo"
    path.mkdir()
    r = Repo(path)
    r.git("init", "-q")
    return r



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The project's convention: `slow` tests run only with KEYVAULT_SLOW=1."""
    import os

    if os.environ.get("KEYVAULT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long run: set KEYVAULT_SLOW=1")
    here = Path(__file__).parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
