"""`keyvault get` and `keyvault exec`, run as the user runs them (a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault.keys import ADMIN
from keyvault.testing.keygen import make_key


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "KEYVAULT_SOURCE")}
    return subprocess.run([sys.executable, "-m", "keyvault", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    return tmp_path


def test_get_shows_source_hint_version_age_never_the_value(project: Path) -> None:
    key = make_key()
    out = run(["get"], project, {"ANTHROPIC_API_KEY": key.reveal()})
    assert out.returncode == 0, out.stderr
    assert "env://ANTHROPIC_API_KEY" in out.stdout and key.hint in out.stdout
    assert "sha256:" + key.fingerprint[:12] in out.stdout and "unknown" in out.stdout
    assert key.reveal() not in out.stdout + out.stderr


def test_get_json_from_a_file_store(project: Path) -> None:
    from keyvault.backends import open_backend

    key = make_key()
    env = {"KEYVAULT_PASSPHRASE": "pw for the cli test"}
    os.environ.update(env)
    try:
        backend = open_backend(f"file://{project / 'store'}#prod")
        backend.stage(key)
        backend.promote("")
    finally:
        del os.environ["KEYVAULT_PASSPHRASE"]
    out = run(["get", "--source", f"file://{project / 'store'}#prod", "--format", "json"], project, env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["hint"] == key.hint and data["fingerprint"] == key.fingerprint
    assert data["version"] == "1" and data["created"] and 0 <= data["age_seconds"] < 600
    assert key.reveal() not in out.stdout


def test_reveal_prints_the_value_into_a_pipe(project: Path) -> None:
    key = make_key()
    (project / ".env").write_text(f"ANTHROPIC_API_KEY={key.reveal()}\n")
    out = run(["get", "--reveal"], project)
    assert out.returncode == 0 and out.stdout == key.reveal()


def test_reveal_refuses_a_terminal(project: Path) -> None:
    key = make_key()
    main, secondary = pty.openpty()
    try:
        base = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
        proc = subprocess.run([sys.executable, "-m", "keyvault", "get", "--reveal"], cwd=project, stdout=secondary,
                              stderr=subprocess.PIPE, text=True, env={**base, "ANTHROPIC_API_KEY": key.reveal()},
                              timeout=60)
        os.close(secondary)
        printed = b""
        try:
            while chunk := os.read(main, 4096):
                printed += chunk
        except OSError:
            pass
    finally:
        os.close(main)
    assert proc.returncode == 2
    assert proc.stderr.startswith("keyvault: error: refusing to print the key to a terminal")
    assert key.reveal().encode() not in printed


def test_errors_are_one_line_exit_2(project: Path) -> None:
    out = run(["get"], project)
    assert out.returncode == 2
    assert out.stderr.startswith("keyvault: error: no Anthropic API key found") and "Traceback" not in out.stderr
    admin = make_key(ADMIN)
    out = run(["get"], project, {"ANTHROPIC_API_KEY": admin.reveal()})
    assert out.returncode == 2 and "Admin API key" in out.stderr and admin.reveal() not in out.stderr


EXEC_PROBE = (
    'echo "pid=$$"; tr "\\0" " " < /proc/$$/cmdline; echo; '
    'printf %s "$CLAUDE_KEY" | sha256sum; exit 7'
)


def test_exec_replaces_itself_and_puts_the_key_only_in_the_environment(project: Path) -> None:
    key = make_key()
    (project / "app.env").write_text(f"ANTHROPIC_API_KEY={key.reveal()}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyvault", "exec", "--source", "dotenv://app.env", "--var", "CLAUDE_KEY",
         "--", "sh", "-c", EXEC_PROBE],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"},
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 7, stderr  # the command's exit status
    lines = stdout.splitlines()
    assert lines[0] == f"pid={proc.pid}", "exec replaced keyvault: no parent process stays around"
    assert key.reveal() not in lines[1], "the key is not in argv"
    assert lines[2].split()[0] == hashlib.sha256(key.reveal().encode()).hexdigest()
    assert key.reveal() not in stdout + stderr


def test_exec_of_a_missing_command(project: Path) -> None:
    out = run(["exec", "--", "no-such-command-xyz"], project, {"ANTHROPIC_API_KEY": make_key().reveal()})
    assert out.returncode == 127 and "cannot run 'no-such-command-xyz'" in out.stderr


def test_exec_without_a_key_runs_nothing(project: Path) -> None:
    marker = project / "ran"
    out = run(["exec", "--", "touch", str(marker)], project)
    assert out.returncode == 2 and "no Anthropic API key found" in out.stderr
    assert not marker.exists()
