"""Decoders the scanner looks through, each bounded so that no input can make it hang or
exhaust memory: base64 (standard and URL-safe, any alignment, wrapped or escaped), UTF-16,
gzip, bzip2, xz and zip members (jar, whl, docx, apk are zips).

Base64 is not decoded blindly. The base64 encodings of `sk-ant-` at the three byte alignments
are fixed strings (below); only where one of them occurs is the run around it decoded, from
the 4-character group the alignment implies. So a k8s Secret, a Basic-auth header or a
notebook blob is decoded exactly where a key can be, and a 10 MB image is never decoded.
"""

from __future__ import annotations

import binascii
import re
import zlib

# base64("sk-ant-...") at byte offsets 0, 1 and 2 of a 3-byte group, with the characters that
# depend on the neighbouring bytes cut off; and how far back the 4-character group starts.
B64_FORMS = (b"c2stYW50L", b"NrLWFudC", b"zay1hbnQt")
B64_GROUP_BACK = (0, 2, 3)
UTF16_FORM = b"s\x00k\x00-\x00a\x00n\x00t\x00-"
# `sk-ant-` from an encoder that escapes `-` too (a key never needs escaping otherwise)
PERCENT_FORMS = (b"sk%2Dant%2D", b"sk%2dant%2d")
MAX_PERCENT_WINDOW = 1200

MAX_B64_CHARS = 1200  # enough for the longest credential the detector accepts (~300 chars)
MAX_UTF16_WINDOW = 1400
MAX_MEMBER_BYTES = 64 << 20  # per decompressed stream or archive member
MAX_TOTAL_BYTES = 256 << 20  # per scanned file or blob, across all nested containers
MAX_MEMBERS = 10_000
MAX_DEPTH = 4  # nested decoders (zip > gzip > base64 ...)

_B64_RUN: list[re.Pattern[bytes]] = []  # compiled on first use
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_ESCAPED = {
    b"\\/": b"/",
    b"\\u002B": b"+", b"\\u002b": b"+", b"\\u002F": b"/", b"\\u002f": b"/",
}
_PERCENT = {b"%2B": b"+", b"%2b": b"+", b"%2F": b"/", b"%2f": b"/"}
_WRAPS = (b"\\r\\n", b"\\n", b"\r\n", b"\n")


class Budget:
    """How many decompressed bytes one top-level input may still produce, and what was cut."""

    __slots__ = ("left", "notes")

    def __init__(self, total: int = MAX_TOTAL_BYTES) -> None:
        self.left = total
        self.notes: list[str] = []

    def take(self, n: int) -> int:
        n = max(0, min(n, self.left))
        self.left -= n
        return n


def _run_start(data: bytes, pos: int) -> int:
    """Where the run of base64 characters holding `pos` begins (looked at up to 200 back)."""
    lo = max(0, pos - 200)
    i = pos
    while i > lo and data[i - 1] in _B64_ALPHABET:
        i -= 1
    if i > 0 and data[i - 1] == 0x5C and data[i:i + 1] in (b"n", b"r"):
        i += 1  # the `n` of an escaped newline is not part of the run
    return i


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")


def base64_window(data: bytes, group: int) -> tuple[bytes, int, bool]:
    """Decode the base64 text that starts at 4-character group `group`.

    Follows the run across line wraps (a line of 60+ characters, a multiple of 4, as base64
    tools and PEM write them), escaped wraps inside JSON strings (`\\n`), JSON escapes (`\\/`,
    `\\u002B`) and percent-encoded `+` and `/` (a base64 value in a URL). Returns the decoded
    bytes, where the consumed text ends, and whether percent-decoding was needed.
    """
    pad = b""
    if group < 0:
        pad = b"A" * (-group)
        group = 0
    parts: list[bytes] = [pad] if pad else []
    n = len(pad)
    i = group
    seg_start = _run_start(data, group)
    percent = False
    size = len(data)
    if not _B64_RUN:
        _B64_RUN.append(re.compile(rb"[A-Za-z0-9+/_\-]{1,1200}"))
    run = _B64_RUN[0]
    while n < MAX_B64_CHARS and i < size:
        m = run.match(data, i, min(size, i + MAX_B64_CHARS - n))
        if m is not None:
            parts.append(m.group())
            n += m.end() - i
            i = m.end()
            continue
        two = data[i:i + 2]
        if two == b"\\/" or (two == b"\\u" and data[i:i + 6] in _ESCAPED):
            token = data[i:i + 2] if two == b"\\/" else data[i:i + 6]
            parts.append(_ESCAPED[token])
            n += 1
            i += len(token)
            continue
        three = data[i:i + 3]
        if three in _PERCENT:
            parts.append(_PERCENT[three])
            n += 1
            i += 3
            percent = True
            continue
        wrapped = False
        for wrap in _WRAPS:
            if data.startswith(wrap, i):
                line_len = i - seg_start
                j = i + len(wrap)
                while j < size and data[j] in b" \t" and j - i < 32:
                    j += 1
                if line_len >= 60 and line_len % 4 == 0 and j < size and data[j] in _B64_ALPHABET:
                    i = j
                    seg_start = j
                    wrapped = True
                break
        if not wrapped:
            break
    text = b"".join(parts).translate(_URLSAFE)
    rem = len(text) % 4
    if rem == 1:
        text = text[:-1]
    elif rem:
        text += b"=" * (4 - rem)
    try:
        decoded = binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        decoded = b""
    return decoded, i, percent


