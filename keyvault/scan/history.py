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
    """Every blob and tag object in the repository, in pack order (commit messages are read
    through `git log`, see CommitMessages)."""
    _, out, _ = gitio.run(
        ["cat-file", "--batch-all-objects", "--unordered",
         "--batch-check=%(objectname) %(objecttype) %(objectsize)"], cwd=cwd,
    )
    import re

    # one C-level pass picks the blob and tag lines out of ~all objects (trees and commits
    # are as many again, and commit messages come from git log)
    return [Obj(sha.decode(), kind.decode(), int(size))
            for sha, kind, size in re.findall(rb"^([0-9a-f]+) (blob|tag) ([0-9]+)$", out, re.M)]


def range_objects(tips: list[str], excludes: list[str], cwd: str | None = None) -> list[Obj]:
    """Blobs and tags reachable from `tips` and not from `excludes` (rev-list arguments such
    as `^sha` or `--remotes`), with the path git first saw each blob at."""
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
        if len(parts) != 3 or parts[1] in (b"tree", b"commit"):
            continue
        objs.append(Obj(sha, parts[1].decode(), int(parts[2]), path))
    return objs


class CommitMessages:
    """The message of every commit of `revs`, read by one `git log` started up front so it runs
    while the blobs are scanned (git inflates commits in C; one pass, in any repository)."""

    def __init__(self, revs: list[str], cwd: str | None) -> None:
        import threading

        argv = [*gitio.GIT, "log", "--no-color", "--format=%x00%H%n%B", *revs, "--"]
        if cwd:
            argv[1:1] = ["-C", cwd]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._out = b""
        self._err = b""

        def drain() -> None:
            assert self._proc.stdout is not None and self._proc.stderr is not None
            self._out = self._proc.stdout.read()
            self._err = self._proc.stderr.read()

        self._thread = threading.Thread(target=drain, daemon=True)
        self._thread.start()

    def scan(self, known: Known | None) -> tuple[int, int, list[ObjHits]]:
        """(commits, bytes, hits): waits for git log, then scans the messages."""
        from keyvault.scan.engine import PREFILTER

        self._thread.join()
        self._proc.wait()
        if self._proc.returncode != 0:
            raise KeyvaultError(f"git log failed (exit {self._proc.returncode}): "
                                f"{self._err.decode('utf-8', 'replace').strip()[:200]}")
        out = self._out
        count = out.count(b"\0")
        hits: list[ObjHits] = []
        if not any(lit in out for lit in PREFILTER) and not (known and any(v in out for v, _ in known.values)):
            return count, len(out), hits
        for record in out.split(b"\0")[1:]:
            sha, _, message = record.partition(b"\n")
            found = scan_bytes(message, known)
            if found:
                hits.append((sha.decode(), "commit", [_raw(h) for h in found]))
        return count, len(out), hits


def scan_objects(objs: list[Obj], known: Known | None, jobs: int | None = None,
                 cwd: str | None = None) -> tuple[list[ObjHits], list[str]]:
    """Read and scan every object; (objects that hit with their hits, notes)."""
    cores = max(1, min(jobs or available_cores(), 8))
    hits: list[ObjHits] = []
    notes: list[str] = []
    if os.environ.get("KEYVAULT_SCAN_ENGINE", "pack") != "git":
        from keyvault.scan import pack

        done = pack.scan(objs, known, cores, cwd)
        if done is not None:
            hits, notes, objs = done
    more, more_notes = _plain(objs, known, cores, cwd)
    return hits + more, notes + more_notes


def _plain(objs: list[Obj], known: Known | None, cores: int, cwd: str | None) -> tuple[list[ObjHits], list[str]]:
    """Every object through `git cat-file --batch` readers, one per core."""
    total = sum(o.size for o in objs)
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


