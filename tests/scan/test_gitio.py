"""The lean git runner and git's path quoting."""

from __future__ import annotations

import os

import pytest

from keyvault.scan import gitio
from tests.scan.helpers import Repo


@pytest.mark.parametrize("raw, path", [
    (b"plain/file.txt", "plain/file.txt"),
    (b'"caf\\303\\251.txt"', "caf\u00e9.txt"),
    (b'"tab\\there"', "tab\there"),
    (b'"quo\\"te"', 'quo"te'),
    (b'"back\\\\slash"', "back\\slash"),
    (b'"new\\nline"', "new\nline"),
])
def test_unquote_path(raw: bytes, path: str) -> None:
    assert gitio.unquote_path(raw) == path


def test_run_with_and_without_posix_spawn(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned = gitio.run(["rev-parse", "--show-toplevel"], cwd=str(repo.path))
    code, out, _ = gitio.run(["hash-object", "--stdin"], cwd=str(repo.path), stdin=b"x" * (3 << 20))
    assert code == 0 and len(out.strip()) == 40
    monkeypatch.delattr(os, "posix_spawnp")
    assert gitio.run(["rev-parse", "--show-toplevel"], cwd=str(repo.path)) == spawned
    with pytest.raises(gitio.GitError, match="git rev-parse --verify nope failed"):
        gitio.run(["rev-parse", "--verify", "nope"], cwd=str(repo.path))
