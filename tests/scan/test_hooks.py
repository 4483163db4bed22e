"""The hooks, proven through the real pre-commit framework and real git hooks: a commit or push
holding a key is refused, a clean one passes, in every way teams invoke them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault.scan.hooks import MARKER, shim
from tests.scan.helpers import Repo, key, run_scan

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)


def test_repository_shims_are_the_installed_text() -> None:
    for hook in ("pre-commit", "pre-push"):
        path = ROOT / "hooks" / hook
        assert path.read_text() == shim(hook)
        assert os.access(path, os.X_OK)


@pytest.fixture
def hook_repo(tmp_path: Path) -> str:
    """A git repository holding this project's .pre-commit-hooks.yaml, committed (the framework
    only reads committed content)."""
    path = tmp_path / "hookrepo"
    path.mkdir()
    shutil.copy(ROOT / ".pre-commit-hooks.yaml", path / ".pre-commit-hooks.yaml")
    r = Repo(path)
    r.git("init", "-q")
    r.commit("hooks")
    return str(path)


@pytest.fixture
def framework_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")  # `keyvault` of this interpreter
    env.pop("PRE_COMMIT", None)
    return env


def _config(repo: Repo, hook_repo: str, ids: list[str]) -> None:
    rev = Repo(Path(hook_repo)).git("rev-parse", "HEAD")
    # language: system uses the keyvault installed here instead of pip-installing this
    # repository into a fresh environment (that is test_framework_installs_the_package, slow)
    hooks = "".join(f"      - id: {i}\n        language: system\n" for i in ids)
    repo.write(".pre-commit-config.yaml", f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n{hooks}")
    repo.git("add", ".pre-commit-config.yaml")


def _pc(repo: Repo, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=repo.path, env=env,
                          capture_output=True, text=True, timeout=180)


def _git(repo: Repo, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo.path, env=env, capture_output=True, text=True, timeout=180)


def test_pre_commit_framework_commit_hook(repo: Repo, hook_repo: str, framework_env: dict[str, str]) -> None:
    _config(repo, hook_repo, ["keyvault-scan"])
    assert _pc(repo, framework_env, "install").returncode == 0
    repo.write("clean.py", "print('ok')\n")
    repo.git("add", "clean.py")
    ok = _git(repo, framework_env, "commit", "-m", "clean")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    k = key()
    repo.write("settings.py", f"ANTHROPIC_API_KEY = '{k}'\n")
    repo.git("add", "settings.py")
    refused = _git(repo, framework_env, "commit", "-m", "leak")
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "settings.py:1:22 anthropic-api-key" in out and k not in out
    assert repo.git("log", "--format=%s") == "clean"


def test_pre_commit_run_all_files_does_not_pass_silently(repo: Repo, hook_repo: str,
                                                         framework_env: dict[str, str]) -> None:
    """The peers' false all-clear: nothing staged, filenames passed. Here it finds the key."""
    k = key()
    repo.write("old.env", f"KEY={k}\n")
    repo.commit("committed before the hook existed")
    _config(repo, hook_repo, ["keyvault-scan"])
    repo.git("commit", "-q", "-m", "add config")
    res = _pc(repo, framework_env, "run", "--all-files")
    assert res.returncode == 1 and "old.env:1:5 anthropic-api-key" in res.stdout, res.stdout + res.stderr
    res = _pc(repo, framework_env, "run", "--files", "old.env")
    assert res.returncode == 1


