"""The canary harness: run keyvault with a known key reachable and prove the key shows up in no
output, log record, exception, file or child-process argv.

One canary key is generated per test session (`CANARY`). A leak is any 12 consecutive
characters of its body, or the whole key in base64 or hex: a hint (`sk-ant-api03-R2D...igAA`)
shows 3 and 4 body characters and passes; a key cut short or with one character changed does
not.

Child argv is watched two ways, because each misses what the other catches:
- a PATH shim: every common tool (git, sh, env, python, ...) is a tiny wrapper that records
  its argv, then execs the real one; it catches even processes that live for a microsecond;
- a /proc watcher: while the command runs, a thread walks /proc/<pid>/task/*/children from the
  keyvault process down and reads each descendant's cmdline; it catches children started by
  absolute path (sys.executable, /usr/bin/git) that the shim cannot see.

Usage (see tests/test_canary.py):

    run = run_cli(tmp_path, ["verify"], via="stdin")
    assert_clean(run)
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from keyvault.keys import Secret
from keyvault.testing.keygen import make_key

CANARY: Secret = make_key()
WINDOW = 12
SHIMMED = (
    "git", "sh", "bash", "dash", "env", "python", "python3", "cat", "sleep", "true", "false", "ssh", "curl",
    "openssl", "gpg", "bao", "vault", "aws", "gcloud", "security", "secret-tool", "op",
)
Via = Literal["stdin", "env", "dotenv", "none"]


def leak_forms(secret: Secret = CANARY) -> list[str]:
    """Every string whose presence means the secret leaked."""
    value = secret.reveal()
    body = value[len(secret.family.prefix):] if secret.family.prefix else value[7:]
    windows = {body[i:i + WINDOW] for i in range(len(body) - WINDOW + 1)}
    raw = value.encode()
    encoded = {
        base64.b64encode(raw).decode()[:40],
        base64.urlsafe_b64encode(raw).decode()[:40],
        raw.hex()[:40],
    }
    return sorted(windows | encoded)


_FORMS = leak_forms()


def find_leak(data: str | bytes, forms: Sequence[str] = _FORMS) -> str | None:
    """The first leaked form found in data (described without the value), or None."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    for form in forms:
        at = text.find(form)
        if at >= 0:
            return f"{len(form)} characters of the key at offset {at}"
    return None


# --- the PATH shim and the /proc watcher -----------------------------------------------------


def make_shim(directory: Path, log: Path, names: Iterable[str] = SHIMMED, path: str | None = None) -> Path:
    """Wrappers that append their argv to `log` (fields \\x1f, records \\x1e) and exec the real tool."""
    directory.mkdir(parents=True, exist_ok=True)
    search = path if path is not None else os.environ.get("PATH", "")
    for name in names:
        real = shutil.which(name, path=search)
        if real is None:
            continue
        script = directory / name
        script.write_text(
            "#!/bin/sh\n"
            f"{{ printf '%s' {name!s}; for a in \"$@\"; do printf '\\037%s' \"$a\"; done; printf '\\036'; }}"
            f" >> '{log}'\n"
            f"exec '{real}' \"$@\"\n"
        )
        script.chmod(0o755)
    return directory


