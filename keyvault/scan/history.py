"""Scanning git history: every unique blob once, commit messages too, readers on every core.

Why it is fast:
- The object list comes from `git cat-file --batch-all-objects --unordered --batch-check`
  (under a second on git/git's 420k objects), in *pack order*. Reading blobs in pack order
  keeps each delta base in git's cache when its deltas are read: the same blobs in hash order
  take almost three times as long to inflate.
- The list is cut into contiguous slices, one per core, each read by its own
  `git cat-file --batch` and scanned by its own process: inflation, the biggest cost, uses
  every core instead of one.
- Each blob costs four `bytes.find` calls unless it holds something; only blobs that hit are
  decoded, and only for those is git asked which commit and path introduced them.

`--batch-all-objects` also lists unreachable objects: a hit in one is dropped when no commit
reachable from a ref introduces it (a dangling blob is not history).

For a range (pre-push, pre-receive, --range), `git rev-list --objects` lists what the range
adds, with the path of each blob.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

from keyvault.errors import KeyvaultError
from keyvault.scan import gitio
from keyvault.scan.engine import Hit, Known, scan_bytes

ZERO = frozenset({"0" * 40, "0" * 64})
PARALLEL_BYTES = 64 << 20  # below this, one reader in this process is faster than forking


class Obj:
    """An object to read: its id, type, size, and a path when the lister knows one."""

    __slots__ = ("sha", "kind", "size", "path")

    def __init__(self, sha: str, kind: str, size: int, path: str | None = None) -> None:
        self.sha = sha
        self.kind = kind
        self.size = size
        self.path = path


# (sha, kind, [(value, family name, line, column, decoded, member, allowed, offset)])
RawHit = tuple[str, str | None, int | None, int | None, str | None, str, bool, int]
ObjHits = tuple[str, str, list[RawHit]]


def all_objects(cwd: str | None = None) -> list[Obj]:
    """Every blob, commit and tag in the repository, in pack order."""
    _, out, _ = gitio.run(
        ["cat-file", "--batch-all-objects", "--unordered",
         "--batch-check=%(objectname) %(objecttype) %(objectsize)"], cwd=cwd,
    )
    objs: list[Obj] = []
    for line in out.split(b"\n"):
        parts = line.split(b" ")
        if len(parts) != 3 or parts[1] == b"tree":
            continue
        objs.append(Obj(parts[0].decode(), parts[1].decode(), int(parts[2])))
    return objs


def range_objects(tips: list[str], excludes: list[str], cwd: str | None = None) -> list[Obj]:
    """Blobs, commits and tags reachable from `tips` and not from `excludes` (rev-list
    arguments such as `^sha` or `--remotes`), with the path git first saw each blob at."""
    if not tips:
        return []
    _, out, _ = gitio.run(["rev-list", "--objects", *tips, *excludes, "--"], cwd=cwd)
    listed: list[tuple[str, str | None]] = []
    for line in out.split(b"\n"):
        if not line:
            continue
        sha, _, path = line.partition(b" ")
        listed.append((sha.decode(), path.decode("utf-8", "surrogateescape") if _ else None))
    if not listed:
        return []
    request = "".join(f"{sha}\n" for sha, _ in listed).encode()
    _, out, _ = gitio.run(["cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"],
                          cwd=cwd, stdin=request)
    objs: list[Obj] = []
    for (sha, path), line in zip(listed, out.split(b"\n")):
        parts = line.split(b" ")
        if len(parts) != 3 or parts[1] == b"tree":
            continue
        objs.append(Obj(sha, parts[1].decode(), int(parts[2]), path))
    return objs


def scan_objects(objs: list[Obj], known: Known | None, jobs: int | None = None,
                 cwd: str | None = None) -> tuple[list[ObjHits], list[str]]:
    """Read and scan every object; (objects that hit with their hits, notes)."""
    total = sum(o.size for o in objs)
    cores = max(1, min(jobs or available_cores(), 8))
    threshold = int(os.environ.get("KEYVAULT_SCAN_PARALLEL_BYTES", PARALLEL_BYTES))
    if cores == 1 or total < threshold or len(objs) < 2 * cores:
        return _read_and_scan([o.sha for o in objs], known, cwd)
    slices = _split([(o.sha, o.size) for o in objs], cores)
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    global _KNOWN
    _KNOWN = known
    with ctx.Pool(len(slices), initializer=_init_worker, initargs=(cwd,)) as pool:
        results = pool.map(_worker, slices, chunksize=1)
    hits: list[ObjHits] = []
    notes: list[str] = []
    for h, n in results:
        hits.extend(h)
        notes.extend(n)
    return hits, notes


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _split(items: list[tuple[str, int]], n: int) -> list[list[str]]:
    """Contiguous slices of about equal bytes: contiguous keeps pack order (delta bases near
    their deltas) inside each reader."""
    total = sum(size for _, size in items) or 1
    target = total / n
    slices: list[list[str]] = [[]]
    acc = 0
    for sha, size in items:
        if acc >= target * len(slices) and len(slices) < n:
            slices.append([])
        slices[-1].append(sha)
        acc += size
    return [s for s in slices if s]


_KNOWN: Known | None = None
_CWD: str | None = None


def _init_worker(cwd: str | None) -> None:
    global _CWD
    _CWD = cwd


def _worker(shas: list[str]) -> tuple[list[ObjHits], list[str]]:
    return _read_and_scan(shas, _KNOWN, _CWD)


def _read_and_scan(shas: list[str], known: Known | None, cwd: str | None) -> tuple[list[ObjHits], list[str]]:
    if not shas:
        return [], []
    r, w = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups on big blobs (Linux)
    except (ImportError, OSError):
        pass
    argv = [*gitio.GIT, "cat-file", "--batch"]
    if cwd:
        argv[1:1] = ["-C", cwd]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=w, stderr=subprocess.PIPE)
    except FileNotFoundError:
        os.close(r)
        os.close(w)
        raise KeyvaultError("git is not installed or not on PATH") from None
    os.close(w)
    import threading

    request = "".join(f"{s}\n" for s in shas).encode()

    def feed() -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(request)
            proc.stdin.close()
        except OSError:
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    hits: list[ObjHits] = []
    notes: list[str] = []
    with os.fdopen(r, "rb", buffering=1 << 20) as stream:
        readline = stream.readline
        read = stream.read
        from keyvault.scan import decode
        from keyvault.scan.engine import might_hold

        while True:
            header = readline()
            if not header:
                break
            parts = header.split()
            if len(parts) != 3:
                continue  # "<sha> missing": listed but gone (a concurrent gc); nothing to read
            size = int(parts[2])
            data = read(size + 1)
            if len(data) < size:
                notes.append(f"object {parts[0].decode()} was cut short while reading")
                break
            if size + 1 == len(data):
                data = data[:size]
            if not might_hold(data, known):
                continue
            kind = parts[1].decode()
            sha = parts[0].decode()
            if kind in ("commit", "tag"):
                body = data.find(b"\n\n")
                found = scan_bytes(data[body + 2:] if body >= 0 else b"", known)
                if found:
                    hits.append((sha, kind, [_raw(h) for h in found]))
                continue
            budget = decode.Budget()
            found = scan_bytes(data, known, budget)
            notes.extend(f"blob {sha}: {n}" for n in budget.notes)
            if found:
                hits.append((sha, kind, [_raw(h) for h in found]))
    proc.wait()
    feeder.join(timeout=1)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode not in (0, None):
        raise KeyvaultError(f"git cat-file failed (exit {proc.returncode}): "
                            f"{err.decode('utf-8', 'replace').strip()[:200]}")
    return hits, notes


def _raw(h: Hit) -> RawHit:
    """Hits cross the process boundary as plain tuples (a Secret refuses to be pickled; this
    pipe between our own processes is the one place a value travels unwrapped)."""
    return (h.secret.reveal(), h.family.name, h.line, h.column, h.chain, h.member, h.allowed, h.offset)


# --- which commit and path introduced a blob -------------------------------------------------

def introductions(blobs: Iterable[str], revs: list[str], cwd: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """For each blob: [(commit, path)] where a commit of `revs` (log arguments such as
    `--all`) adds it, oldest first. Reads `git log --raw` (tree diffs only, no content) and
    stops as soon as every blob has been seen once, then asks again, limited to the paths
    found, for older introductions."""
    wanted = set(blobs)
    if not wanted:
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    paths = _walk_log(wanted, revs, [], cwd, stop_when_all_seen=True, found=found)
    missing = wanted - set(found)
    if missing:  # added only by a merge (an "evil merge" resolution): look at merge diffs too
        paths |= _walk_log(missing, [*revs, "-m"], [], cwd, stop_when_all_seen=True, found=found)
    if paths:
        older: dict[str, list[tuple[str, str]]] = {}
        _walk_log(wanted, revs, sorted(paths), cwd, stop_when_all_seen=False, found=older)
        for sha, places in older.items():
            merged = found.setdefault(sha, [])
            for place in places:
                if place not in merged:
                    merged.append(place)
    # oldest first: log lists newest first
    return {sha: list(reversed(places)) for sha, places in found.items()}


def _walk_log(wanted: set[str], revs: list[str], paths: list[str], cwd: str | None,
              stop_when_all_seen: bool, found: dict[str, list[tuple[str, str]]]) -> set[str]:
    argv = [*gitio.GIT, "log", "--format=%x01%H", "--raw", "--no-abbrev", "--no-renames",
            "--no-color", *revs, "--"]
    argv.extend(paths)
    if cwd:
        argv[1:1] = ["-C", cwd]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    commit = ""
    seen_paths: set[str] = set()
    remaining = set(wanted)
    try:
        for line in proc.stdout:
            if line.startswith(b"\x01"):
                commit = line[1:].strip().decode()
                continue
            if not line.startswith(b":"):
                continue
            meta, _, name = line.rstrip(b"\n").partition(b"\t")
            fields = meta.split(b" ")
            if len(fields) < 5:
                continue
            new = fields[3].decode()
            if new in wanted and fields[4][:1] in (b"A", b"M", b"T"):
                path = gitio.unquote_path(name)
                places = found.setdefault(new, [])
                if (commit, path) not in places:
                    places.append((commit, path))
                seen_paths.add(path)
                remaining.discard(new)
                if stop_when_all_seen and not remaining:
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    return seen_paths


def reachable_commits(shas: list[str], cwd: str | None = None) -> set[str]:
    """Which of these commits (or tags) some ref reaches."""
    result: set[str] = set()
    for sha in shas:
        code, out, _ = gitio.run(["for-each-ref", "--count=1", "--contains", sha, "--format=%(refname)"],
                                 cwd=cwd, check=False)
        if code == 0 and out.strip():
            result.add(sha)
            continue
        code, out, _ = gitio.run(["for-each-ref", "--points-at", sha, "--format=%(refname)"],
                                 cwd=cwd, check=False)
        if code == 0 and out.strip():
            result.add(sha)
    return result


def git_dir_ok(cwd: str | None = None) -> None:
    code, _, err = gitio.run(["rev-parse", "--git-dir"], cwd=cwd, check=False)
    if code != 0:
        raise KeyvaultError(f"not inside a git repository ({gitio._first_line(err)}); "
                            "history and range scans need one")
