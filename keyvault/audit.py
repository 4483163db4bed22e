"""The audit trail: an append-only, tamper-evident log of key lifecycle events.

Each line is one JSON record `{"v", "seq", "time", "event", "fields", "prev_mac", "mac"}` in a
canonical form (sorted keys, no spaces, ASCII only). `mac` is HMAC-SHA256 over the canonical
record without `mac`, and `prev_mac` is the previous record's `mac`, so every record vouches for
all before it: an edited record fails its own MAC, a dropped, inserted or reordered one breaks
the chain at a named line. Dropping records from the end leaves a valid chain, so a small head
file beside the log (`<log>.head`, MACed too) remembers the last seq and mac.

Records hold fingerprints, ids, hints and versions: never key values. `append` refuses a field
that holds a `Secret` or text that looks like a credential (`sk-ant-<family>-` and a body).

The MAC key comes from `KEYVAULT_AUDIT_KEY` or from a key file created 0600 beside the log
(`<log>.key`). The key file only proves the log was not edited by someone who cannot read it;
for evidence against a local attacker, keep the key in the environment from a secret store and
ship the log elsewhere.

Appends take an exclusive `flock` on the log, so concurrent writers (several rotators, a job
and an operator) each get their own seq; each write is one `write` of a whole line + `fsync`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyvault.backends.localfs import fsync_dir
from keyvault.errors import KeyvaultError
from keyvault.keys import Secret
from keyvault.redact import credential_in

FORMAT_VERSION = 1
GENESIS = "0" * 64  # prev_mac of the first record
KEY_ENV = "KEYVAULT_AUDIT_KEY"
PATH_ENV = "KEYVAULT_AUDIT_LOG"
MIN_KEY_BYTES = 16
MAX_RECORD_BYTES = 64 * 1024  # one record stays one small, atomic write
MAX_PROBLEMS = 100  # a report of a file of garbage names the first lines, then counts
_EVENT_RE = re.compile(r"[a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*\Z")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAC_RE = re.compile(r"[0-9a-f]{64}\Z")
_RECORD_KEYS = frozenset({"v", "seq", "time", "event", "fields", "prev_mac", "mac"})


class AuditError(KeyvaultError):
    """The audit log cannot be written or read (a refused field, no key, a damaged tail)."""


@dataclass(frozen=True)
class Problem:
    """One piece of evidence of tampering, with the line it was found on (1-based)."""

    line: int | None  # None when it concerns the log as a whole (head file, missing log)
    kind: str  # edited | dropped | inserted | reordered | truncated | malformed | head | key
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


@dataclass
class VerifyReport:
    """What `AuditLog.verify()` found: intact, or the problems with their lines."""

    path: Path
    records: int = 0
    last_seq: int = 0
    head_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0  # problems past MAX_PROBLEMS, counted but not kept

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, line: int | None, kind: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(line, kind, message))
        else:
            self.omitted += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "records": self.records,
            "last_seq": self.last_seq,
            "head_seq": self.head_seq,
            "problems": [{"line": p.line, "kind": p.kind, "message": p.message} for p in self.problems],
            "omitted": self.omitted,
        }


def default_path() -> Path:
    """`$KEYVAULT_AUDIT_LOG`, else `$XDG_STATE_HOME/keyvault/audit.jsonl` (~/.local/state)."""
    explicit = os.environ.get(PATH_ENV)
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "keyvault" / "audit.jsonl"


# --- what may be recorded --------------------------------------------------------------------


def _article(label: str) -> str:
    return f"{'an' if label[0] in 'aeiouAEIOU' else 'a'} {label}"


def _check_value(name: str, value: Any, depth: int = 0) -> Any:
    """Return the JSON form of a field value, refusing secrets and what JSON cannot hold."""
    if depth > 8:
        raise AuditError(f"audit field {name!r} is nested too deeply (more than 8 levels)")
    if isinstance(value, Secret):
        raise AuditError(
            f"audit field {name!r} holds a key ({value.family.label}); record its fingerprint "
            "(secret.fingerprint) or hint (secret.hint), never the value"
        )
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise AuditError(f"audit field {name!r} is {value!r}; JSON cannot hold it")
        return value
    if isinstance(value, str):
        label = credential_in(value)
        if label:
            raise AuditError(
                f"audit field {name!r} looks like it holds {_article(label)} value; record its "
                "fingerprint or hint, never the value"
            )
        return value
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return _check_value(name, str(value), depth)
    if isinstance(value, (list, tuple)):
        return [_check_value(name, v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError(f"audit field {name!r} has a non-text key of type {type(k).__name__}")
            _check_value(name, k, depth + 1)
            out[k] = _check_value(name, v, depth + 1)
        return out
    raise AuditError(
        f"audit field {name!r} has type {type(value).__name__}; record text, numbers, booleans, "
        "lists or mappings of them"
    )


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def _mac(key: bytes, data: bytes) -> str:
    from cryptography.hazmat.primitives import hashes, hmac

    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize().hex()


def _mac_ok(key: bytes, data: bytes, mac: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, hmac

    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    try:
        h.verify(bytes.fromhex(mac))
    except (InvalidSignature, ValueError):
        return False
    return True


def _record_mac(key: bytes, record: Mapping[str, Any]) -> str:
    return _mac(key, _canonical({k: v for k, v in record.items() if k != "mac"}))


def _head_payload(seq: int, mac: str) -> bytes:
    return f"keyvault-audit-head\n{seq}\n{mac}".encode("ascii")


# --- the key --------------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise AuditError(f"cannot read the audit key file {path}: {exc.strerror}") from None
    import stat

    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise AuditError(f"audit key file {path} is not a regular file (a symlink?); refusing to use it")
    if st.st_uid != os.geteuid():
        raise AuditError(f"audit key file {path} is owned by another user (uid {st.st_uid}); refusing to use it")
    if st.st_mode & 0o077:
        raise AuditError(
            f"audit key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    text = path.read_text("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise AuditError(f"audit key file {path} does not hold a hex key (expected 64 hex digits)") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(f"audit key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def _create_key_file(path: Path) -> bytes:
    """Create the key file 0600 without a window where another writer sees it half-written:
    write a private temp file, then hard-link it into place (fails if someone else won)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return _read_key_file(path)


