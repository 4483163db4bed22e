"""Fuzzing, bounded slice: every parser's invariants (tests/fuzz_targets.py) under hypothesis,
plus 1 MB adversarial inputs that a quadratic parser cannot finish in time.

By default each target runs a small number of examples with a deadline. The long run:
`KEYVAULT_SLOW=1 python -m pytest tests/test_fuzz.py -m slow` (examples from
KEYVAULT_FUZZ_EXAMPLES, default 20000 per target), or `python bench/fuzz.py` for figures.
"""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from keyvault.errors import KeyFormatError
from keyvault.keys import parse_key
from keyvault.redact import redact
from tests import fuzz_targets as ft

SLOW = os.environ.get("KEYVAULT_SLOW") == "1"
LONG_EXAMPLES = int(os.environ.get("KEYVAULT_FUZZ_EXAMPLES", "20000"))
MB = 1 << 20
LIMIT_S = 1.0  # a linear parser does 1 MB in milliseconds; a quadratic one takes many seconds

# no explain phase: it rewrites source with libcst and takes seconds per failing test
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
bounded = settings(phases=PHASES, max_examples=150, deadline=500, suppress_health_check=[HealthCheck.too_slow], database=None)
long_run = settings(phases=PHASES, max_examples=LONG_EXAMPLES, deadline=2000, suppress_health_check=list(HealthCheck),
                    database=None)
slow = pytest.mark.skipif(not SLOW, reason="long fuzz run: set KEYVAULT_SLOW=1")


# --- bounded slice ---------------------------------------------------------------------------


@bounded
@given(ft.key_inputs)
def test_parse_key_fuzz(data: str | bytes) -> None:
    ft.check_parse_key(data)


@bounded
@given(ft.source_inputs)
def test_parse_source_fuzz(uri: str) -> None:
    ft.check_parse_source(uri)


@pytest.mark.xfail(strict=True, reason=(
    "bug in keyvault/backends/__init__.py (not this branch's file): every SourceError message quotes the "
    "whole URI with {uri!r}, so a key pasted as KEYVAULT_SOURCE or --source is echoed to stderr; fix: "
    "quote keyvault.redact.redact(uri). Remove this mark with the fix."))
@settings(phases=PHASES, max_examples=20, deadline=500, database=None)
@given(ft.keyed_source_inputs)
def test_parse_source_never_echoes_a_key(uri: str) -> None:
    ft.check_parse_source_no_echo(uri)


@bounded
@given(ft.redact_inputs)
def test_redact_fuzz(text: str) -> None:
    ft.check_redact(text)


@settings(phases=PHASES, max_examples=120, deadline=1000, suppress_health_check=list(HealthCheck), database=None)
@given(ft.audit_inputs)
def test_audit_verify_fuzz(data: bytes) -> None:
    ft.check_audit_verify(data)


@settings(phases=PHASES, max_examples=25, deadline=2000, suppress_health_check=list(HealthCheck), database=None)
@given(ft.corrupted_logs())
def test_audit_cli_on_corrupted_logs(data: bytes) -> None:
    """The CLI says TAMPERED and exits 1: no traceback, no other exit code."""
    with CliRunner().isolated_filesystem():
        open("audit.jsonl", "wb").write(data)
        open("audit.jsonl.head", "wb").write(ft._template()[1])
        result = CliRunner().invoke(
            __import__("keyvault.cli", fromlist=["cli"]).cli, ["audit", "verify", "audit.jsonl"],
            env={"KEYVAULT_AUDIT_KEY": ft.AUDIT_KEY.decode()},
        )
        assert result.exit_code == 1 and "TAMPERED" in result.output, (result.output, result.exception)
        assert isinstance(result.exception, SystemExit)


# --- linear time on 1 MB ---------------------------------------------------------------------


