"""File safety of the local writers (dotenv and the encrypted store), through open_backend:
symlinks out of the project, files of another user, mode 0600, and what a kill -9 leaves."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault.backends import open_backend
from keyvault.errors import PermissionDeniedError
from keyvault.testing.keygen import make_key
from tests.canary import CANARY, find_leak

OLD = make_key()


def _dotenv(directory: Path, text: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".env"
    path.write_text(text if text is not None else f"DEBUG=1\nANTHROPIC_API_KEY={OLD.reveal()}\n")
    return path


def test_dotenv_refuses_a_symlink_pointing_outside_the_project(tmp_path: Path) -> None:
    victim = tmp_path / "outside" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_text(f"ANTHROPIC_API_KEY={OLD.reveal()}\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").symlink_to(victim)
    backend = open_backend(f"dotenv://{project / '.env'}#ANTHROPIC_API_KEY")
    with pytest.raises(PermissionDeniedError, match="points outside") as info:
        backend.stage(CANARY)
    assert find_leak(str(info.value)) is None
    assert victim.read_text() == f"ANTHROPIC_API_KEY={OLD.reveal()}\n"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["authorized_keys"]


def test_dotenv_follows_a_symlink_inside_the_project_and_keeps_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    real = _dotenv(project / "config")
    (project / ".env").symlink_to(real)
    real.chmod(0o644)
    open_backend(f"dotenv://{project / '.env'}#ANTHROPIC_API_KEY").stage(CANARY)
    assert (project / ".env").is_symlink()
    assert "ANTHROPIC_API_KEY_PENDING=" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_dotenv_refuses_a_file_owned_by_another_user(tmp_path: Path) -> None:
    path = _dotenv(tmp_path / "project")
    os.chown(path, 65534, 65534)
    before = path.read_bytes()
    with pytest.raises(PermissionDeniedError, match="owned by uid 65534") as info:
        open_backend(f"dotenv://{path}#ANTHROPIC_API_KEY").stage(CANARY)
    assert find_leak(str(info.value)) is None
    assert path.read_bytes() == before and path.stat().st_uid == 65534


def test_writes_leave_mode_0600(tmp_path: Path) -> None:
    path = _dotenv(tmp_path / "project")
    path.chmod(0o644)
    backend = open_backend(f"dotenv://{path}#ANTHROPIC_API_KEY")
    backend.stage(CANARY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    backend.promote(OLD.fingerprint)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# kill -9 at the worst moment: the temp file is written and fsynced, the rename not yet done.
# The child replaces os.replace (the standard library, not keyvault) with a SIGKILL to itself.
_KILLED_BEFORE_RENAME = """
import os, signal, sys
from keyvault.keys import Secret
from keyvault.backends import open_backend
os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
open_backend(sys.argv[1]).stage(Secret(sys.stdin.read()))
"""


def _kill_mid_write(uri: str, env: dict[str, str] | None = None) -> int:
    proc = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_RENAME, uri], input=CANARY.reveal(),
                          text=True, env={**os.environ, **(env or {})}, timeout=60)
    return proc.returncode


GITIGNORE = ".env\n.env.*\n"  # the usual rules for dotenv files


def _holding_the_canary(directory: Path, allowed: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and p.name not in allowed
                  and find_leak(p.read_bytes()) is not None)


def test_kill_9_mid_write_leftover_is_ignored_by_git_private_and_removed_by_the_next_write(tmp_path: Path) -> None:
    """A temp-then-rename writer killed before the rename leaves its temp file (it held the new
    key for a moment by design). What matters: the usual ignore rules for .env keep it out of
    git, only its owner can read it, and the next write removes it."""
    project = tmp_path / "project"
    project.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", str(project)], check=True, timeout=30)
    (project / ".gitignore").write_text(GITIGNORE)
    path = _dotenv(project)
    assert _kill_mid_write(f"dotenv://{path}#ANTHROPIC_API_KEY") == -9
    assert path.read_text() == f"DEBUG=1\nANTHROPIC_API_KEY={OLD.reveal()}\n", "the .env itself is untouched"
    leftovers = sorted(p.name for p in project.iterdir() if p.is_file() and p.name not in (".env", ".gitignore"))
    holding = _holding_the_canary(project, {".env"})
    assert holding, "the kill came after the temp file was written: the premise of this test"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *leftovers], cwd=project, capture_output=True,
                             text=True, timeout=30)
    assert sorted(ignored.stdout.split()) == leftovers, f"not ignored by .env / .env.*: {leftovers}"
    for name in holding:
        assert stat.S_IMODE((project / name).stat().st_mode) == 0o600, name
    subprocess.run([*git, "add", "-A"], cwd=project, check=True, timeout=30)
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=project, capture_output=True, text=True,
                            timeout=30).stdout.split()
    assert staged == [".gitignore"]
    open_backend(f"dotenv://{path}#ANTHROPIC_API_KEY").stage(OLD)
    assert _holding_the_canary(project, {".env"}) == [], "the next write removed the leftover"


def test_kill_9_mid_write_leftover_is_removed_by_the_next_write(tmp_path: Path) -> None:
    path = _dotenv(tmp_path / "project")
    assert _kill_mid_write(f"dotenv://{path}#ANTHROPIC_API_KEY") == -9
    assert path.read_text() == f"DEBUG=1\nANTHROPIC_API_KEY={OLD.reveal()}\n"
    open_backend(f"dotenv://{path}#ANTHROPIC_API_KEY").stage(CANARY)
    assert _holding_the_canary(path.parent, set()) == [".env"]
    leftovers = [p.name for p in path.parent.iterdir() if "tmp" in p.name]
    assert leftovers == []


# the encrypted file store: the same guards on its one file

PASSPHRASE = "file safety tests (not a secret)"


def _store(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    monkeypatch.setenv("KEYVAULT_PASSPHRASE", PASSPHRASE)
    uri = f"file://{path}#prod"
    backend = open_backend(uri)
    backend.stage(OLD)
    backend.promote("")
    return uri


def test_file_store_refuses_a_symlink_pointing_outside_its_directory(tmp_path: Path, monkeypatch) -> None:
    real = tmp_path / "elsewhere" / "store.json"
    real.parent.mkdir()
    _store(monkeypatch, real)
    before = real.read_bytes()
    configured = tmp_path / "config" / "store.json"
    configured.parent.mkdir()
    configured.symlink_to(real)
    backend = open_backend(f"file://{configured}#prod")
    assert backend.read().secret == OLD  # reading through it is fine; writing is not
    with pytest.raises(PermissionDeniedError, match="points outside") as info:
        backend.stage(CANARY)
    assert find_leak(str(info.value)) is None
    assert real.read_bytes() == before and configured.is_symlink()
    assert _holding_the_canary(real.parent, set()) == [] and _holding_the_canary(configured.parent, set()) == []


def test_file_store_follows_a_symlink_inside_its_directory_and_keeps_it(tmp_path: Path, monkeypatch) -> None:
    real = tmp_path / "config" / "stores" / "store.json"
    real.parent.mkdir(parents=True)
    _store(monkeypatch, real)
    configured = tmp_path / "config" / "store.json"
    configured.symlink_to(real)
    open_backend(f"file://{configured}#prod").stage(CANARY)
    assert configured.is_symlink()
    assert open_backend(f"file://{real}#prod").read_pending().secret == CANARY
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_file_store_refuses_a_store_owned_by_another_user(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "store.json"
    uri = _store(monkeypatch, path)
    os.chown(path, 65534, 65534)
    before = path.read_bytes()
    with pytest.raises(PermissionDeniedError, match="owned by uid 65534") as info:
        open_backend(uri).stage(CANARY)
    assert find_leak(str(info.value)) is None
    assert path.read_bytes() == before and path.stat().st_uid == 65534


def test_file_store_writes_leave_mode_0600(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "store.json"
    uri = _store(monkeypatch, path)
    path.chmod(0o644)
    open_backend(uri).stage(CANARY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
