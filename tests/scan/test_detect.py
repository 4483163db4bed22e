"""What the scanner recognises in a buffer, and what it refuses: scan_bytes, library level."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyvault.keys import ADMIN, API, OAUTH_ACCESS, OAUTH_REFRESH, SESSION
from keyvault.scan.engine import Known, scan_bytes
from keyvault.testing.keygen import make_key
from tests.scan.helpers import key

PREFIX = "sk-" + "ant-"  # kept apart so this file never holds a key-shaped string


def found(data: bytes | str) -> list[tuple[str, str, int | None, int | None, str | None]]:
    if isinstance(data, str):
        data = data.encode()
    return [(h.family.rule, h.secret.reveal(), h.line, h.column, h.chain) for h in scan_bytes(data)]


@pytest.mark.parametrize("family, rule", [
    (API, "anthropic-api-key"), (ADMIN, "anthropic-admin-key"), (OAUTH_ACCESS, "anthropic-oauth-token"),
    (OAUTH_REFRESH, "anthropic-oauth-token"), (SESSION, "anthropic-session-key"),
])
def test_every_family_is_found_with_its_rule(family, rule) -> None:
    k = make_key(family).reveal()
    assert found(f"x = '{k}'\n") == [(rule, k, 1, 6, None)]


def test_unknown_family_is_reported_as_unknown_credential() -> None:
    body = make_key().reveal()[len(PREFIX) + 6:]
    value = PREFIX + "api01-" + body
    assert found(value) == [("anthropic-unknown-credential", value, 1, 1, None)]
    assert found(PREFIX + "zz99-" + body[:50]) == [("anthropic-unknown-credential", PREFIX + "zz99-" + body[:50], 1, 1, None)]


@pytest.mark.parametrize("wrap", [
    '"{k}"', "'{k}'", "`{k}`", '\\"{k}\\"', "KEY={k}\n", "export KEY={k};", '\\"{k}\\\\n', "{k}\\n",
    "\\n{k}\\n", "https://x.invalid/v1?key={k}&y=1", "?key={k}%26y%3D1", "<key>{k}</key>", "[{k}]", "({k})",
    "{k},", "{k}.", "key: {k}\r\n", "{{\"k\": \"{k}\"}}", "Authorization: Bearer {k}", "x-api-key:{k}",
])
def test_boundaries(wrap: str) -> None:
    k = key()
    assert [f[1] for f in found(wrap.format(k=k))] == [k]


def test_escaped_json_notebook_cell_gitleaks_misses() -> None:
    k, a = key(), key(ADMIN)
    nb = {"cells": [{"cell_type": "code", "source": ["import os\n", f"os.environ['ANTHROPIC_API_KEY'] = \"{k}\"\n"],
                     "outputs": [{"output_type": "stream", "text": [f"{a}\n"]}]}]}
    text = json.dumps(nb, indent=1)
    assert sorted(f[1] for f in found(text)) == sorted([k, a])


@pytest.mark.parametrize("bad", [
    lambda k: k[:-2] + "AB",                      # wrong ending
    lambda k: k[:-1],                             # too short
    lambda k: k + "x",                            # too long
    lambda k: k[:40] + "-" + k[41:] + "_",        # too long by one
    lambda k: PREFIX + "api03-" + "X" * 93 + "AA",   # filler (peers flag it)
    lambda k: PREFIX + "api03-" + "x" * 93 + "AA",
    lambda k: PREFIX + "api03-" + "AbC1" * 23 + "A" + "AA",  # repeated pattern
    lambda k: PREFIX + "api03-" + (string.ascii_letters + string.digits + "-_")[:64] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcde" + "AA",
    lambda k: PREFIX + "api03-your-key-here",
    lambda k: PREFIX + "api03-...",
    lambda k: PREFIX + "api03-xxxxxxxx",
    lambda k: PREFIX + "api03-R2D...igAA",        # the Admin API's hint
    lambda k: PREFIX + "api03-[A-Za-z0-9_-]{93}AA",  # a regex in docs
    lambda k: PREFIX + "api03-<YOUR_KEY>",
    lambda k: PREFIX + "admin01-" + k[len(PREFIX) + 8:],  # admin prefix, 2 characters short
    lambda k: PREFIX + "api01-your-api-key-goes-here-please-replace-this-with-the-real-one",
    lambda k: PREFIX + "oat01-" + "your_oauth_token_placeholder_value_goes_here_and_it_is_long_enough_x",
])
def test_near_misses_are_not_findings(bad) -> None:
    assert found(bad(key())) == []


def test_keys_glued_together_are_both_found() -> None:
    a, b = key(), key()
    assert [f[1] for f in found(a + b)] == [a, b]


@pytest.mark.parametrize("joiner", ["\\n", "\\r\\n", "\n", "\r\n", "\n    "])
def test_key_wrapped_over_lines_is_joined(joiner: str) -> None:
    k = key()
    text = f'"{k[:50]}{joiner}{k[50:]}"'
    assert found(text) == [("anthropic-api-key", k, 1, 2, "join")]


def test_wrapping_never_glues_unrelated_text() -> None:
    k = key()
    assert found(k[:50] + "\n" + "unrelated text on the next line") == []


def test_line_and_column_count_characters_after_multibyte_text() -> None:
    k = key()
    text = "é\n" * 3 + "résumé = " + k
    assert found(text) == [("anthropic-api-key", k, 4, 10, None)]


def test_allow_comment_marks_hit() -> None:
    k = key()
    hits = scan_bytes(f"a = '{k}'  # keyvault: allow\nb = '{k}'\n".encode())
    assert [(h.line, h.allowed) for h in hits] == [(1, True), (2, False)]


def test_non_utf8_and_crlf_text() -> None:
    k = key()
    data = b"\xff\xfe\xfa garbage \x80\r\nkey=" + k.encode() + b"\r\n\xc3("
    assert [(f[1], f[2]) for f in found(data)] == [(k, 2)]


def test_known_key_found_where_no_pattern_matches() -> None:
    k = key()
    glued = ("prefix" + k + "suffix_more").encode()  # run too long for the pattern
    assert scan_bytes(glued) == []
    hits = scan_bytes(glued, Known([make_key_secret(k)]))
    assert [h.secret.reveal() for h in hits] == [k]


def make_key_secret(value: str):
    from keyvault.keys import Secret

    return Secret(value)


BODY = string.ascii_letters + string.digits + "_-"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.binary(max_size=300), after=st.binary(max_size=300))
def test_fuzz_a_key_in_random_bytes_is_found_or_cleanly_bounded(before: bytes, after: bytes) -> None:
    k = key()
    data = before + k.encode() + b" " + after
    hits = scan_bytes(data)
    values = [h.secret.reveal() for h in hits]
    # a key is always found unless the bytes before it glue on into its body or form a
    # longer credential-looking run; nothing ever raises.
    if not before or before[-1:] not in BODY.encode():
        assert k in values


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    scan_bytes(data)
    scan_bytes(PREFIX.encode() + data)
    scan_bytes(b"c2stYW50L" + data)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=BODY + "\\n\r\"'`%=", max_size=400))
def test_fuzz_key_alphabet_soup_never_raises(text: str) -> None:
    scan_bytes((PREFIX + "api03-" + text).encode())
    scan_bytes((PREFIX + "zz12-" + text).encode())


@pytest.mark.parametrize("template", [
    'KEY = ("{a}"\n       "{b}")',            # Python implicit concatenation
    'const k = "{a}" +\n  "{b}";',              # JS
    '$k = "{a}" . "{b}";',                      # PHP
    "SELECT '{a}' || '{b}'",                    # SQL
    'X="{a}\\\n{b}"',                           # shell / C line continuation
    '#define KEY "{a}" \\\n    "{b}"',          # C macro
])
def test_key_split_over_string_literals_is_joined(template: str) -> None:
    k = key()
    cut = 37
    assert [(f[1], f[4]) for f in found(template.format(a=k[:cut], b=k[cut:]))] == [(k, "join")]


def test_string_concatenation_never_glues_unrelated_strings() -> None:
    k = key()
    assert found(f'a = "{k[:60]}" "unrelated"') == []
    assert found(f'a = "{k[:60]}" + "{k[:60]}"') == []
