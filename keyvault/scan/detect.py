"""Recognise Anthropic credentials in bytes: one anchored regex finds candidates, then each
candidate is held to its family's exact shape.

The regex only anchors on the literal `sk-ant-` and takes the longest run of key characters
after the family marker (bounded, no nested quantifiers: linear time, no backtracking). All
judgement happens in plain code afterwards, where it can look at both sides of the candidate:

- documented families (api03, admin01) must be exactly 95 body characters ending `AA`;
- OAuth tokens and session keys (undocumented) at their observed shape (80-200 characters);
- any other `sk-ant-<word><nn>-` is reported as an unknown credential when it is long enough;
- placeholders, redacted hints (`...`), regexes from docs and hand-typed filler are rejected.

No left word boundary is required: inside escaped JSON a key often follows `\\n` or `\\"`,
and `sk-ant-` is specific enough on its own. The right boundary is simply the end of the key
alphabet run, so `\\"`, `\\n`, `%26`, quotes, backticks and URL delimiters all end a key.
"""

from __future__ import annotations

import re

from keyvault.keys import (
    ADMIN,
    API,
    FAMILIES,
    UNKNOWN,
    Family,
    placeholder_reason,
)

LITERAL = b"sk-ant-"
MAX_BODY = 200  # longer runs are not credentials (and the regex stops looking at 600)
_RUN_CAP = 600
CANDIDATE_PATTERN = rb"sk-ant-([a-z]{2,10}[0-9]{2})-([A-Za-z0-9_\-]{0,600})"
_compiled: list[re.Pattern[bytes]] = []


def candidate_regex() -> re.Pattern[bytes]:
    """Compiled on first use: most buffers never get this far (compiling costs the hook ~0.3 ms)."""
    if not _compiled:
        _compiled.append(re.compile(CANDIDATE_PATTERN))
    return _compiled[0]
_BODY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_BY_MARKER = {f.prefix[len("sk-ant-"):-1].encode(): f for f in FAMILIES}

# What may separate two pieces of one key that a tool or a person wrapped over lines:
# an escaped newline inside a JSON/Python string, or a real line break.
_JOINERS = (b"\\r\\n", b"\\n", b"\\\\n", b"\\\r\n", b"\\\n", b"\r\n", b"\n")
_MAX_PIECES = 6
_QUOTES = b"\"'`"


def _concat_end(data: bytes, pos: int) -> int:
    """Where the next piece starts if `pos` ends a string literal continued by another (Python
    and C implicit concatenation, JS `+`, PHP `.`, SQL `||`, VB `&`), else -1."""
    if pos >= len(data) or data[pos] not in _QUOTES:
        return -1
    i = pos + 1
    limit = min(len(data), i + 80)
    op_seen = False
    while i < limit:
        c = data[i]
        if c in b" \t\r\n":
            i += 1
        elif c in b"+.&" and not op_seen:
            op_seen = True
            i += 1
        elif c == 0x7C and data[i:i + 2] == b"||" and not op_seen:
            op_seen = True
            i += 2
        elif c == 0x5C and data[i + 1:i + 2] == b"\n":  # a line continuation (C macro, shell)
            i += 2
        elif c in _QUOTES:
            return i + 1
        else:
            return -1
    return -1


class Candidate:
    """A credential found in one buffer: where it starts, how long it is in the buffer, what it is."""

    __slots__ = ("start", "end", "value", "family", "joined")

    def __init__(self, start: int, end: int, value: str, family: Family, joined: bool) -> None:
        self.start = start
        self.end = end
        self.value = value
        self.family = family
        self.joined = joined


def family_for(marker: bytes) -> Family:
    return _BY_MARKER.get(marker, UNKNOWN)


def _shape_ok(family: Family, n: int, body: bytes) -> bool:
    if family.body_length is not None:
        return n == family.body_length and body.endswith(family.suffix.encode())
    return family.min_body <= n <= MAX_BODY


def _filler(body: str) -> bool:
    """Hand-typed bodies that keys.placeholder_reason lets through: alphabet walks
    (`ABCDEFGH...`) and short repeated patterns (`abc123abc123...`). A generated body has
    neither: 8 consecutive ascending characters or a period of 12 or less in 93 random
    characters from 64 are astronomically unlikely."""
    core = body[:-2] if body.endswith("AA") else body
    run = 1
    for a, b in zip(core, core[1:]):
        if ord(b) - ord(a) in (1, -1):
            run += 1
            if run >= 8:
                return True
        else:
            run = 1
    n = len(core)
    for period in range(1, 13):
        if n > 2 * period and core[period:] == core[:-period]:
            return True
    return False