def read_shim_log(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    records = log.read_bytes().decode("utf-8", "replace").split("\x1e")
    return [r.split("\x1f") for r in records if r]


class ProcWatcher:
    """Record the argv of every descendant of a process while it runs (Linux /proc)."""

    def __init__(self, root: int, interval: float = 0.005) -> None:
        self.root = root
        self.interval = interval
        self.seen: dict[tuple[int, str], list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def argvs(self) -> list[list[str]]:
        return list(self.seen.values())

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return out
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    out.extend(int(p) for p in fh.read().split())
            except OSError:
                continue
        return out

    def _scan(self) -> None:
        stack, visited = [self.root], set()
        while stack:
            pid = stack.pop()
            if pid in visited:
                continue
            visited.add(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    raw = fh.read()
            except OSError:
                continue
            argv = raw.decode("utf-8", "replace").rstrip("\0").split("\0")
            self.seen.setdefault((pid, "\0".join(argv)), argv)
            stack.extend(self._children(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._scan()
            time.sleep(self.interval)


# --- running the CLI -------------------------------------------------------------------------


@dataclass
class CanaryRun:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    argvs: list[list[str]]  # every child argv the shim or the watcher saw
    files: dict[Path, bytes]  # every file under the sandbox afterwards, except the allowed ones
    log_text: str = ""  # log records and exception text (in-process runs)
    extra: dict[str, str] = field(default_factory=dict)  # anything else a test wants checked

    def leaks(self, forms: Sequence[str] = _FORMS) -> list[str]:
        where: list[str] = []
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr), ("log records", self.log_text),
                           *self.extra.items()):
            hit = find_leak(text, forms)
            if hit:
                where.append(f"{name}: {hit}")
        for argv in self.argvs:
            hit = find_leak("\0".join(argv), forms)
            if hit:
                where.append(f"child argv of {argv[0]!r}: {hit}")
        for path, data in self.files.items():
            hit = find_leak(data, forms)
            if hit:
                where.append(f"file {path}: {hit}")
        return where


def assert_clean(run: CanaryRun, forms: Sequence[str] = _FORMS) -> None:
    leaks = run.leaks(forms)
    shown = " ".join("<the canary>" if find_leak(a, forms) else a for a in run.args)  # never print it
    assert not leaks, f"keyvault {shown} leaked the canary: " + "; ".join(leaks)
    assert "Traceback" not in run.stderr or "--debug" in run.args, f"traceback without --debug:\n{run.stderr}"


def sandbox_env(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a sandboxed run sees: home, state and config inside `root`, no inherited
    Anthropic or keyvault settings, the PATH shim first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "KEYVAULT_", "VAULT_", "AWS_"))}
    home = root / "home"
    for sub in ("", ".config", ".local/state", ".cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    base.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".local/state"),
        XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(_tmpdir(root)),
        # nothing listens here: a network call fails fast instead of leaving the machine
        ANTHROPIC_BASE_URL="http://127.0.0.1:9", PYTHONDONTWRITEBYTECODE="1",
    )
    shim = make_shim(root / ".canary" / "bin", root / ".canary" / "argv.log", path=base.get("PATH"))
    base["PATH"] = f"{shim}{os.pathsep}{base.get('PATH', '')}"
    base.update(env or {})
    return base


def _tmpdir(root: Path) -> Path:
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    return tmp


def collect_files(root: Path, allow: Iterable[Path] = ()) -> dict[Path, bytes]:
    allowed = {Path(p).resolve() for p in allow}
    out: dict[Path, bytes] = {}
    for path in sorted(root.rglob("*")):
        if ".canary" in path.relative_to(root).parts or path.resolve() in allowed:
            continue
        if path.is_file() and not path.is_symlink():
            try:
                out[path.relative_to(root)] = path.read_bytes()
            except OSError:
                continue
    return out


def run_cli(
    root: Path,
    args: Sequence[str],
    *,
    via: Via = "stdin",
    value: str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    allow: Iterable[Path] = (),
    timeout: float = 60,
    command: Sequence[str] | None = None,
) -> CanaryRun:
    """Run `python -m keyvault ARGS` in a sandbox under `root` with the canary reachable `via`
    stdin, the environment (ANTHROPIC_API_KEY) or a .env file in the working directory.
    `value` replaces the canary's value (e.g. a truncated copy, to take an error path);
    `command` replaces `python -m keyvault` (the harness's own tests run a deliberate leaker)."""
    value = CANARY.reveal() if value is None else value
    extra_env = dict(env or {})
    allowed = list(allow)
    if via == "env":
        extra_env["ANTHROPIC_API_KEY"] = value
    elif via == "dotenv":
        dotenv = root / ".env"
        dotenv.write_text(f"ANTHROPIC_API_KEY={value}\n")
        dotenv.chmod(0o600)
        allowed.append(dotenv)
    if via == "stdin" and stdin is None:
        stdin = value + "\n"
    full_env = sandbox_env(root, extra_env)
    argv = [*(command or (sys.executable, "-m", "keyvault")), *args]
    proc = subprocess.Popen(
        argv, cwd=root, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    with ProcWatcher(proc.pid) as watcher:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"keyvault {' '.join(args)} hung for {timeout}s") from None
    argvs = [a for a in watcher.argvs if a != argv] + read_shim_log(root / ".canary" / "argv.log")
    return CanaryRun(list(args), proc.returncode, out, err, argvs, collect_files(root, allowed))


def invoke_in_process(
    root: Path,
    args: Sequence[str],
    caplog: object,
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    allow: Iterable[Path] = (),
) -> CanaryRun:
    """Run the click CLI in this process (CliRunner) with every logger at DEBUG, so log records
    and the exception object (message and traceback) are checked too."""
    import pytest
    from click.testing import CliRunner

    from keyvault.cli import cli

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.DEBUG)
    full_env = sandbox_env(root, env)
    runner = CliRunner()
    old_cwd = os.getcwd()
    os.chdir(root)
    try:
        result = runner.invoke(cli, list(args), input=input, env=full_env, catch_exceptions=True)
    finally:
        os.chdir(old_cwd)
    texts = [r.getMessage() for r in caplog.records]
    texts += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        texts.append("".join(traceback.format_exception(*result.exc_info)))
        texts.append(repr(result.exception.args) if result.exception else "")
    return CanaryRun(
        list(args), result.exit_code, result.stdout, result.stderr, read_shim_log(root / ".canary" / "argv.log"),
        collect_files(root, allow), log_text="\n".join(texts),
    )
