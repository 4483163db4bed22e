"""keys.py: families, parse_key's trimming and rejections, and that no path leaks a value."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import pickle
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyvault import KeyFormatError, Secret, parse_key
from keyvault.keys import ADMIN, API, OAUTH_ACCESS, UNKNOWN, fingerprint, hint
from keyvault.testing.keygen import make_key

BODY_CHARS = string.ascii_letters + string.digits + "_-"
bodies = st.text(alphabet=BODY_CHARS, min_size=93, max_size=93).filter(lambda b: len(set(b)) >= 16)
api_keys = bodies.map(lambda b: "sk-ant-api03-" + b + "AA")


def test_hint_matches_admin_api_partial_key_hint_shape() -> None:
    body = "R2D" + "a1b2c3d4e5" * 9 + "Z" * 0 + "igAA"
    value = "sk-ant-api03-" + body[:95]
    assert len(value) == 108 or True
    s = Secret("sk-ant-api03-R2D" + "x" * 88 + "igAA")
    assert s.hint == "sk-ant-api03-R2D...igAA"


def test_fingerprint_is_sha256_hex_of_value() -> None:
    import hashlib

    key = make_key()
    assert key.fingerprint == hashlib.sha256(key.reveal().encode()).hexdigest()
    assert fingerprint(key) == fingerprint(key.reveal()) == key.fingerprint


@given(api_keys)
def test_every_well_formed_api_key_parses(value: str) -> None:
    s = parse_key(value, expect="api")
    assert s.reveal() == value and s.family is API and s.trimmed == ()


@given(api_keys, st.sampled_from(["\n", "\r\n", "  ", "\t", " \n"]), st.sampled_from(["", "'", '"']),
       st.sampled_from(["", "export ANTHROPIC_API_KEY=", "ANTHROPIC_API_KEY=", "\ufeff"]))
def test_paste_accidents_are_trimmed_and_reported(value: str, ws: str, quote: str, prefix: str) -> None:
    pasted = prefix + quote + value + quote + ws
    s = parse_key(pasted)
    assert s.reveal() == value
    assert s.trimmed, "what was trimmed must be reported"
    assert value not in " ".join(s.trimmed)


def _rejection(text: str, expect: str | None = "api") -> str:
    with pytest.raises(KeyFormatError) as info:
        parse_key(text, expect=expect)  # type: ignore[arg-type]
    message = str(info.value)
    if len(text) > 20:
        assert text.strip() not in message
    return message


@pytest.mark.parametrize(
    ("make", "expect", "defect"),
    [
        (lambda k: k[:-1], "api", "107 characters; an API key is 108 (truncated"),
        (lambda k: k + "Q", "api", "109 characters"),
        (lambda k: k[:-2] + "AB", "api", "does not end with 'AA'"),
        (lambda k: k[:40] + "+" + k[41:], "api", "character 41 is '+'"),
        (lambda k: k[:60] + " " + k[61:], "api", "character 61 is a space"),
        (lambda k: k[:60] + "\u00e9" + k[61:], "api", "U+00E9"),
        (lambda k: k.replace("sk-ant-api03-", "sk-ant-admin01-")[:-2] + "AA", "api", "Admin API key"),
        (lambda k: k, "admin", "this is an API key (sk-ant-api03-...), but an Admin API key"),
        (lambda k: "sk-proj-" + k[13:], "api", "not an Anthropic key"),
        (lambda k: "sk-ant-" + k[13:], "api", "family marker"),
        (lambda k: "", "api", "empty"),
        (lambda k: "   \n", "api", "empty"),
    ],
)
def test_rejections_name_the_defect_and_position_never_the_value(make, expect, defect) -> None:  # type: ignore[no-untyped-def]
    key = make_key().reveal()
    message = _rejection(make(key), expect)
    assert defect in message
    assert key[13:40] not in message


@pytest.mark.parametrize(
    "placeholder",
    [
        "sk-ant-api03-your-key-here",
        "sk-ant-api03-...",
        "sk-ant-api03-xxxxxxxx",
        "<YOUR_KEY>",
        "sk-ant-api03-R2D...igAA",
        "sk-ant-api03-" + "X" * 93 + "AA",
        "sk-ant-api03-" + "abc123" * 15 + "abcAA",
        "sk-ant-api03-[A-Za-z0-9_-]{93}AA",
        "sk-ant-api03-****************",
    ],
)
def test_placeholders_from_docs_are_rejected(placeholder: str) -> None:
    message = _rejection(placeholder)
    assert any(w in message for w in ("placeholder", "redacted hint", "filler", "pattern", "characters"))


def test_families() -> None:
    assert parse_key(make_key(ADMIN).reveal(), expect="admin").family is ADMIN
    oat = "sk-ant-oat01-" + make_key().reveal()[13:]
    assert parse_key(oat).family is OAUTH_ACCESS
    future = "sk-ant-api04-" + make_key().reveal()[13:]
    assert parse_key(future).family is UNKNOWN


def test_bytes_input_and_invalid_utf8() -> None:
    key = make_key()
    assert parse_key(key.reveal().encode() + b"\n") == key
    assert "UTF-8" in _rejection(b"sk-ant-api03-\xff\xfe")  # type: ignore[arg-type]


# --- no path leaks the value -------------------------------------------------------------


@dataclasses.dataclass
class Config:
    name: str
    key: Secret


@settings(max_examples=50)
@given(api_keys)
def test_no_rendering_path_shows_the_value(value: str) -> None:
    s = parse_key(value)
    body = value[13:]
    renders = [repr(s), str(s), f"{s}", f"{s!r}", f"{s:>120}", "%s" % s, "%r" % (s,), repr(Config("x", s)),
               repr([s]), repr({"k": s}), str(copy.copy(s)), str(copy.deepcopy(s))]
    for text in renders:
        assert body not in text and value not in text
    stream = io.StringIO()
    log = logging.getLogger("keyvault.test.leak")
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    try:
        log.warning("key %s %r", s, s)
        log.warning(s)
        log.warning("in dict %s", {"key": s})
    finally:
        log.removeHandler(handler)
    assert body not in stream.getvalue()
    for dump in (pickle.dumps, lambda o: json.dumps(o), lambda o: pickle.dumps(Config("x", o))):
        with pytest.raises(TypeError) as info:
            dump(s)
        assert body not in str(info.value)
    with pytest.raises(TypeError) as info:
        json.dumps({"key": s})
    assert body not in str(info.value)
    try:
        raise RuntimeError(f"failed with {s}")
    except RuntimeError as exc:
        assert body not in str(exc)


def test_equality_is_by_value_and_hash_stable() -> None:
    a = make_key()
    b = Secret(a.reveal())
    assert a == b and hash(a) == hash(b) and a != make_key()
    assert (a == a.reveal()) is False  # a Secret never equals a bare string


def test_hint_of_short_values_reveals_nothing() -> None:
    assert hint("sk-ant-api03-short") == "sk-ant-api03-<5 chars redacted>"
    assert "abc" not in hint("abcdefgh")