def percent_window(data: bytes, pos: int) -> bytes:
    """Percent-decode the text starting at `pos` (bounded), as the URL held it."""
    window = data[pos:pos + MAX_PERCENT_WINDOW]
    out = bytearray()
    i = 0
    n = len(window)
    hexdigits = b"0123456789abcdefABCDEF"
    while i < n:
        c = window[i]
        if c == 0x25 and i + 2 < n and window[i + 1] in hexdigits and window[i + 2] in hexdigits:
            out.append(int(window[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def utf16_window(data: bytes, pos: int) -> bytes:
    """The ASCII text of a UTF-16 string starting at `pos` (the `s` of `sk-ant-`), whichever
    byte order: reading from the `s` byte as little-endian gives the same characters for
    ASCII text in either order. Anything that is not ASCII becomes `?`, which ends a key."""
    window = data[pos:pos + MAX_UTF16_WINDOW]
    if len(window) % 2:
        window = window[:-1]
    return window.decode("utf-16-le", "replace").encode("ascii", "replace")


def utf16_kind(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' for UTF-16 text (byte-order mark, or ASCII text with NULs at
    every other byte), else None."""
    head = data[:2]
    if head == b"\xff\xfe":
        return "utf-16-le"
    if head == b"\xfe\xff":
        return "utf-16-be"
    sample = data[:128]
    if len(sample) >= 16:
        if len(sample) % 2:
            sample = sample[:-1]
        odd = sample[1::2]
        even = sample[0::2]
        if odd.count(0) == len(odd) and even.count(0) == 0:
            return "utf-16-le"
        if even.count(0) == len(even) and odd.count(0) == 0:
            return "utf-16-be"
    return None


def decode_utf16(data: bytes, kind: str) -> bytes:
    text = data.decode(kind, "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.encode("utf-8", "replace")


def container_kind(data: bytes) -> str | None:
    head = data[:10]
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:3] == b"BZh" and head[4:10] == b"\x31\x41\x59\x26\x53\x59":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return None


def _inflate(data: bytes, make: object, budget: Budget, what: str) -> bytes:
    """Run a decompressor over every concatenated stream, stopping at the byte caps."""
    out: list[bytes] = []
    total = 0
    rest = data
    cap = min(MAX_MEMBER_BYTES, budget.left)
    while rest and total < cap:
        d = make()  # type: ignore[operator]
        try:
            chunk = d.decompress(rest, cap - total + 1)
        except Exception as exc:  # any decoder error on untrusted bytes: keep what was read
            budget.notes.append(f"{what} stream is damaged ({type(exc).__name__}); scanned what could be read")
            break
        out.append(chunk)
        total += len(chunk)
        if not d.eof:
            if total > cap:
                budget.notes.append(f"{what} content cut at {cap >> 20} MiB (decompression limit)")
            else:
                budget.notes.append(f"{what} stream is truncated; scanned what could be read")
            break
        rest = d.unused_data
        if rest and rest[:2] != data[:2]:
            break
    result = b"".join(out)[:cap]
    budget.take(len(result))
    return result


def gunzip(data: bytes, budget: Budget) -> bytes:
    return _inflate(data, lambda: zlib.decompressobj(31), budget, "gzip")


def bunzip2(data: bytes, budget: Budget) -> bytes:
    import bz2

    return _inflate(data, bz2.BZ2Decompressor, budget, "bzip2")


def unxz(data: bytes, budget: Budget) -> bytes:
    import lzma

    return _inflate(data, lzma.LZMADecompressor, budget, "xz")


def zip_members(data: bytes, budget: Budget) -> list[tuple[str, bytes]] | None:
    """(name, content) of each readable member, within the caps; None if it is no zip."""
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError):
        return None
    members: list[tuple[str, bytes]] = []
    if len(infos) > MAX_MEMBERS:
        budget.notes.append(f"zip has {len(infos)} members; scanned the first {MAX_MEMBERS}")
        infos = infos[:MAX_MEMBERS]
    for info in infos:
        if info.is_dir():
            continue
        name = "".join(c if c.isprintable() else "?" for c in info.filename)
        if info.flag_bits & 0x1:
            budget.notes.append(f"zip member {name} is encrypted; not scanned")
            continue
        cap = min(MAX_MEMBER_BYTES, budget.left)
        if cap <= 0:
            budget.notes.append("zip content cut: decompression limit reached")
            break
        try:
            with archive.open(info) as fh:
                content = fh.read(cap + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError,
                zlib.error, KeyError) as exc:
            budget.notes.append(f"zip member {name} cannot be read ({type(exc).__name__})")
            continue
        if len(content) > cap:
            content = content[:cap]
            budget.notes.append(f"zip member {name} cut at {cap >> 20} MiB (decompression limit)")
        budget.take(len(content))
        members.append((name, content))
    return members
