"""Helpers for the rotation tests: a world of real targets holding one key minted by
FakeAnthropic, a policy naming them, and a way to run `keyvault` as a subprocess.

`World.targets` are source URIs; local ones (dotenv, the encrypted file store) are made here,
cloud ones are added by the tests that start those servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyvault.backends import open_backend
from keyvault.keys import Secret

PASSPHRASE = "rotation tests (not a secret)"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class World:
    tmp: Path
    fake: Any  # FakeAnthropic
    old: Any  # MintedKey served at the start
    targets: list[str] = field(default_factory=list)
    env_extra: dict[str, str] = field(default_factory=dict)
    checks: dict[int, str] = field(default_factory=dict)  # target index (0-based) -> check command
    settings: dict[str, str] = field(default_factory=lambda: {"grace": "0", "archive_delay": "0"})
    admin: bool = True

    # -- building -------------------------------------------------------------------------
    def add_dotenv(self, name: str = "app") -> str:
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        (d / ".env").write_text(f"# {name} settings\nDEBUG=1\nANTHROPIC_API_KEY={self.old.secret.reveal()}\n")
        uri = f"dotenv://{d / '.env'}#ANTHROPIC_API_KEY"
        self.targets.append(uri)
        return uri

    def add_file(self, entry: str = "prod") -> str:
        uri = f"file://{self.tmp / 'store'}#{entry}"
        backend = open_backend(uri)
        backend.stage(self.old.secret)
        backend.promote("")
        self.targets.append(uri)
        return uri

    def add(self, uri: str) -> str:
        """A target the caller already filled with the old key."""
        self.targets.append(uri)
        return uri

    def policy_text(self, env: str = "prod") -> str:
        lines = ["[rotation]", 'app = "chat"']
        lines += [f'{k} = "{v}"' for k, v in self.settings.items()]
        if not self.admin:
            lines.append('admin_key = ""')
        lines.append(f"[environments.{env}]")
        for i, uri in enumerate(self.targets):
            lines.append(f"[[environments.{env}.targets]]")
            lines.append(f'source = "{uri}"')
            if i in self.checks:
                lines.append(f"check = {json.dumps(self.checks[i])}")
        return "\n".join(lines) + "\n"

    def write_policy(self, env: str = "prod") -> Path:
        path = self.tmp / "rotation.toml"
        path.write_text(self.policy_text(env))
        return path

    @property
    def policy_path(self) -> Path:
        return self.tmp / "rotation.toml"

    def policy(self) -> Any:
        from keyvault.policy import load_policy

        return load_policy(self.write_policy())

    # -- observing ------------------------------------------------------------------------
    def held(self) -> list[str]:
        """The fingerprint each target serves now."""
        return [open_backend(uri).read().secret.fingerprint for uri in self.targets]

    def pending(self) -> Secret | None:
        v = open_backend(self.targets[0]).read_pending()
        return v.secret if v else None

    def journal(self) -> dict[str, str] | None:
        return open_backend(self.targets[0]).read_state()[0]

    def stage(self, secret: Secret) -> None:
        open_backend(self.targets[0]).stage(secret)

    def status_of(self, key: Any) -> str:
        return self.fake.key(key.id).status

    # -- running --------------------------------------------------------------------------
    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYVAULT_", "ANTHROPIC_"))}
        env.update(KEYVAULT_PASSPHRASE=PASSPHRASE, ANTHROPIC_BASE_URL=self.fake.base_url, PYTHONPATH=os.pathsep.join(sys.path))
        if self.admin:
            env["ANTHROPIC_ADMIN_KEY"] = self.fake.admin_key.reveal()
        env.update(self.env_extra)
        env.update(extra)
        return env

    def cli(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            pass_fds: tuple[int, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "keyvault", *args], input=input, capture_output=True, timeout=timeout,
            env=env or self.environ(), cwd=self.tmp, pass_fds=pass_fds,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def rotate(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return self.cli("rotate", "--policy", str(self.write_policy()), "--non-interactive", *args, **kw)


def make_world(tmp_path: Path, fake: Any, monkeypatch: Any, *, admin: bool = True) -> World:
    monkeypatch.setenv("KEYVAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    if admin:
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", fake.admin_key.reveal())
    else:
        monkeypatch.delenv("ANTHROPIC_ADMIN_KEY", raising=False)
    for name in ("KEYVAULT_CRASH_AT", "KEYVAULT_CRASH_TRACE", "KEYVAULT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    old = fake.mint_key("prod-chat-old")
    return World(tmp_path, fake, old, admin=admin)


def text(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode() + proc.stderr.decode()