def _key_from_env() -> bytes | None:
    value = os.environ.get(KEY_ENV)
    if value is None:
        return None
    raw = value.strip().encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise AuditError(f"{KEY_ENV} is {len(raw)} bytes; use at least {MIN_KEY_BYTES} (e.g. 64 hex digits)")
    return raw



# --- the log --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of the log as read: its record when it parses, else why not."""

    number: int
    raw: bytes
    complete: bool  # ended with a newline
    record: dict[str, Any] | None
    error: str | None


def _parse_line(number: int, raw: bytes, complete: bool) -> Line:
    def bad(why: str) -> Line:
        return Line(number, raw, complete, None, why)

    if not raw.strip():
        return bad("an empty line")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        return bad(f"byte {exc.start + 1} is not ASCII (records are written in ASCII only)")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        what = exc.msg if isinstance(exc, json.JSONDecodeError) else "too deeply nested"
        return bad(f"not valid JSON ({what})")
    if not isinstance(record, dict):
        return bad(f"not a JSON object (a {type(record).__name__})")
    keys = set(record)
    if keys != _RECORD_KEYS:
        missing, extra = sorted(_RECORD_KEYS - keys), sorted(keys - _RECORD_KEYS)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        return bad("not an audit record (" + "; ".join(parts) + ")")
    if record["v"] != FORMAT_VERSION:
        return bad(f"format version {record['v']!r}; this keyvault reads version {FORMAT_VERSION}")
    if type(record["seq"]) is not int or record["seq"] < 1:
        return bad("seq is not a positive integer")
    for name in ("time", "event"):
        if not isinstance(record[name], str):
            return bad(f"{name} is not text")
    if not isinstance(record["fields"], dict):
        return bad("fields is not an object")
    for name in ("prev_mac", "mac"):
        if not isinstance(record[name], str) or not _MAC_RE.match(record[name]):
            return bad(f"{name} is not 64 lowercase hex digits")
    return Line(number, raw, complete, record, None)


