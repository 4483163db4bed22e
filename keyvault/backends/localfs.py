"""Safe writes to local files that hold keys: shared by the dotenv and file backends.

- `atomic_write`: the new content goes to a temp file in the same directory (one fixed name
  per target, `<name>.keyvault-tmp`: writers hold the lock, and a leftover from a writer
  killed mid-write is removed by the next write), is fsynced and renamed over the target, then
  the directory is fsynced. A reader sees the old file or the new one, never a mix; the file
  is always mode 0600.
- `exclusive_lock`: fcntl.flock on a sibling lock file, so two writers (processes or threads)
  take turns and each re-reads the file under the lock before comparing and writing. It waits
  a bounded time and then says who to look for, instead of hanging.
- `check_writable`: refuse to rewrite a file owned by another user (the rename would change
  its owner and mode behind their back).
- `follow_link_within`: a symlink is followed only to a file inside a given tree (the project
  for .env, the store's own directory for the file store); one pointing elsewhere is refused,
  since writing through it would put a key wherever the link's author chose.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keyvault.errors import BackendError, PermissionDeniedError

LOCK_TIMEOUT = 30.0


def temp_path(path: Path) -> Path:
    """The one temp name a writer uses next to `path` (writers hold the lock, so one suffices)."""
    return path.with_name(f"{path.name}.keyvault-tmp")


def lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.keyvault-lock")


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: Path, data: bytes, *, what: str) -> None:
    """Replace `path` with `data` (mode 0600) so that no crash can leave a partial file.

    `what` names the source in errors (`dotenv://.env`)."""
    directory = path.parent
    tmp = temp_path(path)
    try:
        try:
            tmp.unlink()  # a leftover from a writer killed mid-write
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise BackendError(f"{what}: cannot write {path}: {exc.strerror or exc}") from None


@contextmanager
def exclusive_lock(path: Path, *, what: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive flock on `path`'s sibling lock file for the duration of a write."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: writes are still atomic, not serialised
        yield
        return
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise BackendError(f"{what}: cannot create the lock file {lock}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackendError(
                        f"{what}: another process has held the lock {lock} for {timeout:.0f} s; "
                        "is a rotation stuck? (find it with: fuser " + str(lock) + ")"
                    ) from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def check_writable(path: Path, *, what: str) -> None:
    """Refuse to replace a file that belongs to someone else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and st.st_uid != geteuid():
        raise PermissionDeniedError(
            f"{what}: refusing to rewrite {path}: it is owned by uid {st.st_uid}, not by you "
            f"(uid {geteuid()}); the rewrite would take it over. Run as its owner."
        )


def follow_link_within(path: Path, root: Path, *, what: str, tree: str, fix: str) -> Path:
    """The file a write through `path` replaces: `path`, or the file its symlink points to when
    that lies inside `root` (`tree` names it in the error: "the project"); a link pointing
    outside `root` is refused (`fix` says what to do instead)."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    top = Path(os.path.realpath(root))
    if real != top and top not in real.parents:
        raise PermissionDeniedError(
            f"{what}: refusing to write through the symlink {path}: it points outside {tree} ({top}); {fix}"
        )
    return real


_KEY_LIKE = re.compile(r"sk-ant-[a-z]{2,10}[0-9]{2}-[A-Za-z0-9_-]{40,}")


def check_state(state: dict[str, str], what: str) -> None:
    """Rotation state holds fingerprints, hints, ids and timestamps: never a key value."""
    if not isinstance(state, dict):
        raise TypeError("rotation state is a dict[str, str]")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"rotation state entries are str -> str (entry {k!r} is not)")
        if _KEY_LIKE.search(v) or _KEY_LIKE.search(k):
            raise BackendError(f"{what}: refusing to store rotation state entry {k!r}: it holds a key value")
