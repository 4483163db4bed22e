"""Talking to git for the scanner, without `subprocess` on the hook's path.

`run()` spawns git with `os.posix_spawnp` and two pipes: `subprocess` imports `locale`,
`signal`, `selectors` and friends (a few milliseconds the pre-commit hook would pay on every
commit). Everything here reads git's own output formats: NUL-separated lists, `-z` paths and
C-quoted paths in diff headers.
"""

from __future__ import annotations

import os

from keyvault.errors import KeyvaultError

# Options that make git's output the same whatever the user's configuration says.
DIFF_OPTS = (
    "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", "--src-prefix=a/",
    "--dst-prefix=b/", "--no-relative", "--ignore-submodules=all", "--diff-filter=d",
)
GIT = ("git", "-c", "core.quotePath=true", "-c", "diff.noprefix=false", "-c", "color.ui=never")


class GitError(KeyvaultError):
    """git failed: names the command and quotes git's own message."""


def run(args: list[str], cwd: str | None = None, stdin: bytes | None = None,
        check: bool = True) -> tuple[int, bytes, bytes]:
    """Run git with `args`; return (exit code, stdout, stderr). Raises GitError when asked to
    check and git fails, or when git is not installed."""
    argv = [*GIT, *args]
    if not hasattr(os, "posix_spawnp"):  # Windows: subprocess it is
        return _run_subprocess(argv, cwd, stdin, check, args)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r = in_w = -1
    actions = [
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
        (os.POSIX_SPAWN_CLOSE, out_r),
        (os.POSIX_SPAWN_CLOSE, err_r),
    ]
    if stdin is not None:
        in_r, in_w = os.pipe()
        actions += [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_CLOSE, in_w)]
    else:
        devnull = os.open(os.devnull, os.O_RDONLY)
        actions.append((os.POSIX_SPAWN_DUP2, devnull, 0))
    env = os.environ
    if cwd is not None:
        # posix_spawn has no chdir action before Python 3.13's file actions; git's -C does it.
        argv = [argv[0], "-C", cwd, *argv[1:]]
    try:
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; the scanner needs it for git inputs") from None
    finally:
        os.close(out_w)
        os.close(err_w)
        if stdin is not None:
            os.close(in_r)
        else:
            os.close(devnull)
    if stdin is not None:
        _feed(in_w, stdin)
    out, err = _drain(out_r, err_r)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if check and code != 0:
        raise GitError(f"git {' '.join(args[:3])} failed (exit {code}): {_first_line(err)}")
    return code, out, err


def _run_subprocess(argv: list[str], cwd: str | None, stdin: bytes | None, check: bool,
                    args: list[str]) -> tuple[int, bytes, bytes]:
    import subprocess

    try:
        proc = subprocess.run(argv, cwd=cwd, input=stdin if stdin is not None else b"", capture_output=True)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; the scanner needs it for git inputs") from None
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed (exit {proc.returncode}): {_first_line(proc.stderr)}")
    return proc.returncode, proc.stdout, proc.stderr


def _feed(fd: int, data: bytes) -> None:
    """Write stdin from a thread so a large input cannot deadlock against a full stdout."""
    import threading

    def write() -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view[:1 << 20])
                view = view[n:]
        except OSError:
            pass
        finally:
            os.close(fd)

    threading.Thread(target=write, daemon=True).start()


def _drain(out_r: int, err_r: int) -> tuple[bytes, bytes]:
    import select

    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for fd in ready:
            data = os.read(fd, 1 << 20)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
                os.close(fd)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


def _first_line(err: bytes) -> str:
    text = err.decode("utf-8", "replace").strip().splitlines()
    return text[0] if text else "no message"


def unquote_path(raw: bytes) -> str:
    """A path as git prints it in diff headers: plain, or C-quoted ("a/caf\\303\\251")."""
    if not raw.startswith(b'"'):
        return raw.decode("utf-8", "surrogateescape")
    body = raw[1:-1] if raw.endswith(b'"') else raw[1:]
    out = bytearray()
    i = 0
    simple = {ord("n"): 10, ord("t"): 9, ord('"'): 34, ord("\\"): 92, ord("a"): 7, ord("b"): 8,
              ord("f"): 12, ord("r"): 13, ord("v"): 11}
    while i < len(body):
        c = body[i]
        if c == 92 and i + 1 < len(body):
            n = body[i + 1]
            if n in simple:
                out.append(simple[n])
                i += 2
                continue
            if 48 <= n <= 55:
                out.append(int(body[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
        out.append(c)
        i += 1
    return bytes(out).decode("utf-8", "surrogateescape")


def find_git_root(start: str) -> str | None:
    """The nearest directory at or above `start` holding `.git` (a directory in a normal
    clone, a file in worktrees and submodules), found with stat calls only."""
    path = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(path, ".git")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