def _lines(data: bytes) -> Iterator[Line]:
    start, number = 0, 0
    while start < len(data):
        number += 1
        end = data.find(b"\n", start)
        if end < 0:
            yield _parse_line(number, data[start:], False)
            return
        yield _parse_line(number, data[start:end], True)
        start = end + 1


def _last_line(fd: int) -> bytes | None:
    """The last complete line of the file open at fd (read backwards in blocks), or None."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    block, pos, tail = 8192, size, b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        # the final byte is the log's last newline; look for the one before it
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        if cut >= 0:
            return tail[cut + 1:]
        if len(tail) > MAX_RECORD_BYTES + 2:
            break
    return tail


class AuditLog:
    """One audit log file. `append(event, **fields)` records; `verify()` checks the chain."""

    def __init__(self, path: str | os.PathLike[str] | None = None, key: bytes | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.key_path = self.path.with_name(self.path.name + ".key")
        self.head_path = self.path.with_name(self.path.name + ".head")
        if isinstance(key, str):
            key = key.encode("utf-8")
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise AuditError(f"the audit key is {len(key)} bytes; use at least {MIN_KEY_BYTES}")
        self._key = key

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    # the key: explicit, then the environment, then the key file (created only by writers)
    def _resolve_key(self, create: bool) -> bytes:
        if self._key is not None:
            return self._key
        env = _key_from_env()
        if env is not None:
            return env
        try:
            return _read_key_file(self.key_path)
        except FileNotFoundError:
            if not create:
                raise AuditError(
                    f"no audit key: set {KEY_ENV}, or keep the key file {self.key_path} beside the log"
                ) from None
        return _create_key_file(self.key_path)

    def append(self, event: str, /, **fields: Any) -> dict[str, Any]:
        """Record one event; returns the record as written. Refuses key values in fields."""
        if not isinstance(event, str) or not _EVENT_RE.match(event):
            raise AuditError(
                f"audit event {str(event)[:40]!r} is not a dotted lowercase name like 'rotate.promote'"
            )
        clean: dict[str, Any] = {}
        for name, value in fields.items():
            if not _FIELD_RE.match(name):
                raise AuditError(f"audit field name {name!r} is not an identifier")
            clean[name] = _check_value(name, value)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # a file where the directory should be, no permission, ...
            raise AuditError(f"cannot create the audit log's directory {self.path.parent}: "
                             f"{exc.strerror or type(exc).__name__}") from None
        key = self._resolve_key(create=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AuditError(f"audit log {self.path} is a symlink; refusing to write through it") from None
            raise AuditError(f"cannot open the audit log {self.path}: {exc.strerror}") from None
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._append_locked(fd, key, event, clean)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _append_locked(self, fd: int, key: bytes, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        rfd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            size = os.fstat(rfd).st_size
            if size and os.pread(rfd, 1, size - 1) != b"\n":
                raise AuditError(
                    f"audit log {self.path} ends with a partial record (a write cut short, or a "
                    "truncated file); run 'keyvault audit verify' before recording more"
                )
            last_raw = _last_line(rfd)
        finally:
            os.close(rfd)
        prev_seq, prev_mac = 0, GENESIS
        if last_raw is not None:
            last = _parse_line(0, last_raw, True)
            if last.record is None:
                raise AuditError(
                    f"the last record of {self.path} is damaged ({last.error}); run 'keyvault audit verify'"
                )
            prev_seq, prev_mac = last.record["seq"], last.record["mac"]
        head = self._read_head(key)
        if head is not None and head[0] > prev_seq:
            raise AuditError(
                f"audit log {self.path} ends at seq {prev_seq} but its head records seq {head[0]}: "
                "records were removed from the end; run 'keyvault audit verify'"
            )
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        record: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "seq": prev_seq + 1,
            "time": now,
            "event": event,
            "fields": fields,
            "prev_mac": prev_mac,
        }
        record["mac"] = _record_mac(key, record)
        line = _canonical(record) + b"\n"
        if len(line) > MAX_RECORD_BYTES:
            raise AuditError(f"audit record for {event!r} is {len(line)} bytes; the limit is {MAX_RECORD_BYTES}")
        written = os.write(fd, line)
        if written != len(line):  # disk full: the partial line is reported by verify and append
            raise AuditError(f"short write to the audit log {self.path} ({written} of {len(line)} bytes)")
        os.fsync(fd)
        if size == 0:
            fsync_dir(self.path.parent)
        self._write_head(key, record["seq"], record["mac"])
        return record

    # the head: last seq and mac, so that dropping records from the end is evident
    def _read_head(self, key: bytes) -> tuple[int, str] | None:
        try:
            text = self.head_path.read_text("ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditError(f"cannot read the audit head {self.head_path}: {exc}") from None
        try:
            data = json.loads(text)
            seq, mac, head_mac = int(data["seq"]), str(data["mac"]), str(data["head_mac"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"audit head {self.head_path} is damaged (not the JSON keyvault writes)") from None
        if not _mac_ok(key, _head_payload(seq, mac), head_mac):
            raise AuditError(f"audit head {self.head_path} fails its MAC: edited, or a different audit key")
        return seq, mac

    def _write_head(self, key: bytes, seq: int, mac: str) -> None:
        body = json.dumps({"seq": seq, "mac": mac, "head_mac": _mac(key, _head_payload(seq, mac))}) + "\n"
        tmp = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, body.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.head_path)

    # reading
    def lines(self) -> Iterator[Line]:
        """Every line as read, parsed or with the reason it does not parse (unverified)."""
        return _lines(self._read_bytes())

    def records(self) -> Iterator[dict[str, Any]]:
        """The records that parse, in file order (unverified: use `verify()` for evidence)."""
        for line in self.lines():
            if line.record is not None:
                yield line.record

    def _read_bytes(self) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise AuditError(f"no audit log at {self.path}") from None
        except IsADirectoryError:
            raise AuditError(f"{self.path} is a directory, not an audit log") from None
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc.strerror}") from None

    def verify(self) -> VerifyReport:
        """Check every record's MAC, the chain and the head. Tampering is reported in the
        report (with lines); only a missing log, key or unreadable file raises AuditError."""
        report = VerifyReport(self.path)
        try:
            data: bytes | None = self._read_bytes()
        except AuditError:
            if not self.head_path.exists():
                raise
            data = None
        key = self._resolve_key(create=False)
        head: tuple[int, str] | None = None
        head_bad = False
        try:
            head = self._read_head(key)
        except AuditError as exc:
            head_bad = True
            report.add(None, "head", str(exc))
        if head is not None:
            report.head_seq = head[0]
        if data is None:
            seq = head[0] if head else "?"
            report.add(None, "truncated", f"the audit log {self.path} is missing but its head records seq {seq}")
            return report
        _verify_lines(key, data, head, head_bad, report)
        return report


_SEQ_RE = re.compile(rb'"seq":([0-9]{1,18})[,}]')


def _verify_lines(
    key: bytes, data: bytes, head: tuple[int, str] | None, head_bad: bool, report: VerifyReport
) -> None:
    """Two streaming passes: a cheap one that notes where each seq sits (to tell a reordered
    record from a dropped one), then the real one. Memory stays O(records), not O(bytes)."""
    problems = report.problems
    add = report.add
    seq_at: dict[int, list[int]] = {}
    total = 0
    for total, raw in enumerate(data.split(b"\n"), 1):
        m = _SEQ_RE.search(raw)
        if m:
            seq_at.setdefault(int(m.group(1)), []).append(total)
    if data.endswith(b"\n") or not data:
        total -= 1  # split() yields an empty piece after the final newline

    macs_ok = parsed = prev_line = 0
    prev: dict[str, Any] | None = None
    in_break = False  # after a chain break, stay quiet until the chain links up again
    for ln in _lines(data):
        if ln.record is None:
            if not ln.complete and ln.number == total:
                add(ln.number, "truncated", f"the log ends with a partial record ({ln.error}): truncated, "
                    "or a write cut short")
            else:
                add(ln.number, "malformed", f"{ln.error}: the record was edited or corrupted")
            prev, in_break = None, True
            continue
        rec, seq = ln.record, ln.record["seq"]
        parsed += 1
        if not ln.complete:
            add(ln.number, "truncated", "the log ends without a newline after the last record: truncated, "
                "or a write cut short")
        if _mac_ok(key, _canonical({k: v for k, v in rec.items() if k != "mac"}), rec["mac"]):
            macs_ok += 1
            if _canonical(rec) != ln.raw:
                add(ln.number, "edited", f"seq {seq} is not in the form keyvault writes (edited by hand?)")
        else:
            add(ln.number, "edited", f"seq {seq} fails its MAC: the record was edited, or inserted by "
                "someone without the audit key")
        expected = (prev["seq"] + 1) if prev is not None else (1 if ln.number == 1 else None)
        expected_mac = prev["mac"] if prev is not None else (GENESIS if ln.number == 1 else None)
        if expected is not None and seq == expected and rec["prev_mac"] == expected_mac:
            in_break = False
        elif not in_break and expected is not None:
            in_break = True
            where = f"line {prev_line}" if prev is not None else "the start of the log"
            later = [n for n in seq_at.get(expected, []) if n > ln.number]
            earlier = [n for n in seq_at.get(seq, []) if n < ln.number]
            if seq == expected:
                add(ln.number, "inserted", f"seq {seq} does not chain to {where}: a record before it was "
                    "replaced or inserted")
            elif seq < expected and earlier:
                add(ln.number, "inserted", f"seq {seq} again (also at line {earlier[0]}): a copy of a record "
                    "was inserted")
            elif later:
                add(ln.number, "reordered", f"records reordered: seq {seq} comes after {where}, but seq "
                    f"{expected} is at line {later[0]}")
            elif seq < expected:
                add(ln.number, "reordered", f"seq {seq} comes after seq {expected - 1}: records reordered")
            else:
                gone = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}-{seq - 1}"
                add(ln.number, "dropped", f"{gone} dropped before this line ({where} is seq {expected - 1})")
        prev, prev_line = rec, ln.number
        report.last_seq = seq

    report.records = parsed
    if macs_ok == 0 and (parsed >= 2 or (parsed == 1 and head_bad)):
        report.omitted = 0
        problems[:] = [Problem(None, "key", f"no record's MAC matches: wrong audit key ({KEY_ENV} or "
                               f"{report.path.name}.key), or every record was rewritten")]
        return
    _check_head(total, prev, head, head_bad, parsed, report)


def _check_head(
    total: int, last: dict[str, Any] | None, head: tuple[int, str] | None, head_bad: bool, parsed: int,
    report: VerifyReport,
) -> None:
    """The chain cannot show records dropped from the end; the head can."""
    add = report.add
    if head is None:
        if parsed > 1 and not head_bad:
            add(None, "head", f"the head file {report.path.name}.head is missing: the end of the log cannot be "
                "proven complete")
        return
    head_seq, head_mac = head
    if not total:
        add(None, "truncated", f"the log is empty but its head records seq {head_seq}: records were removed")
    elif last is None:
        return  # the last line is damaged: already reported
    elif last["seq"] < head_seq:
        add(total, "truncated", f"the log ends at seq {last['seq']} but its head records seq {head_seq}: "
            "records were removed from the end")
    elif last["seq"] == head_seq and last["mac"] != head_mac:
        add(total, "edited", f"the last record (seq {head_seq}) is not the one the head records")
    elif last["seq"] > head_seq + 1:
        # one record past the head is a crash between the append and the head update
        add(None, "head", f"the head records seq {head_seq} but the log goes on to seq {last['seq']}: the head "
            "file was replaced by an older copy")