def read_objects(shas: list[str], cwd: str | None):  # type: ignore[no-untyped-def]
    """(sha, type, content, notes) for each object, through one `git cat-file --batch`."""
    if not shas:
        return
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
    try:
        with os.fdopen(r, "rb", buffering=1 << 20) as stream:
            readline = stream.readline
            read = stream.read
            while True:
                header = readline()
                if not header:
                    break
                parts = header.split()
                if len(parts) != 3:
                    continue  # "<sha> missing": listed but gone (a concurrent gc)
                size = int(parts[2])
                data = read(size + 1)
                if len(data) < size:
                    yield parts[0].decode(), parts[1].decode(), b"", [f"object {parts[0].decode()} was cut short"]
                    break
                yield parts[0].decode(), parts[1].decode(), data[:size], []
    finally:
        proc.wait()
        feeder.join(timeout=1)
        err = proc.stderr.read() if proc.stderr else b""
        if proc.stderr:
            proc.stderr.close()
    if proc.returncode not in (0, None):
        raise KeyvaultError(f"git cat-file failed (exit {proc.returncode}): "
                            f"{err.decode('utf-8', 'replace').strip()[:200]}")


def _read_and_scan(shas: list[str], known: Known | None, cwd: str | None) -> tuple[list[ObjHits], list[str]]:
    from keyvault.scan import decode
    from keyvault.scan.engine import might_hold

    hits: list[ObjHits] = []
    notes: list[str] = []
    for sha, kind, data, obj_notes in read_objects(shas, cwd):
        notes.extend(obj_notes)
        if not might_hold(data, known):
            continue
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
    return hits, notes


def _raw(h: Hit) -> RawHit:
    """Hits cross the process boundary as plain tuples (a Secret refuses to be pickled; this
    pipe between our own processes is the one place a value travels unwrapped)."""
    return (h.secret.reveal(), h.family.name, h.line, h.column, h.chain, h.member, h.allowed, h.offset)


# --- which commit and path introduced a blob -------------------------------------------------

def introductions(blobs: Iterable[str], revs: list[str],
                  cwd: str | None = None) -> dict[str, list[tuple[str, str, int, int]]]:
    """For each blob: [(commit, path, commit time, log position)] where a commit of `revs` (log arguments such
    as `--all`) adds it, oldest first. Reads `git log --raw` (tree diffs only, no content) and
    stops as soon as every blob has been seen once, then asks again, limited to the paths
    found, for older introductions."""
    wanted = set(blobs)
    if not wanted:
        return {}
    found: dict[str, list[tuple[str, str, int, int]]] = {}
    paths = _walk_log(wanted, revs, [], cwd, stop_when_all_seen=True, found=found)
    missing = wanted - set(found)
    if missing:  # added only by a merge (an "evil merge" resolution): look at merge diffs too
        paths |= _walk_log(missing, [*revs, "-m"], [], cwd, stop_when_all_seen=True, found=found)
    if paths:
        # the whole history of those paths, in one consistent order (the early-stopped walk
        # above only saw the newest introductions)
        older: dict[str, list[tuple[str, str, int, int]]] = {}
        _walk_log(wanted, revs, sorted(paths), cwd, stop_when_all_seen=False, found=older)
        for sha, places in older.items():
            found[sha] = places
    # oldest first: by commit time, then by log position (log lists newer commits first)
    return {sha: sorted(places, key=lambda p: (p[2], -p[3])) for sha, places in found.items()}


def _walk_log(wanted: set[str], revs: list[str], paths: list[str], cwd: str | None,
              stop_when_all_seen: bool, found: dict[str, list[tuple[str, str, int, int]]]) -> set[str]:
    argv = [*gitio.GIT, "log", "--format=%x01%H %ct", "--raw", "--no-abbrev", "--no-renames",
            "--no-color", *revs, "--"]
    argv.extend(paths)
    if cwd:
        argv[1:1] = ["-C", cwd]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    commit = ""
    when = 0
    rank = 0
    seen_paths: set[str] = set()
    remaining = set(wanted)
    try:
        for line in proc.stdout:
            if line.startswith(b"\x01"):
                head = line[1:].split()
                commit = head[0].decode()
                when = int(head[1]) if len(head) > 1 else 0
                rank += 1
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
                if all(p[:2] != (commit, path) for p in places):
                    places.append((commit, path, when, rank))
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
