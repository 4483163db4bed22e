"""Where the new key comes from: never argv.

Anthropic keys are minted only in the Console, which shows each key once. keyvault takes the
new key from a file descriptor (`--new-key-fd N`), a user command's stdout
(`--new-key-command CMD`, e.g. a password manager's CLI), stdin when it is a pipe or a file,
or, in an interactive run, a prompt that does not echo. The caller stashes it in the primary's
pending slot before doing anything else with it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from dataclasses import dataclass

from keyvault.errors import KeyvaultError
from keyvault.keys import Secret, parse_key

MAX_BYTES = 64 * 1024  # a key is 108 characters; anything far larger is the wrong input
STDIN_WAIT = 30.0  # seconds to wait for a pipe that has not written yet
COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class KeyInput:
    """How this run may obtain a new key (several may be set; the first that is set wins)."""

    fd: int | None = None
    command: str | None = None
    stdin: bool = False  # read stdin when it is not a terminal
    prompt: bool = False  # ask on the terminal without echo

    @property
    def given(self) -> bool:
        """The operator named an explicit source (fd or command)."""
        return self.fd is not None or self.command is not None


def _parse(raw: bytes, origin: str) -> Secret:
    from keyvault.errors import KeyFormatError

    if len(raw) > MAX_BYTES:
        raise KeyvaultError(f"{origin}: more than {MAX_BYTES} bytes; expected one API key")
    try:
        return parse_key(raw, expect="api")
    except KeyFormatError as exc:
        raise KeyFormatError(f"{origin}: {exc}") from None


def read_fd(fd: int) -> Secret:
    origin = f"--new-key-fd {fd}"
    try:
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_BYTES:
                break
    except OSError as exc:
        raise KeyvaultError(f"{origin}: cannot read file descriptor {fd} ({exc.strerror}); "
                            f"open it in the shell, e.g. `{fd}< keyfile`") from None
    return _parse(b"".join(chunks), origin)


def read_command(command: str) -> Secret:
    """Run the user's command (shell syntax) and take its stdout as the key."""
    origin = "--new-key-command"
    env = {k: v for k, v in os.environ.items() if k != "KEYVAULT_CRASH_AT"}
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, capture_output=True,
            timeout=COMMAND_TIMEOUT, env=env, check=False,
        )
    except subprocess.TimeoutExpired:
        raise KeyvaultError(f"{origin}: the command did not finish within {COMMAND_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        from keyvault.rotate.targets import redact

        tail = redact(proc.stderr.decode("utf-8", "replace")).strip().splitlines()
        reason = f": {tail[-1][:200]}" if tail else ""
        raise KeyvaultError(f"{origin}: the command exited {proc.returncode}{reason}")
    return _parse(proc.stdout, origin)


def stdin_has_input() -> bool:
    try:
        return not sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def read_stdin(wait: float = STDIN_WAIT) -> Secret | None:
    """The key piped on stdin; None when stdin is empty (e.g. /dev/null in a scheduled job).

    A pipe that stays open without writing would hang a scheduled job forever, so the
    first byte must arrive within `wait` seconds.
    """
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None
    try:
        ready, _, _ = select.select([fd], [], [], wait)
    except (OSError, ValueError):
        ready = [fd]  # not selectable (a regular file): reading cannot block
    if not ready:
        raise KeyvaultError(f"stdin: no key arrived within {wait:g} s (pipe the key in, or use --new-key-fd)")
    data = b""
    while len(data) <= MAX_BYTES:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    if not data.strip():
        return None
    return _parse(data, "stdin")


def prompt_hidden(message: str = "Paste the new key (input is hidden): ") -> Secret:
    import getpass

    try:
        raw = getpass.getpass(message, stream=sys.stderr)
    except EOFError:
        raise KeyvaultError("no key entered") from None
    return _parse(raw.encode("utf-8"), "the pasted key")


def obtain(spec: KeyInput) -> Secret | None:
    """The new key from the first source the spec allows, or None when none supplies one."""
    if spec.fd is not None:
        return read_fd(spec.fd)
    if spec.command is not None:
        return read_command(spec.command)
    if spec.stdin and stdin_has_input():
        found = read_stdin()
        if found is not None:
            return found
    if spec.prompt:
        return prompt_hidden()
    return None
