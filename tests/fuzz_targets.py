"""Fuzz targets: one check per parser, shared by the bounded CI slice (tests/test_fuzz.py) and
the long run (bench/fuzz.py). Each check takes one input, calls the public API only and
asserts what must hold for every input: only the documented error type escapes, no message
echoes a key, and the result is consistent. Time is bounded by the callers (hypothesis
deadline; explicit 1 MB inputs in test_fuzz.py).

Strategies aim at the structure each parser expects (prefixes, quotes, separators, valid logs
with one mutation), because uniform random text almost never gets past the first check.
"""

from __future__ import annotations

import re
import signal
import string
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import strategies as st

from keyvault.errors import KeyFormatError, SourceError
from keyvault.keys import ALPHABET, FAMILIES, parse_key
from keyvault.redact import credential_in, redact

KEY_CHARS = string.ascii_letters + string.digits + "_-"
_RUN = re.compile(r"[A-Za-z0-9_-]{16,}")
AUDIT_KEY = b"f" * 32


# --- helpers ---------------------------------------------------------------------------------


def echoed(source: str, message: str, width: int = 16) -> str | None:
    """A run of `width` key characters from `source` that `message` repeats, or None.

    Messages quote at most 15 key characters in a row (`sk-ant-admin01-`), so 16 from the
    input showing up in a message means the message echoes the input."""
    for m in _RUN.finditer(source):
        run = m.group(0)
        for i in range(len(run) - width + 1):
            if run[i:i + width] in message:
                return run[i:i + width]
    return None


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a call that runs longer than `seconds` (main thread, Unix): a quadratic parser
    fails in `seconds` instead of hanging the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- parse_key -------------------------------------------------------------------------------

prefixes = st.sampled_from([f.prefix for f in FAMILIES] + ["sk-ant-", "sk-ant-api04-", "sk-", "sk-proj-", ""])
bodies = st.text(alphabet=KEY_CHARS, min_size=0, max_size=130)
noise = st.text(alphabet=st.characters(codec="utf-8"), max_size=6)
wrappers = st.sampled_from(["", "'", '"', "`", " ", "\n", "\r\n", "\t", "\ufeff", ";", "export ANTHROPIC_API_KEY=",
                            "ANTHROPIC_API_KEY: ", "<", ">", "...", "*"])


@st.composite
def key_like(draw: st.DrawFn) -> str:
    """A key-shaped text with paste accidents and one optional mutation."""
    body = draw(bodies)
    if draw(st.booleans()):
        body = body[:93].ljust(93, "x") + "AA"
    text = draw(prefixes) + body
    if text and draw(st.booleans()):
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(noise) + text[i + draw(st.integers(0, 2)):]
    left = "".join(draw(st.lists(wrappers, max_size=4)))
    right = "".join(draw(st.lists(wrappers, max_size=4)))
    return left + text + right


key_inputs = st.one_of(key_like(), st.text(max_size=300), st.binary(max_size=300))


def check_parse_key(data: str | bytes) -> None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for expect in (None, "api"):
        try:
            secret = parse_key(data, expect=expect)  # type: ignore[arg-type]
        except KeyFormatError as exc:
            message = str(exc)
            leaked = echoed(text, message)
            assert leaked is None, f"parse_key's message repeats the input: {message!r}"
            continue
        value = secret.reveal()
        assert value in text, "parse_key returned text that was not in its input"
        assert value.startswith("sk-ant-") and set(value[len(secret.family.prefix or 'sk-ant-'):]) <= ALPHABET
        assert echoed(text, repr(secret) + str(secret) + " ".join(secret.trimmed)) is None


# --- parse_source ----------------------------------------------------------------------------

schemes = st.sampled_from(["env", "dotenv", "file", "aws-sm", "vault", "gcp-sm", "ENV", "x+y", "", "1", "a b", "é"])
uri_parts = st.text(alphabet=string.ascii_letters + string.digits + "/._-~%=&?#:@ +", max_size=40)


@st.composite
def source_like(draw: st.DrawFn) -> str:
    uri = draw(schemes) + draw(st.sampled_from(["://", ":/", ":", "//", ""])) + draw(uri_parts)
    if draw(st.booleans()):
        uri += "?" + "&".join(draw(st.lists(st.sampled_from(["a=b", "region=us", "token=x", "=", "&", "a", "%zz"]),
                                            max_size=4)))
    if draw(st.booleans()):
        uri += "#" + draw(uri_parts)
    return uri


