"""Anthropic credentials: the Secret type, the key families, parsing, hint and fingerprint.

This module is the bottom of the package: standard library only, imported by the hook.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, NoReturn

from keyvault.errors import KeyFormatError

ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
ANTHROPIC_PREFIX = "sk-ant-"
# sk-ant-<word><two digits>- : every family seen so far, and the shape of future ones.
PREFIX_RE = re.compile(r"sk-ant-([a-z]{2,10}[0-9]{2})-")


class Family(NamedTuple):
    """One kind of Anthropic credential and its exact shape.

    A NamedTuple, not a dataclass: `dataclasses` imports `inspect` (~6-8 ms), and this module
    is on both the app's start-up path and the pre-commit hook's."""

    name: str  # api | admin | oauth-access | oauth-refresh | session | unknown
    prefix: str  # "sk-ant-api03-"; "" for the unknown family (any sk-ant-<word><nn>-)
    label: str  # what the user reads: "API key"
    rule: str  # scanner rule id
    body_length: int | None  # exact characters after the prefix, None when undocumented
    min_body: int  # the fewest body characters accepted when body_length is None
    suffix: str  # what the body ends with ("AA"), "" when unknown
    documented: bool  # Anthropic documents the shape (confidence of a scan finding)


API = Family("api", "sk-ant-api03-", "API key", "anthropic-api-key", 95, 95, "AA", True)
ADMIN = Family("admin", "sk-ant-admin01-", "Admin API key", "anthropic-admin-key", 95, 95, "AA", True)
OAUTH_ACCESS = Family(
    "oauth-access", "sk-ant-oat01-", "OAuth access token", "anthropic-oauth-token", None, 80, "", False
)
OAUTH_REFRESH = Family(
    "oauth-refresh", "sk-ant-ort01-", "OAuth refresh token", "anthropic-oauth-token", None, 80, "", False
)
SESSION = Family("session", "sk-ant-sid01-", "session key", "anthropic-session-key", None, 80, "", False)
UNKNOWN = Family(
    "unknown", "", "unknown Anthropic credential", "anthropic-unknown-credential", None, 40, "", False
)

FAMILIES: tuple[Family, ...] = (API, ADMIN, OAUTH_ACCESS, OAUTH_REFRESH, SESSION)
_BY_PREFIX = {f.prefix: f for f in FAMILIES}
_BY_NAME = {f.name: f for f in (*FAMILIES, UNKNOWN)}
Expect = Literal["api", "admin", "oauth-access", "oauth-refresh", "session"]

_PLACEHOLDER_WORDS = (
    "your", "here", "xxxx", "example", "placeholder", "redacted", "dummy", "insert", "replace",
    "changeme", "secret", "token", "apikey", "api-key", "api_key", "<", ">", "...", "*",
)


def family_of(value: str) -> Family | None:
    """The family a value's prefix names; UNKNOWN for another sk-ant-<word><nn>-; None if not Anthropic."""
    m = PREFIX_RE.match(value)
    if not m:
        return None
    return _BY_PREFIX.get(m.group(0), UNKNOWN)


def prefix_of(value: str) -> str:
    m = PREFIX_RE.match(value)
    return m.group(0) if m else ""


def hint(value: str) -> str:
    """The Admin API's `partial_key_hint` shape: prefix + first 3 + '...' + last 4."""
    prefix = prefix_of(value)
    body = value[len(prefix):]
    if len(body) < 16:
        return f"{prefix}<{len(body)} chars redacted>"
    return f"{prefix}{body[:3]}...{body[-4:]}"


def fingerprint(value: str | Secret) -> str:
    """sha256 hex of the full key value: what baselines, journals and audit logs store."""
    import hashlib  # here, not at the top: it costs ~3 ms of every app's and hook's start-up

    raw = value.reveal() if isinstance(value, Secret) else value
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def placeholder_reason(body: str, well_formed: bool = False) -> str | None:
    """Why a key body is a placeholder from docs rather than a key, or None.

    A real body is 93 random characters from a 64-letter alphabet: it has ~50 distinct
    characters, so a low count means a hand-typed filler (XXXX..., abcabc...). Placeholder
    words count only in bodies that are not well-formed, because 93 random characters
    contain any given 4-letter word by chance about once in ten thousand keys.
    """
    core = body[:-2] if body.endswith("AA") else body
    if len(core) >= 20 and len(set(core)) < 16:
        return "it is filler (too few distinct characters for a generated key)"
    if well_formed:
        return None
    lowered = body.lower()
    for word in _PLACEHOLDER_WORDS:
        if word in lowered:
            if word == "..." or word == "*":
                return "it is a redacted hint, not a key (the Console and Admin API show keys this way)"
            return f"it is a placeholder from documentation (contains {word!r})"
    return None


class Secret:
    """A credential. Shows only its hint; `reveal()` returns the value.

    Equality is constant-time; pickling, copying to new storage and JSON encoding refuse
    or stay redacted, so a Secret that ends up in a log, a traceback or a dataclass repr
    never shows the value.
    """

    __slots__ = ("_Secret__value", "family", "trimmed")

    def __init__(self, value: str, family: Family | None = None, trimmed: tuple[str, ...] = ()) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self.__value = value
        self.family = family if family is not None else (family_of(value) or UNKNOWN)
        self.trimmed = trimmed

    def reveal(self) -> str:
        return self.__value

    @property
    def hint(self) -> str:
        return hint(self.__value)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.__value)

    def __repr__(self) -> str:
        return f"Secret({self.hint!r})"

    def __str__(self) -> str:
        return self.hint

    def __format__(self, spec: str) -> str:
        return format(self.hint, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self.__value.encode(), other.__value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"refusing to pickle {self!r}: a key value must not be serialised")

    def __getstate__(self) -> NoReturn:
        raise TypeError(f"refusing to serialise {self!r}")


