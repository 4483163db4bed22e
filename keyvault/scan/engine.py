"""Scan one buffer (a file, a blob, stdin, an added line) for credentials, looking through the
decoders in decode.py. The one entry point is `scan_bytes`.

A buffer is a *frame*: lines and columns are counted in it. Archives and compressed streams
open a new frame (a zip member has its own lines); decoders that work in place (base64,
UTF-16 strings inside a binary, wrapped keys) report the position of the encoded text in the
frame that holds it, so `path:line:col` always points at something a person can find.

Cost: a buffer without `sk-ant-` or one of its three base64 forms costs four `bytes.find`
calls (C speed), plus one `memchr` for NUL. Only hits are looked at in Python.
"""

from __future__ import annotations

import re

from keyvault.keys import Family, Secret, family_of, UNKNOWN
from keyvault.scan import decode
from keyvault.scan.detect import LITERAL, candidates, classify

PREFILTER = (LITERAL, *decode.B64_FORMS, *decode.PERCENT_FORMS)
_ALLOW: list[re.Pattern[bytes]] = []  # `keyvault: allow`, compiled on first use
_ALLOW_REACH = 4096  # how far from a key an allow comment on the same line is looked for
_COLUMN_CHARS_LIMIT = 1 << 16


class Hit:
    """A credential found in a buffer, before allowlists and baselines are applied."""

    __slots__ = ("secret", "family", "line", "column", "offset", "decoded", "member", "allowed")

    def __init__(self, secret: Secret, family: Family, offset: int, decoded: tuple[str, ...],
                 member: str) -> None:
        self.secret = secret
        self.family = family
        self.offset = offset  # byte offset in the frame (the member for archives)
        self.decoded = decoded
        self.member = member  # "" or "!name" for archive members, nested as "!a.jar!b.txt"
        self.line: int | None = None
        self.column: int | None = None
        self.allowed = False

    @property
    def chain(self) -> str | None:
        return ">".join(self.decoded) if self.decoded else None

    def __repr__(self) -> str:
        return f"Hit({self.family.rule}, {self.secret.hint}, line={self.line}, decoded={self.chain!r})"


class Known:
    """The team's own keys (from --known sources), looked for as exact byte strings."""

    __slots__ = ("values",)

    def __init__(self, secrets: list[Secret]) -> None:
        seen: dict[str, Secret] = {}
        for s in secrets:
            seen.setdefault(s.fingerprint, s)
        self.values = [(s.reveal().encode("utf-8"), s) for s in seen.values() if s.reveal()]


def might_hold(data: bytes | bytearray | memoryview, known: Known | None = None) -> bool:
    """The cheap test every buffer gets first: could anything in it be a finding?"""
    for literal in PREFILTER:
        if literal in data:
            return True
    if decode.container_kind(bytes(data[:10])) is not None:
        return True
    if b"\x00" in data and (decode.UTF16_FORM in data or decode.utf16_kind(bytes(data[:128]))):
        return True
    if known is not None:
        for value, _ in known.values:
            if value in data:
                return True
    return False


def scan_bytes(data: bytes, known: Known | None = None, budget: decode.Budget | None = None) -> list[Hit]:
    """Every credential in `data`, with line/column in its frame and the decoder chain."""
    if not might_hold(data, known):
        return []
    out: list[Hit] = []
    _frame(data, (), "", 0, out, known, budget or decode.Budget())
    return out


