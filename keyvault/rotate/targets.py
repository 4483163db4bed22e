"""The targets of a rotation: open them, read them, move each one to the new key and back.

Each operation is idempotent and decides from what the target holds now, not from what the
journal last recorded, because a crash can fall between a backend write and the journal write
that records it: a target already on the new key is left alone, a target on the old key is
staged and promoted with compare-and-swap on the old fingerprint, and a target on any third
key is someone else's change, which stops the rotation.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field

from keyvault.backends import Backend, Version, open_backend
from keyvault.errors import BackendError, ConflictError, KeyvaultError, UnsupportedOperation
from keyvault.keys import Secret
from keyvault.policy import Target
from keyvault.rotate import crash


@dataclass
class Handle:
    """A policy target with its backend, opened on first use."""

    target: Target
    index: int  # 1-based position in the policy, which is also the update order
    _backend: Backend | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return self.target.source

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.target.source)
        return self._backend

    def read(self) -> Version:
        return self.backend.read()


def handles(targets: tuple[Target, ...]) -> list[Handle]:
    return [Handle(t, i) for i, t in enumerate(targets, 1)]


def require_writable(items: list[Handle]) -> None:
    for h in items:
        if not getattr(h.backend, "writable", True):
            reason = getattr(h.backend, "read_only_reason", "it cannot be written")
            raise UnsupportedOperation(f"{h.uri}: cannot be a rotation target: {reason}")


def read_all(items: list[Handle]) -> list[Version]:
    return [h.read() for h in items]


def disagreement(items: list[Handle], versions: list[Version]) -> str | None:
    """A message naming which target holds which key, or None when all agree."""
    fps = {v.secret.fingerprint for v in versions}
    if len(fps) <= 1:
        return None
    lines = [f"  {h.uri}: {v.secret.hint} (sha256 {v.secret.fingerprint[:12]})" for h, v in zip(items, versions)]
    return (
        "the targets do not hold the same key, so there is no single old key to rotate from:\n"
        + "\n".join(lines)
        + "\nbring them into agreement first (keyvault status shows them)"
    )


def apply_new(h: Handle, old_fp: str, new: Secret) -> tuple[str, Version]:
    """Move one target from the old key to the new one. Returns (what happened, version)."""
    current = h.read()
    fp = current.secret.fingerprint
    if fp == new.fingerprint:
        _clear_leftover(h, new)
        return "already on the new key", current
    if fp != old_fp:
        raise ConflictError(
            f"{h.uri} changed since the rotation was planned: it now holds {current.secret.hint}, "
            "neither the old nor the new key"
        )
    pending = h.backend.read_pending()
    if pending is None or pending.secret.fingerprint != new.fingerprint:
        crash.point(f"update:stage:{h.index}")
        h.backend.stage(new)
        crash.point(f"update:staged:{h.index}")
    crash.point(f"update:promote:{h.index}")
    version = h.backend.promote(old_fp)
    crash.point(f"update:promoted:{h.index}")
    return "promoted", version


def _clear_leftover(h: Handle, new: Secret) -> None:
    """A promote that crashed after moving current but before dropping pending leaves the
    new key in both slots; drop the pending copy so the next rotation starts clean."""
    try:
        pending = h.backend.read_pending()
    except BackendError:
        return
    if pending is not None and pending.secret.fingerprint == new.fingerprint:
        h.backend.clear_pending()


def roll_back(h: Handle, old_fp: str, new_fp: str) -> str:
    """Put one target back on the old key (the old key is still active at this point)."""
    current = h.read()
    fp = current.secret.fingerprint
    if fp == old_fp:
        return "already on the old key"
    if fp != new_fp:
        raise ConflictError(
            f"{h.uri}: cannot roll back: it holds {current.secret.hint}, neither the old nor the new key"
        )
    crash.point(f"rollback:{h.index}")
    h.backend.rollback(new_fp)
    crash.point(f"rollback:done:{h.index}")
    after = h.read().secret.fingerprint
    if after != old_fp:
        raise KeyvaultError(f"{h.uri}: rolled back, but it now reads a key that is not the old one")
    return "rolled back"


@dataclass
class CheckResult:
    ok: bool
    seconds: float
    detail: str


def run_check(h: Handle, secret: Secret) -> CheckResult:
    """Run the target's check command with the key it now serves in the environment only.

    The key comes from reading the target (what the app behind it resolves), goes into the
    child's environment under the policy's variable name and `KEYVAULT_SOURCE` names the
    target, so an app that resolves through keyvault reads the same store. Output is kept
    only as a short tail, with any Anthropic credential redacted.
    """
    command = h.target.check
    if not command:
        return CheckResult(True, 0.0, "no check command")
    env = dict(os.environ)
    env[h.target.check_env] = secret.reveal()
    env["KEYVAULT_SOURCE"] = h.uri
    env["KEYVAULT_TARGET"] = h.uri
    env.pop("KEYVAULT_CRASH_AT", None)
    started = time.monotonic()
    timeout = h.target.check_timeout.total_seconds()
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(False, time.monotonic() - started, f"check timed out after {timeout:g}s")
    except OSError as exc:
        return CheckResult(False, time.monotonic() - started, f"check could not start ({exc.strerror})")
    seconds = time.monotonic() - started
    if proc.returncode == 0:
        return CheckResult(True, seconds, "check passed")
    tail = redact((proc.stderr or proc.stdout or b"").decode("utf-8", "replace"), secret).strip()
    tail = tail.splitlines()[-1][:200] if tail else ""
    return CheckResult(False, seconds, f"check exited {proc.returncode}" + (f": {tail}" if tail else ""))


def redact(text: str, *secrets: Secret) -> str:
    """Replace the given keys (whatever their shape), then any Anthropic credential, by hints."""
    from keyvault.redact import redact as redact_credentials

    for s in secrets:
        text = text.replace(s.reveal(), s.hint)
    return redact_credentials(text)


def read_previous(h: Handle) -> Secret | None:
    """The value the target held before its last promote, when the backend can read it."""
    reader = getattr(h.backend, "read_previous", None)
    if reader is None:
        return None
    try:
        version = reader()
    except (BackendError, UnsupportedOperation):
        return None
    return version.secret if version is not None else None
