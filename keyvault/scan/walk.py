"""Which files a path scan reads, and reading them safely.

In a git work tree the list comes from `git ls-files --cached --others --exclude-standard`,
so what git ignores is skipped (unless --no-gitignore) and a 48 MB tree is listed in
milliseconds. Elsewhere the directory is walked. Either way: `.git/` is never read,
symlinks are not followed out of the tree (a directory walk never follows them at all; an
explicitly named file is), FIFOs and devices are never opened (a FIFO would hang the scan),
and a file that cannot be read is reported, not silently skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from keyvault.scan import gitio

def _rel(display_root: str, rel: str) -> str:
    if display_root in ("", "."):
        return rel
    return os.path.join(display_root, rel)


def _clean(path: str) -> str:
    norm = os.path.normpath(path)
    return norm[2:] if norm.startswith("./") else norm


def list_files(paths: list[str], use_gitignore: bool, notes: list[str],
               errors: list[str]) -> Iterator[tuple[str, bool]]:
    """(display path, named explicitly) of the files to scan, each once, in a stable order."""
    seen: set[str] = set()
    for arg in paths:
        try:
            st = os.stat(arg)
        except FileNotFoundError:
            errors.append(f"{arg}: no such file or directory")
            continue
        except OSError as exc:
            errors.append(f"{arg}: cannot be read ({exc.strerror or exc})")
            continue
        if not stat.S_ISDIR(st.st_mode):
            path = _clean(arg)
            if path not in seen:
                seen.add(path)
                yield path, True
            continue
        listed = _git_listing(arg, notes) if use_gitignore else None
        if listed == [] and _ignored_by_git(arg):
            # the user named a directory that an enclosing repository ignores: scanning nothing
            # and reporting "clean" would be a silent pass
            notes.append(f"{arg}: ignored by git, scanned whole because it was named")
            listed = None
        if listed is None:
            listed = _walk(arg, notes)
        for rel in listed:
            path = _clean(_rel(arg, rel))
            if path not in seen:
                seen.add(path)
                yield path, False


def _ignored_by_git(directory: str) -> bool:
    code = gitio.run(["check-ignore", "-q", "."], cwd=directory, check=False)[0]
    return code == 0


def _git_listing(directory: str, notes: list[str]) -> list[str] | None:
    if gitio.find_git_root(directory) is None:
        return None
    code, out, err = gitio.run(
        ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--deduplicate"],
        cwd=directory, check=False,
    )
    if code != 0:
        if b"not a git repository" in err or b"outside repository" in err:
            return None
        code, out, err = gitio.run(
            ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=directory, check=False
        )
        if code != 0:
            return None
    names = [n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n]
    result: list[str] = []
    for name in names:
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
        except OSError:
            continue  # deleted in the work tree but still in the index: nothing to read
        if stat.S_ISDIR(st.st_mode):
            # a submodule (git lists it as one entry): scan it with its own ignore rules when it
            # is checked out; an uninitialised one is an empty directory with nothing to read
            if not os.path.exists(os.path.join(full, ".git")):
                continue
            sub = _git_listing(full, notes)
            if sub is not None:
                result.extend(os.path.join(name, s) for s in sub)
            continue
        result.append(name)
    return result


def _walk(directory: str, notes: list[str]) -> list[str]:
    result: list[str] = []
    root = os.path.abspath(directory)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        full_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            entries = sorted(os.scandir(full_dir), key=lambda e: e.name)
        except OSError as exc:
            notes.append(f"{_rel(directory, rel_dir) or directory}: directory cannot be listed ({exc.strerror})")
            continue
        subdirs: list[str] = []
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            if entry.name == ".git":
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(rel)
                    continue
            except OSError:
                continue
            result.append(rel)
        stack.extend(reversed(subdirs))
    return result


def read_file(path: str, explicit: bool = False) -> bytes | str | None:
    """The file's bytes; a str for a read error; None for what is skipped on purpose: FIFOs,
    sockets and devices, and symlinks. A symlink met in a directory walk is never followed
    (its target, when inside the tree, is listed under its own name); one named on the
    command line is followed only when it points inside the current directory's tree."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if stat.S_ISLNK(st.st_mode):
        if not explicit:
            return None
        target = os.path.realpath(path)
        base = os.path.realpath(os.getcwd())
        if not target.startswith(base.rstrip(os.sep) + os.sep):
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
    else:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    try:
        with os.fdopen(fd, "rb", buffering=0) as fh:
            return fh.readall()
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