def test_pre_commit_framework_push_hook(repo: Repo, hook_repo: str, framework_env: dict[str, str],
                                        tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    _config(repo, hook_repo, ["keyvault-scan-push"])
    repo.write("a.txt", "a\n")
    repo.commit("base")
    assert _pc(repo, framework_env, "install", "--hook-type", "pre-push").returncode == 0
    repo.git("remote", "add", "origin", str(remote))
    ok = _git(repo, framework_env, "push", "-q", "origin", "main")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    repo.write("b.txt", f"{key()}\n")
    repo.commit("leak")
    repo.git("rm", "-q", "b.txt")
    repo.commit("hide it again")  # the key is in a pushed commit, not in the tip
    refused = _git(repo, framework_env, "push", "origin", "main")
    assert refused.returncode != 0
    assert "b.txt:1:1 anthropic-api-key" in refused.stdout + refused.stderr
    # a new branch whose commits are clean passes
    repo.git("checkout", "-q", "-b", "clean", "origin/main")
    repo.write("c.txt", "fine\n")
    repo.commit("fine")
    ok = _git(repo, framework_env, "push", "-q", "origin", "clean")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_plain_git_hooks_installed_by_keyvault(repo: Repo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    r = run_scan(["install", "--pre-push"], repo.path, command="hook")
    assert r.code == 0, r
    hooks = Path(repo.git("rev-parse", "--absolute-git-dir")) / "hooks"
    assert MARKER in (hooks / "pre-commit").read_text() and MARKER in (hooks / "pre-push").read_text()
    repo.write("a.txt", "a\n")
    repo.commit("clean")
    repo.write("x.env", f"K={key()}\n")
    repo.git("add", "x.env")
    refused = subprocess.run(["git", "commit", "-m", "leak"], cwd=repo.path, capture_output=True, text=True)
    assert refused.returncode != 0 and "x.env:1:3" in refused.stdout + refused.stderr
    repo.git("commit", "-q", "--no-verify", "-m", "forced")
    repo.git("remote", "add", "origin", str(remote))
    push = subprocess.run(["git", "push", "origin", "main"], cwd=repo.path, capture_output=True, text=True)
    assert push.returncode != 0 and "x.env:1:3" in push.stdout + push.stderr


def test_hook_install_respects_core_hooks_path_and_worktrees(repo: Repo, tmp_path: Path) -> None:
    repo.write("a", "a\n")
    repo.commit("a")
    repo.git("config", "core.hooksPath", ".githooks")
    r = run_scan(["install"], repo.path, command="hook")
    assert r.code == 0, r
    assert MARKER in (repo.path / ".githooks" / "pre-commit").read_text()
    repo.commit("share the hooks")  # a relative hooksPath is read in each worktree's checkout
    wt = tmp_path / "wt"
    repo.git("worktree", "add", "-q", str(wt))
    (wt / "leak.txt").write_text(key())
    subprocess.run(["git", "add", "leak.txt"], cwd=wt, check=True)
    refused = subprocess.run(["git", "commit", "-m", "x"], cwd=wt, capture_output=True, text=True)
    assert refused.returncode != 0 and "leak.txt:1:1" in refused.stdout + refused.stderr


def test_hook_installed_in_main_repo_guards_linked_worktrees(repo: Repo, tmp_path: Path) -> None:
    repo.write("a", "a\n")
    repo.commit("a")
    wt = tmp_path / "wt2"
    repo.git("worktree", "add", "-q", str(wt))
    assert run_scan(["install"], wt, command="hook").code == 0  # from inside the worktree
    assert MARKER in (repo.path / ".git" / "hooks" / "pre-commit").read_text()
    (repo.path / "leak.txt").write_text(key())
    repo.git("add", "leak.txt")
    refused = subprocess.run(["git", "commit", "-m", "x"], cwd=repo.path, capture_output=True, text=True)
    assert refused.returncode != 0


def test_hook_install_never_overwrites_a_foreign_hook_without_force(repo: Repo) -> None:
    hooks = repo.path / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\necho mine\n")
    r = run_scan(["install"], repo.path, command="hook")
    assert r.code != 0 and "not keyvault's hook" in r.err and "--force" in r.err
    assert (hooks / "pre-commit").read_text() == "#!/bin/sh\necho mine\n"
    r = run_scan(["install", "--force"], repo.path, command="hook")
    assert r.code == 0
    assert (hooks / "pre-commit.keyvault-backup").read_text() == "#!/bin/sh\necho mine\n"
    r = run_scan(["install"], repo.path, command="hook")
    assert r.code == 0 and "already installed" in r.out


def test_hook_install_outside_a_repository(tmp_path: Path) -> None:
    r = run_scan(["install"], tmp_path, command="hook")
    assert r.code == 2 and "not inside a git repository" in r.err


@pytest.mark.slow
def test_framework_installs_the_package(repo: Repo, framework_env: dict[str, str]) -> None:
    """`language: python` as shipped: pre-commit pip-installs this repository (needs the
    package registry, so it only runs with the slow tests)."""
    clone = repo.path.parent / "self"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    repo.write("x.env", f"K={key()}\n")
    repo.git("add", "x.env")
    res = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(clone), "keyvault-scan"],
                         cwd=repo.path, env=framework_env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 1 and "x.env:1:3 anthropic-api-key" in res.stdout, res.stdout + res.stderr


def test_plain_hook_sees_commit_a_and_commit_path(repo: Repo) -> None:
    """`git commit -a` and `git commit PATH` stage into a temporary index (GIT_INDEX_FILE): the
    hook must read that one, not the regular index."""
    repo.write("a.txt", "a\n")
    repo.write("b.txt", "b\n")
    repo.commit("base")
    assert run_scan(["install"], repo.path, command="hook").code == 0
    repo.write("a.txt", f"a\n{key()}\n")  # tracked, modified, not staged
    refused = subprocess.run(["git", "commit", "-a", "-m", "x"], cwd=repo.path, capture_output=True, text=True)
    assert refused.returncode != 0 and "a.txt:2:1" in refused.stdout + refused.stderr
    refused = subprocess.run(["git", "commit", "-m", "x", "a.txt"], cwd=repo.path, capture_output=True, text=True)
    assert refused.returncode != 0
    repo.write("b.txt", "b\nclean\n")
    ok = subprocess.run(["git", "commit", "-m", "y", "b.txt"], cwd=repo.path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