def _frame(data: bytes, chain: tuple[str, ...], member: str, depth: int, out: list[Hit],
           known: Known | None, budget: decode.Budget) -> None:
    kind = decode.container_kind(data) if depth < decode.MAX_DEPTH else None
    if kind is not None:
        notes_before = len(budget.notes)
        if kind == "zip":
            members = decode.zip_members(data, budget)
            if members is not None:
                for name, content in members:
                    if might_hold(content, known):
                        _frame(content, (*chain, "zip"), f"{member}!{name}", depth + 1, out, known, budget)
                return
        else:
            inflate = {"gzip": decode.gunzip, "bzip2": decode.bunzip2, "xz": decode.unxz}[kind]
            content = inflate(data, budget)
            if content and might_hold(content, known):
                _frame(content, (*chain, kind), member, depth + 1, out, known, budget)
            if content and len(budget.notes) == notes_before:
                return
        # not a valid archive after all (a text starting with the magic, a damaged file):
        # its bytes are still scanned as they are
    binary = b"\x00" in data
    if binary:
        text_kind = decode.utf16_kind(data)
        if text_kind is not None and depth < decode.MAX_DEPTH:
            _frame(decode.decode_utf16(data, text_kind), (*chain, "utf-16"), member, depth + 1, out,
                   known, budget)
            return
    found: list[tuple[int, Secret, Family, tuple[str, ...]]] = []
    _inline(data, chain, depth, found, binary)
    if known is not None:
        for value, secret in known.values:
            pos = data.find(value)
            while pos >= 0:
                family = classify(secret.reveal()) or family_of(secret.reveal()) or UNKNOWN
                found.append((pos, secret, family, chain))
                pos = data.find(value, pos + len(value))
    if not found:
        return
    found.sort(key=lambda f: f[0])
    seen: set[tuple[int, str]] = set()
    line = 1
    last_pos = 0
    last_nl = -1
    for pos, secret, family, ch in found:
        key = (pos, secret.fingerprint)
        if key in seen:
            continue
        seen.add(key)
        hit = Hit(secret, family, pos, ch, member)
        if not binary:
            line += data.count(b"\n", last_pos, pos)
            nl = data.rfind(b"\n", last_pos, pos)
            if nl >= 0:
                last_nl = nl
            last_pos = pos
            hit.line = line
            prefix = data[last_nl + 1:pos]
            if len(prefix) <= _COLUMN_CHARS_LIMIT:
                hit.column = len(prefix.decode("utf-8", "replace")) + 1
            else:
                hit.column = len(prefix) + 1
            lo = max(last_nl + 1, pos - _ALLOW_REACH)
            end = data.find(b"\n", pos, pos + _ALLOW_REACH)
            hi = end if end >= 0 else min(len(data), pos + _ALLOW_REACH)
            if not _ALLOW:
                _ALLOW.append(re.compile(rb"keyvault:\s?allow"))
            hit.allowed = _ALLOW[0].search(data, lo, hi) is not None
        out.append(hit)


def _inline(data: bytes, chain: tuple[str, ...], depth: int,
            found: list[tuple[int, Secret, Family, tuple[str, ...]]], binary: bool) -> None:
    """Credentials in `data` itself and in the base64 / UTF-16 text inside it, each reported
    at the offset of the text that holds it."""
    if LITERAL in data:
        for c in candidates(data):
            found.append((c.start, Secret(c.value, c.family), c.family, (*chain, "join") if c.joined else chain))
    if depth >= decode.MAX_DEPTH:
        return
    hits: list[tuple[int, int]] = []  # (position of the encoded text, form)
    for form, literal in enumerate(decode.B64_FORMS):
        pos = data.find(literal)
        while pos >= 0:
            hits.append((pos, form))
            pos = data.find(literal, pos + 1)
    if hits:
        hits.sort()
        covered = -1
        for pos, form in hits:
            if pos < covered:
                continue  # already decoded as part of an earlier window
            group = pos - decode.B64_GROUP_BACK[form]
            decoded, covered, percent = decode.base64_window(data, group)
            if len(decoded) * 4 >= (decode.MAX_B64_CHARS - 8) * 3:
                # the window was cut: a key that starts near its end gets a window of its own
                covered = min(covered, group + decode.MAX_B64_CHARS - 400)
            if LITERAL not in decoded:
                continue
            sub: list[tuple[int, Secret, Family, tuple[str, ...]]] = []
            step = ("percent", "base64") if percent else ("base64",)
            _inline(decoded, (*chain, *step), depth + 1, sub, b"\x00" in decoded)
            at = max(group, 0)
            found.extend((at, s, f, ch) for _, s, f, ch in sub)
    for literal in decode.PERCENT_FORMS:
        pos = data.find(literal)
        covered = -1
        while pos >= 0:
            if pos >= covered:
                window = decode.percent_window(data, pos)
                covered = pos + decode.MAX_PERCENT_WINDOW - 600
                for c in candidates(window):
                    ch = (*chain, "percent", "join") if c.joined else (*chain, "percent")
                    found.append((pos, Secret(c.value, c.family), c.family, ch))
            pos = data.find(literal, pos + 1)
    if binary and decode.UTF16_FORM in data:
        covered = -1
        pos = data.find(decode.UTF16_FORM)
        while pos >= 0:
            if pos >= covered:
                window = decode.utf16_window(data, pos)
                covered = pos + max(2, len(window) * 2 - 600)
                for c in candidates(window):
                    ch = (*chain, "utf-16", "join") if c.joined else (*chain, "utf-16")
                    found.append((pos + 2 * c.start, Secret(c.value, c.family), c.family, ch))
            pos = data.find(decode.UTF16_FORM, pos + 2)