def _timed(call, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with ft.time_limit(LIMIT_S * 5):
        try:
            call(*args)
        except KeyFormatError:
            pass
    return time.perf_counter() - start


KEY_MB = {
    "spaces": " " * MB,
    "newlines": "\r\n" * (MB // 2),
    "bom": "\ufeff" * MB,
    "long-body": "sk-ant-api03-" + "A" * MB,
    "bad-chars": "sk-ant-api03-" + "+" * MB,
    "prefixes": "sk-ant-" * (MB // 7),
    "placeholder": "sk-ant-api03-" + "your" * (MB // 4),
    "angle": "<" + "x" * MB + ">",
    "assignments": "A=" * (MB // 2),
    "one-quote-pair": "'" + "A" * MB + "'",
}
QUADRATIC = {
    # each pass of the quote-stripping loop copies the text: n/2 passes of n bytes
    "nested-quotes": "'" * MB,
    "nested-mixed-quotes": "'\"`" * (MB // 6) + "`\"'" * (MB // 6),
}


@pytest.mark.parametrize("name", sorted(KEY_MB))
def test_parse_key_1mb_is_linear(name: str) -> None:
    assert _timed(parse_key, KEY_MB[name]) < LIMIT_S


@pytest.mark.xfail(strict=True, raises=(AssertionError, TimeoutError), reason=(
    "bug in keyvault/keys.py _trim (not this branch's file): `while text[0] == text[-1] in quotes: "
    "text = text[1:-1].strip()` copies the text once per quote pair, O(n^2): 384 KB of nested quotes "
    "take ~1 s, 1 MB ~10 s. Fix: count the matching quote pairs first, slice once. Remove this mark "
    "with the fix."))
@pytest.mark.parametrize("name", sorted(QUADRATIC))
def test_parse_key_1mb_nested_quotes_is_linear(name: str) -> None:
    assert _timed(parse_key, QUADRATIC[name]) < LIMIT_S


SOURCE_MB = {
    "no-scheme": "x" * MB,
    "fragments": "env://" + "#" * MB,
    "queries": "vault://a?" + "a=b&" * (MB // 4),
    "percent": "vault://a?x=" + "%" * MB,
    "long-scheme": "a" * MB + "://x",
}


@pytest.mark.parametrize("name", sorted(SOURCE_MB))
def test_parse_source_1mb_is_linear(name: str) -> None:
    from keyvault.backends import parse_source
    from keyvault.errors import SourceError

    start = time.perf_counter()
    with ft.time_limit(LIMIT_S * 5):
        try:
            parse_source(SOURCE_MB[name])
        except SourceError:
            pass
    assert time.perf_counter() - start < LIMIT_S


def test_redact_1mb_is_linear() -> None:
    for text in ("sk-ant-api03-" * (MB // 13), "sk-ant-api03-" + "A" * MB, "s" * MB):
        start = time.perf_counter()
        with ft.time_limit(LIMIT_S * 5):
            redact(text)
        assert time.perf_counter() - start < LIMIT_S


@pytest.mark.parametrize("name", ["one-line", "newlines", "nesting", "many-records"])
def test_audit_verify_1mb_is_linear(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    log_bytes, head = ft._template()
    data = {
        "one-line": b"{" * MB,
        "newlines": b"\n" * MB,
        "nesting": b"[" * MB + b"\n",
        "many-records": log_bytes * (MB // len(log_bytes)),
    }[name]
    path = tmp_path / "audit.jsonl"
    path.write_bytes(data)
    path.with_name("audit.jsonl.head").write_bytes(head)
    from keyvault.audit import AuditLog

    start = time.perf_counter()
    with ft.time_limit(LIMIT_S * 10):
        report = AuditLog(path, key=ft.AUDIT_KEY).verify()
    assert not report.ok
    assert time.perf_counter() - start < LIMIT_S * 3  # a MB of records is ~3000 HMACs


# --- the long run ----------------------------------------------------------------------------


@pytest.mark.slow
@slow
@pytest.mark.parametrize("target", sorted(ft.TARGETS))
def test_long_fuzz(target: str) -> None:
    check, strategy = ft.TARGETS[target]

    @long_run
    @given(strategy)
    def run(data: object) -> None:
        check(data)

    run()


@pytest.mark.slow
@slow
@long_run
@given(st.text(alphabet=ft.KEY_CHARS + "'\" \n", min_size=1000, max_size=20000))
def test_long_parse_key_large_inputs(text: str) -> None:
    with ft.time_limit(1.0):
        ft.check_parse_key(text)
