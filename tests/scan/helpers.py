"""Helpers for the scanner's tests: real git repositories in tmp_path, and the CLI run as a
subprocess (`python -m keyvault scan`), exactly as hooks and CI run it.

Keys are generated at run time (keyvault.testing.keygen.make_key): no key-shaped string is
ever written into this repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from keyvault.keys import ADMIN, API, OAUTH_ACCESS, Family
from keyvault.testing.keygen import make_key


def key(family: Family = API) -> str:
    return make_key(family).reveal()


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)

    def findings(self) -> list[dict[str, Any]]:
        return self.json()["findings"]

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out[-800:]!r}, err={self.err[-800:]!r})"


def run_scan(args: list[str], cwd: Path | str, stdin: bytes | None = None,
             env: dict[str, str] | None = None, command: str = "scan") -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "keyvault", command, *args], cwd=cwd, input=stdin if stdin is not None else b"",
        capture_output=True, env={**os.environ, **(env or {})}, timeout=120,
    )
    return Result(proc)


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, input=input, capture_output=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
        return proc.stdout.decode().strip()

    def write(self, rel: str, content: str | bytes) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        else:
            p.write_bytes(content)
        return p

    def commit(self, message: str = "change", *paths: str) -> str:
        self.git("add", "-A", *paths)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def scan(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
        return run_scan(list(args), self.path, stdin=stdin, env=env)



__all__ = ["ADMIN", "API", "OAUTH_ACCESS", "Repo", "Result", "key", "run_scan"]