def _key_uri(draw: st.DrawFn) -> str:
    key = "sk-ant-api03-" + draw(st.text(alphabet=KEY_CHARS, min_size=93, max_size=93)) + "AA"
    return draw(st.sampled_from([key, f"env://{key}", f"{key}://x", f"vault://a?x={key}", f"dotenv://.env#{key}"]))


source_inputs = st.one_of(source_like(), st.text(max_size=200))
keyed_source_inputs = st.composite(_key_uri)()


def check_parse_source(uri: str) -> None:
    from keyvault.backends import parse_source

    try:
        source = parse_source(uri)
    except SourceError:
        return
    assert source.uri == uri and source.scheme == source.scheme.lower()


def check_parse_source_no_echo(uri: str) -> None:
    """A key pasted where a source URI belongs (KEYVAULT_SOURCE, --source) is not echoed."""
    from keyvault.backends import parse_source

    try:
        parse_source(uri)
    except SourceError as exc:
        assert credential_in(str(exc)) is None, "SourceError echoes a key value"


# --- redact ----------------------------------------------------------------------------------

redact_inputs = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(key_like(), st.text(max_size=20)), max_size=6).map(" ".join),
)


def check_redact(text: str) -> None:
    out = redact(text)
    assert credential_in(out) is None
    assert redact(out) == out
    if credential_in(text) is None:
        assert out == text


# --- the audit log reader --------------------------------------------------------------------


def make_log(directory: Path, n: int = 5) -> Path:
    from keyvault.audit import AuditLog

    log = AuditLog(directory / "audit.jsonl", key=AUDIT_KEY)
    for i in range(n):
        log.append("fuzz.event", i=i, hint="sk-ant-api03-R2D...igAA", note="é\u2028\"'\\")
    return log.path


_TEMPLATE: dict[str, bytes] = {}


def _template() -> tuple[bytes, bytes]:
    if not _TEMPLATE:
        with tempfile.TemporaryDirectory() as tmp:
            path = make_log(Path(tmp))
            _TEMPLATE["log"] = path.read_bytes()
            _TEMPLATE["head"] = path.with_name(path.name + ".head").read_bytes()
    return _TEMPLATE["log"], _TEMPLATE["head"]


def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "swap", "duplicate", "drop", "splice"]))
    lines = data.splitlines(keepends=True)
    if kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if kind == "delete":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + data[i + draw(st.integers(1, 40)):]
    if kind == "insert":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=40)) + data[i:]
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    if kind == "swap" and i != j:
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "duplicate":
        lines.insert(j, lines[i])
    elif kind == "drop":
        del lines[i]
    else:  # splice: a line made of two halves
        lines[i] = lines[i][: len(lines[i]) // 2] + lines[j][len(lines[j]) // 2:]
    out = b"".join(lines)
    return out if out != data else out + b"\n"


@st.composite
def corrupted_logs(draw: st.DrawFn) -> bytes:
    data, _ = _template()
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        data = _mutate(draw, data)
    return data


audit_inputs = st.one_of(corrupted_logs(), st.binary(max_size=400))


def check_audit_verify(data: bytes, directory: Path | None = None) -> None:
    """Any bytes in place of a log (the genuine head beside it): verify reports, never raises;
    a changed log is never reported intact."""
    from keyvault.audit import AuditLog

    original, head = _template()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "audit.jsonl"
        path.write_bytes(data)
        path.with_name("audit.jsonl.head").write_bytes(head)
        report = AuditLog(path, key=AUDIT_KEY).verify()
        assert report.ok == (data == original), (report.ok, report.problems[:3])
        for problem in report.problems:
            assert problem.kind in {"edited", "dropped", "inserted", "reordered", "truncated", "malformed", "head",
                                    "key"}
            assert problem.line is None or 1 <= problem.line <= data.count(b"\n") + 1


TARGETS: dict[str, tuple[Callable[..., None], st.SearchStrategy]] = {  # type: ignore[type-arg]
    "parse_key": (check_parse_key, key_inputs),
    "parse_source": (check_parse_source, source_inputs),
    "redact": (check_redact, redact_inputs),
    "audit_verify": (check_audit_verify, audit_inputs),
}
