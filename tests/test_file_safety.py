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


def _holding_the_canary(directory: Path, allowed: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and p.name not in allowed
                  and find_leak(p.read_bytes()) is not None)


@pytest.mark.xfail(strict=True, reason=(
    "finding in keyvault/backends/localfs.py (not this branch's file): a writer killed after writing "
    "its temp file and before the rename leaves '..env.keyvault-tmp' holding the new key until the next "
    "write; `.env` and `.env.*` in .gitignore do not match that name, so `git add .` commits it. Fix: "
    "name the temp file so the usual ignore rules match it (e.g. '.env.keyvault-tmp'), or register "
    "cleanup on every read path too. Remove this mark with the fix."))
def test_kill_9_mid_write_leaves_no_key_outside_the_env_file(tmp_path: Path) -> None:
    path = _dotenv(tmp_path / "project")
    assert _kill_mid_write(f"dotenv://{path}#ANTHROPIC_API_KEY") == -9
    assert path.read_text() == f"DEBUG=1\nANTHROPIC_API_KEY={OLD.reveal()}\n", "the .env itself is untouched"
    assert _holding_the_canary(path.parent, {".env"}) == []


def test_kill_9_mid_write_leftover_is_removed_by_the_next_write(tmp_path: Path) -> None:
    path = _dotenv(tmp_path / "project")
    assert _kill_mid_write(f"dotenv://{path}#ANTHROPIC_API_KEY") == -9
    assert path.read_text() == f"DEBUG=1\nANTHROPIC_API_KEY={OLD.reveal()}\n"
    open_backend(f"dotenv://{path}#ANTHROPIC_API_KEY").stage(CANARY)
    assert _holding_the_canary(path.parent, set()) == [".env"]
    leftovers = [p.name for p in path.parent.iterdir() if "tmp" in p.name]
    assert leftovers == []
