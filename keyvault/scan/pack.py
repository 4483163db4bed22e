"""History scanning straight from git's pack files: inflate only what git stored, look at each
stored delta once, and ask git for the full content of the few objects that need it.

Why: git stores most versions of a file as a delta against another version (git/git: 153k of
165k blobs, 0.49 GB of delta data standing for 5.5 GB of content). Every other scanner asks git
to rebuild all 5.5 GB and searches it; most of those bytes were copied from a version that was
already searched. Here:

1. Every non-delta blob is inflated and scanned in full (git/git: 0.13 GB).
2. Every delta blob is inflated (only the delta: copy instructions plus inserted bytes) and
   searched for *needles*: pieces of `sk-ant-` and of its base64 and UTF-16 forms short enough
   that any credential the delta brings in must leave one in the inserted bytes, even when the
   literal straddles a copy/insert boundary or git's 127-byte split of long inserts:
   - the raw literal split after character 1-3 leaves `ant-`; after 4-6, `sk-a` or the family
     marker (`api03-`, `admin01-`) that follows it;
   - each base64 form likewise leaves one of two 4-5 character pieces;
   - inserted NUL bytes (binary content: UTF-16, archives) make the delta a suspect outright.
3. A delta is a *suspect* if it holds a needle, is binary (or its base is), or its base
   contains a credential literal (it may have copied it). Suspects are rebuilt by
   `git cat-file --batch` (git's C delta code) and scanned in full, exactly as before.
4. When a suspect turns out to hold a literal, every delta built on it (transitively) is
   rebuilt and scanned too: whatever it copied is covered.

The cost is inflating what git stored plus a handful of `bytes.find` over it, split over every
core. What this trusts: delta copies come from git's own encoder (copies of at least a few bytes
from the base, inserts in runs of at most 127 bytes), which is what `git gc`, `git repack` and
every fetch from a git server produce. Objects the pack reader cannot place (loose objects,
alternates, unknown index versions) go through the plain `git cat-file` reader instead.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib

from keyvault.scan import gitio
from keyvault.scan.engine import Known, might_hold, scan_bytes

STRONG = (b"sk-ant-", b"c2stYW50L", b"NrLWFudC", b"zay1hbnQt", b"s\x00k\x00-\x00a\x00n\x00t\x00-",
          b"sk%2Dant%2D", b"sk%2dant%2d")
NEEDLES = (
    b"ant-", b"sk-a", b"api03-", b"admin01-",
    b"YW50L", b"c2stY",  # base64, byte offset 0: c2st|YW50L
    b"WFudC", b"NrLW",   # offset 1: Nr|LWFudC
    b"hbnQt", b"zay1h",  # offset 2: zay1|hbnQt
)
_OFS, _REF = 6, 7
_MAGIC2 = frozenset((b"\x1f\x8b", b"PK", b"BZ", b"\xfd7"))


class PackIndex:
    """One .idx (version 2) file: object ids and their offsets in the .pack beside it."""

    __slots__ = ("pack", "ids", "offsets", "size")

    def __init__(self, pack: str, ids: list[bytes], offsets: list[int], size: int) -> None:
        self.pack = pack
        self.ids = ids
        self.offsets = offsets
        self.size = size


def read_index(idx_path: str, hash_len: int) -> PackIndex | None:
    pack = idx_path[:-4] + ".pack"
    try:
        with open(idx_path, "rb") as fh:
            d = fh.read()
        size = os.path.getsize(pack)
    except OSError:
        return None
    if d[:4] != b"\xfftOc" or struct.unpack(">I", d[4:8])[0] != 2:
        return None  # version 1 indexes (git before 1.5.2) take the plain path
    n = struct.unpack(">I", d[8 + 255 * 4:8 + 256 * 4])[0]
    ids_at = 8 + 1024
    offs_at = ids_at + (hash_len + 4) * n
    large_at = offs_at + 4 * n
    if len(d) < large_at:
        return None
    raw = struct.unpack(f">{n}I", d[offs_at:large_at])
    offsets = list(raw)
    for i, o in enumerate(raw):
        if o & 0x80000000:
            j = large_at + 8 * (o & 0x7FFFFFFF)
            offsets[i] = struct.unpack(">Q", d[j:j + 8])[0]
    ids = [d[ids_at + hash_len * i: ids_at + hash_len * (i + 1)] for i in range(n)]
    return PackIndex(pack, ids, offsets, size)


def object_dirs(cwd: str | None) -> tuple[str, int] | None:
    code, out, _ = gitio.run(["rev-parse", "--git-path", "objects", "--show-object-format"], cwd=cwd, check=False)
    if code != 0:
        return None
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 2:
        return None
    objects = os.path.join(cwd or os.getcwd(), lines[0])
    hash_len = {"sha1": 20, "sha256": 32}.get(lines[1].strip())
    if hash_len is None:
        return None
    return objects, hash_len


class Entry:
    """A packed object to read: where it is, where it ends, what it is."""

    __slots__ = ("offset", "end", "kind", "sha")

    def __init__(self, offset: int, end: int, kind: str, sha: str) -> None:
        self.offset = offset
        self.end = end
        self.kind = kind
        self.sha = sha


def plan(objs: list, cwd: str | None) -> tuple[dict[str, list[Entry]], list, dict[str, dict[bytes, int]]] | None:
    """Place each object in a pack: ({pack: entries in offset order}, objects that are not
    packed here, {pack: id -> offset}); None when the packs cannot be read at all."""
    where = object_dirs(cwd)
    if where is None:
        return None
    objects_dir, hash_len = where
    pack_dir = os.path.join(objects_dir, "pack")
    try:
        names = sorted(n for n in os.listdir(pack_dir) if n.endswith(".idx"))
    except OSError:
        names = []
    located: dict[bytes, tuple[str, int]] = {}
    ends: dict[str, dict[int, int]] = {}
    by_id: dict[str, dict[bytes, int]] = {}
    for name in names:
        idx = read_index(os.path.join(pack_dir, name), hash_len)
        if idx is None:
            continue
        ordered = sorted(idx.offsets)
        ends[idx.pack] = dict(zip(ordered, [*ordered[1:], idx.size - hash_len]))
        table = dict(zip(idx.ids, idx.offsets))
        by_id[idx.pack] = table
        for oid, off in table.items():
            located.setdefault(oid, (idx.pack, off))
    packed: dict[str, list[Entry]] = {}
    rest = []
    for o in objs:
        spot = located.get(bytes.fromhex(o.sha))
        if spot is None:
            rest.append(o)
            continue
        pack, off = spot
        packed.setdefault(pack, []).append(Entry(off, ends[pack][off], o.kind, o.sha))
    for entries in packed.values():
        entries.sort(key=lambda e: e.offset)
    return packed, rest, by_id


# --- phase 1, in each worker -----------------------------------------------------------------

# per delta: (offset, base offset or -1, base id or b"", has needle, has NUL)
DeltaInfo = tuple[int, int, bytes, bool, bool]


def read_slice(pack: str, entries: list[Entry], known: Known | None, hash_len: int):  # type: ignore[no-untyped-def]
    """Inflate and scan one contiguous slice of a pack. Returns (hits, deltas, strong offsets,
    binary offsets, suspects: [sha] needing full content, bytes inflated)."""
    from keyvault.scan.history import _raw

    hits = []
    deltas: list[DeltaInfo] = []
    strong: list[int] = []
    binary: list[int] = []
    suspects: list[str] = []
    inflated = 0
    with open(pack, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            decompress = zlib.decompress
            for e in entries:
                off = e.offset
                c = mm[off]
                typ = (c >> 4) & 7
                size = c & 15
                shift = 4
                p = off + 1
                while c & 0x80:
                    c = mm[p]
                    p += 1
                    size |= (c & 0x7F) << shift
                    shift += 7
                base_off = -1
                base_id = b""
                if typ == _OFS:
                    c = mm[p]
                    p += 1
                    b = c & 127
                    while c & 128:
                        c = mm[p]
                        p += 1
                        b = ((b + 1) << 7) | (c & 127)
                    base_off = off - b
                elif typ == _REF:
                    base_id = mm[p:p + hash_len]
                    p += hash_len
                try:
                    data = decompress(mm[p:e.end], bufsize=max(size, 1))
                except zlib.error:
                    suspects.append(e.sha)  # let git read it (and report if it cannot)
                    continue
                inflated += len(data)
                if typ >= _OFS:
                    if e.kind != "blob":
                        suspects.append(e.sha)  # a deltified commit or tag: git rebuilds it
                        continue
                    needle = False
                    for n in NEEDLES:
                        if n in data:
                            needle = True
                            break
                    if known is not None and not needle:
                        needle = any(v in data for v, _ in known.values)
                    deltas.append((off, base_off, bytes(base_id), needle, b"\x00" in data))
                    continue
                if e.kind in ("commit", "tag"):
                    body = data.find(b"\n\n")
                    found = scan_bytes(data[body + 2:] if body >= 0 else b"", known)
                    if found:
                        hits.append((e.sha, e.kind, [_raw(h) for h in found]))
                    continue
                hold = False
                for lit in STRONG:
                    if lit in data:
                        strong.append(off)
                        hold = True
                        break
                if b"\x00" in data:
                    binary.append(off)
                    hold = True
                elif data[:2] in _MAGIC2:
                    hold = True  # BZh and \xfd7 (xz) always hold NUL somewhere: covered above
                if known is not None and not hold:
                    hold = might_hold(data, known)
                if hold:
                    found = scan_bytes(data, known)
                    if found:
                        hits.append((e.sha, e.kind, [_raw(h) for h in found]))
        finally:
            mm.close()
    return hits, deltas, strong, binary, suspects, inflated


# --- driving it ------------------------------------------------------------------------------

_JOBS: list[tuple[str, list[Entry]]] = []
_KNOWN: Known | None = None
_HASH_LEN = 20


def _phase1(i: int):  # type: ignore[no-untyped-def]
    pack, entries = _JOBS[i]
    return read_slice(pack, entries, _KNOWN, _HASH_LEN)


def _slices(packed: dict[str, list[Entry]], n: int) -> list[tuple[str, list[Entry]]]:
    """Contiguous slices of about equal stored bytes, so each worker inflates its share."""
    total = sum(e.end - e.offset for entries in packed.values() for e in entries) or 1
    target = total / n
    out: list[tuple[str, list[Entry]]] = []
    for pack, entries in packed.items():
        cur: list[Entry] = []
        acc = 0
        for e in entries:
            cur.append(e)
            acc += e.end - e.offset
            if acc >= target:
                out.append((pack, cur))
                cur, acc = [], 0
        if cur:
            out.append((pack, cur))
    return out


def _trace(what: str, since: float) -> float:
    import time

    now = time.perf_counter()
    if os.environ.get("KEYVAULT_SCAN_TRACE"):
        cpu = os.times()
        os.write(2, f"keyvault: trace: {what}: {now - since:.2f} s (cpu self {cpu.user + cpu.system:.1f} s, "
                    f"children {cpu.children_user + cpu.children_system:.1f} s)\n".encode())
    return now


def scan(objs: list, known: Known | None, jobs: int, cwd: str | None):  # type: ignore[no-untyped-def]
    """(hits, notes, objects for the plain reader) or None if the packs cannot be used."""
    import time

    t = time.perf_counter()
    placed = plan(objs, cwd)
    t = _trace("pack plan", t)
    if placed is None:
        return None
    packed, rest, by_id = placed
    where = object_dirs(cwd)
    assert where is not None
    global _JOBS, _KNOWN, _HASH_LEN
    stored = sum(e.end - e.offset for entries in packed.values() for e in entries)
    if stored < int(os.environ.get("KEYVAULT_SCAN_PARALLEL_BYTES", 16 << 20)):
        jobs = 1  # forking costs more than it saves on a small repository
    _JOBS = _slices(packed, max(1, jobs))
    _KNOWN = known
    _HASH_LEN = where[1]
    if jobs > 1 and len(_JOBS) > 1:
        import multiprocessing

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        if method is None:
            results = [_phase1(i) for i in range(len(_JOBS))]
        else:
            with multiprocessing.get_context(method).Pool(min(jobs, len(_JOBS))) as pool:
                results = pool.map(_phase1, range(len(_JOBS)), chunksize=1)
    else:
        results = [_phase1(i) for i in range(len(_JOBS))]
    t = _trace(f"phase 1 ({len(_JOBS)} slices, {sum(r[5] for r in results) >> 20} MiB inflated)", t)
    hits = []
    notes: list[str] = []
    sha_at: dict[tuple[str, int], str] = {}
    for pack, entries in _JOBS:
        for e in entries:
            sha_at[(pack, e.offset)] = e.sha
    strong: set[tuple[str, int]] = set()
    binary: set[tuple[str, int]] = set()
    deltas: dict[tuple[str, int], tuple[tuple[str, int] | None, bool, bool]] = {}
    suspects: set[str] = set()
    for (pack, _), (h, d, s, b, sus, _n) in zip(_JOBS, results):
        hits.extend(h)
        strong.update((pack, o) for o in s)
        binary.update((pack, o) for o in b)
        suspects.update(sus)
        for off, base_off, base_id, needle, nul in d:
            if base_off < 0:
                bo = by_id[pack].get(base_id)
                base = (pack, bo) if bo is not None else None
            else:
                base = (pack, base_off)
            deltas[(pack, off)] = (base, needle, nul)
    # binary: inherited along delta chains. In pack order a base (OFS_DELTA) comes before its
    # deltas, so one pass settles almost all; the rest (REF_DELTA bases stored later) loop.
    is_bin: dict[tuple[str, int], bool] = {}
    pending = sorted(deltas)
    for _ in range(64):
        later = []
        for node in pending:
            base, _needle, nul = deltas[node]
            if nul or base in binary:
                is_bin[node] = True
            elif base is None or base not in deltas:
                is_bin[node] = False
            elif base in is_bin:
                is_bin[node] = is_bin[base]
            else:
                later.append(node)
        if not later:
            break
        pending = later
    for node in pending:
        is_bin.setdefault(node, True)  # unresolved (a cycle would be a corrupt pack): rebuild it

    def is_binary(node: tuple[str, int]) -> bool:
        return is_bin.get(node, False)

    children: dict[tuple[str, int], list[tuple[str, int]]] = {}
    first: set[tuple[str, int]] = set()
    for node, (base, needle, _nul) in deltas.items():
        if base is not None:
            children.setdefault(base, []).append(node)
        if needle or base is None or base in strong or is_binary(node) or (base not in deltas and base not in sha_at):
            first.add(node)
    scanned: set[tuple[str, int]] = set()
    t = _trace(f"graph ({len(deltas)} deltas, {len(first)} suspects)", t)
    todo = first
    while todo:
        todo_shas = [sha_at[n] for n in sorted(todo) if n in sha_at]
        round_hits, round_notes, holding = _full_scan(todo_shas, known, cwd)
        hits.extend(round_hits)
        notes.extend(round_notes)
        scanned |= todo
        # everything built on an object that holds a literal may have copied it
        nxt: set[tuple[str, int]] = set()
        stack = [n for n in todo if sha_at.get(n) in holding]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in scanned and child not in nxt:
                    nxt.add(child)
                    stack.append(child)
        todo = nxt
    if suspects:
        round_hits, round_notes, _ = _full_scan(sorted(suspects), known, cwd)
        hits.extend(round_hits)
        notes.extend(round_notes)
    _trace(f"suspects rebuilt by git ({len(scanned)} blobs, {len(suspects)} other)", t)
    return hits, notes, rest


def _full_scan(shas: list[str], known: Known | None, cwd: str | None):  # type: ignore[no-untyped-def]
    """Full content of these objects through git, scanned; also which of them hold a literal."""
    from keyvault.scan import decode
    from keyvault.scan.history import _raw, read_objects

    holding: set[str] = set()
    hits = []
    notes: list[str] = []
    for sha, kind, data, obj_notes in read_objects(shas, cwd):
        notes.extend(obj_notes)
        if kind in ("commit", "tag"):
            body = data.find(b"\n\n")
            data = data[body + 2:] if body >= 0 else b""
        elif any(lit in data for lit in STRONG):
            holding.add(sha)
        budget = decode.Budget()
        found = scan_bytes(data, known, budget) if might_hold(data, known) else []
        notes.extend(f"blob {sha}: {n}" for n in budget.notes)
        if found:
            hits.append((sha, kind, [_raw(h) for h in found]))
    return hits, notes, holding