def _typed(body: str) -> bool:
    """Words typed by a person (`your-api-key-goes-here`): a generated body is ~56% capitals
    and digits; under 20% in 40+ characters does not happen by chance."""
    strong = sum(1 for c in body if c.isupper() or c.isdigit())
    return strong * 5 < len(body)


def rejected(family: Family, body: str) -> bool:
    """Bodies with the right shape that are still not keys. Placeholder words are not used:
    95 random characters contain a given 4-letter word about once in 10,000 keys."""
    return placeholder_reason(body, True) is not None or _filler(body) or _typed(body)


def _join(data: bytes, marker: bytes, body: bytes, end: int, family: Family) -> tuple[bytes, int] | None:
    """A key broken over lines: keep appending pieces while the joined body is still short of
    the family's fixed length. Only accepted when the result has the exact documented shape,
    so wrapping never turns two unrelated strings into a finding."""
    want = family.body_length if family.body_length is not None else 95
    pieces = [body]
    total = len(body)
    pos = end
    for _ in range(_MAX_PIECES):
        if total >= want:
            break
        for joiner in _JOINERS:
            if data.startswith(joiner, pos):
                nxt = pos + len(joiner)
                # indentation of a wrapped line (YAML, a log, a docstring)
                while nxt < len(data) and data[nxt] in b" \t" and nxt - pos < 64:
                    nxt += 1
                break
        else:
            nxt = _concat_end(data, pos)
            if nxt < 0:
                return None
        stop = nxt
        limit = min(len(data), nxt + want - total + 1)
        while stop < limit and data[stop] in _BODY_CHARS:
            stop += 1
        if stop == nxt:
            return None
        pieces.append(data[nxt:stop])
        total += stop - nxt
        pos = stop
    joined = b"".join(pieces)
    if pos < len(data) and data[pos] in _BODY_CHARS:
        return None
    if not _shape_ok(family, len(joined), joined) or len(joined) != want:
        return None
    return joined, pos


def candidates(data: bytes, start: int = 0, stop: int | None = None) -> list[Candidate]:
    """Every credential in data[start:stop], in order. Linear: each byte is looked at a bounded
    number of times (a body run is cut at the next `sk-ant-`, and scanning resumes there)."""
    found: list[Candidate] = []
    end_all = len(data) if stop is None else stop
    pos = start
    search = candidate_regex().search
    while True:
        m = search(data, pos, end_all)
        if m is None:
            return found
        marker = m.group(1)
        body = m.group(2)
        body_start = m.start(2)
        body_end = m.end(2)
        nested = body.find(LITERAL)
        if nested >= 0:  # two keys glued together: cut here, the next one starts at `nested`
            body = body[:nested]
            body_end = body_start + nested
            pos = body_end
        else:
            pos = body_end if body_end > m.start() else m.start() + 1
            if len(body) == _RUN_CAP:
                # an overlong run of key characters: skip the rest of it, it is no credential
                while pos < end_all and data[pos] in _BODY_CHARS:
                    pos += 1
                continue
        family = family_for(marker)
        n = len(body)
        joined = False
        if not _shape_ok(family, n, body):
            if nested >= 0 or n >= 95 or not (family.documented or n >= 20):
                continue
            j = _join(data, marker, body, body_end, family)
            if j is None:
                continue
            body, body_end = j
            joined = True
            pos = max(pos, body_end)
        text = body.decode("ascii")
        if rejected(family, text):
            continue
        value = "sk-ant-" + marker.decode("ascii") + "-" + text
        found.append(Candidate(m.start(), body_end, value, family, joined))


def classify(value: str) -> Family | None:
    """The family of a complete value if it is a credential the scanner would report."""
    data = value.encode("utf-8", "replace")
    found = candidates(data)
    if len(found) == 1 and found[0].start == 0 and found[0].end == len(data):
        return found[0].family
    return None


__all__ = ["ADMIN", "API", "CANDIDATE_PATTERN", "Candidate", "LITERAL", "candidate_regex", "candidates", "classify",
           "family_for"]