def _a(label: str) -> str:
    return f"{'an' if label[0] in 'aeiouAEIOU' else 'a'} {label}"


def _reject(message: str) -> NoReturn:
    raise KeyFormatError(message)


def _trim(text: str) -> tuple[str, list[str]]:
    notes: list[str] = []
    if text.startswith("\ufeff"):
        text = text[1:]
        notes.append("a byte-order mark at the start")
    if "\r" in text:
        notes.append("a Windows line ending (CR)")
    stripped = text.strip()
    if stripped != text:
        ends = text[: len(text) - len(text.lstrip())] + text[len(text.rstrip()):]
        newline = any(c in "\r\n" for c in ends)
        spaces = any(c not in "\r\n" for c in ends)
        notes.append({(True, True): "surrounding whitespace and a newline", (True, False): "a newline",
                      (False, True): "surrounding whitespace"}[(newline, spaces)])
        text = stripped
    m = re.match(r"(export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*", text)
    if m and not text.startswith("sk-"):
        notes.append(f"the '{m.group(0).strip()}' assignment in front")
        text = text[m.end():].strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
        notes.append("a trailing ';'")
    # walk indices inward and slice once: slicing per quote pair is quadratic on a pasted file
    i, j = 0, len(text)
    quotes: list[str] = []
    while j - i >= 2 and text[i] == text[j - 1] and text[i] in "'\"`":
        quotes.append(text[i])
        i, j = i + 1, j - 1
        while i < j and text[i].isspace():
            i += 1
        while j > i and text[j - 1].isspace():
            j -= 1
    if quotes:
        text = text[i:j]
        kinds = sorted(set(quotes))
        more = f" ({len(quotes)} pairs)" if len(quotes) > 1 else ""
        notes.append(f"surrounding {' and '.join(kinds)} quotes{more}")
    return text, notes


def _describe_char(ch: str) -> str:
    names = {" ": "a space", "\t": "a tab", "\n": "a newline", "\r": "a carriage return"}
    if ch in names:
        return names[ch]
    if ch.isprintable() and ch.isascii():
        return f"{ch!r}"
    return f"an invisible or non-ASCII character (U+{ord(ch):04X})"


def parse_key(text: str | bytes, expect: Expect | None = None) -> Secret:
    """Validate a pasted credential; trim what users paste by accident and record it in
    `Secret.trimmed`. Rejections name the defect and the position, never the value."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            _reject(f"the key is not valid UTF-8 text (byte {exc.start + 1})")
    if not isinstance(text, str):
        raise TypeError("parse_key takes str or bytes")
    value, notes = _trim(text)
    wanted = _BY_NAME[expect] if expect else None
    wanted_label = f"{_a(wanted.label)} ({wanted.prefix}...)" if wanted else "an Anthropic credential"
    if not value:
        _reject(f"the key is empty; expected {wanted_label}")
    if value.startswith("<") and value.endswith(">"):
        _reject("this is a placeholder from documentation (<...>), not a key")
    if not value.startswith(ANTHROPIC_PREFIX):
        if value.startswith("sk-"):
            _reject(f"this is not an Anthropic key (it does not start with 'sk-ant-'; another provider's key?); expected {wanted_label}")
        _reject(f"this is not an Anthropic key: it does not start with 'sk-ant-'; expected {wanted_label}")
    family = family_of(value)
    if family is None:
        _reject(
            "the text after 'sk-ant-' is not a known family marker like 'api03-' or 'admin01-'"
            f"; expected {wanted_label}"
        )
    if wanted is not None and family is not wanted:
        _reject(f"this is {_a(family.label)} ({prefix_of(value)}...), but {wanted_label} is expected here")
    prefix = prefix_of(value)
    body = value[len(prefix):]
    for i, ch in enumerate(body):
        if ch not in ALPHABET:
            reason = placeholder_reason(body)
            if reason:
                _reject(f"{reason}, not a usable {family.label}")
            if ("[" in body and "]" in body) or ("{" in body and "}" in body) or "\\" in body:
                _reject(f"this looks like a regex or template pattern, not a key (character {len(prefix) + i + 1})")
            _reject(
                f"character {len(prefix) + i + 1} is {_describe_char(ch)}; "
                f"{_a(family.label)} uses only A-Z a-z 0-9 _ -"
            )
    total = len(value)
    well_formed = (
        (family.body_length is None or len(body) == family.body_length)
        and len(body) >= family.min_body
        and body.endswith(family.suffix)
    )
    reason = placeholder_reason(body, well_formed)
    if reason:
        _reject(f"{reason}, not a usable {family.label}")
    if family.body_length is not None:
        expected_total = len(prefix) + family.body_length
        if total < expected_total:
            _reject(
                f"the key is {total} characters; {_a(family.label)} is {expected_total} "
                "(truncated when copied?)"
            )
        if total > expected_total:
            _reject(
                f"the key is {total} characters; {_a(family.label)} is {expected_total} "
                "(two keys pasted together, or extra text after it?)"
            )
    elif len(body) < family.min_body:
        _reject(f"the key is {total} characters, too short for {_a(family.label)} (truncated?)")
    if family.suffix and not body.endswith(family.suffix):
        _reject(
            f"the key does not end with '{family.suffix}' as every {family.label} does "
            "(truncated or altered?)"
        )
    return Secret(value, family, tuple(notes))
