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

from keyvault.errors import KeyvaultError
from keyvault.keys import parse_key
from keyvault.redact import redact
from tests import fuzz_targets as ft

SLOW = os.environ.get("KEYVAULT_SLOW") == "1"
LONG_EXAMPLES = int(os.environ.get("KEYVAULT_FUZZ_EXAMPLES", "20000"))
MB = 1 << 20
LIMIT_S = 1.0  # a linear parser does 1 MB in milliseconds; a quadratic one takes many seconds

# no explain phase: it rewrites source with libcst and takes seconds per failing test
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
bounded = settings(phases=PHASES, max_examples=100, deadline=500, suppress_health_check=[HealthCheck.too_slow],
                   database=None)
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


KEYED_URIS = [
    pytest.param("{key}", id="bare-key"),
    pytest.param("{key}://x", id="key-as-scheme"),
    pytest.param("vault://a?x={key}&token=1", id="key-in-query"),
    pytest.param("vault://a?{key}&&", id="key-in-bad-query"),
    pytest.param("env://{key}", id="key-as-location"),
    pytest.param("dotenv://.env#{key}", id="key-as-field"),
]


@pytest.mark.parametrize("shape", KEYED_URIS)
def test_source_uri_errors_never_echo_a_key(shape: str) -> None:
    from keyvault.testing.keygen import make_key

    key = make_key().reveal().replace("_", "x")  # '_' is not a scheme character: keep every shape reachable
    ft.check_parse_source_no_echo(shape.format(key=key))


@bounded
@given(ft.policy_docs())
def test_policy_fuzz(text: str) -> None:
    ft.check_policy(text)


@pytest.mark.parametrize("value", ["86400000000000.0", '"99999999999w"', "inf", "nan", "1e300"])
def test_policy_huge_or_infinite_durations_are_policy_errors(value: str) -> None:
    from keyvault.policy import PolicyError, parse_policy

    text = f'[rotation]\ngrace = {value}\n[environments.prod]\ntargets = ["dotenv://.env#ANTHROPIC_API_KEY"]\n'
    with pytest.raises(PolicyError, match="rotation.grace"):
        parse_policy(text)


@pytest.mark.parametrize("slot", ft.POLICY_KEY_SLOTS)
def test_policy_refuses_a_key_without_echoing_it(slot: str) -> None:
    from keyvault.testing.keygen import make_key

    ft.check_policy_no_echo(ft.keyed_policy(slot, make_key().reveal()))


@bounded
@given(ft.pubsub_events())
def test_pubsub_notification_fuzz(event: object) -> None:
    ft.check_pubsub(event)


@bounded
@given(st.one_of(st.binary(max_size=2000), ft.planted().map(lambda c: c[1])))
def test_scan_bytes_fuzz(data: bytes) -> None:
    ft.check_scan_bytes(data)


@bounded
@given(ft.planted())
def test_scanner_finds_a_key_behind_every_decoder(case: tuple[str, bytes, str]) -> None:
    ft.check_scan_finds_planted(case)


@bounded
@given(ft.baseline_docs())
def test_baseline_file_fuzz(data: bytes) -> None:
    ft.check_baseline(data)


@settings(phases=PHASES, max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(ft.hook_stdin())
def test_pre_push_and_pre_receive_stdin_fuzz(case: tuple[str, str]) -> None:
    ft.check_hook_stdin(case)


@pytest.mark.parametrize("hook", ["pre-receive", "pre-push"])
def test_hook_stdin_with_a_nul_byte_is_a_usage_error(hook: str) -> None:
    _, shas = ft.hook_repo()
    if hook == "pre-receive":
        line = f"{shas[0]} \x00 refs/heads/main\n"
    else:
        line = f"refs/heads/main \x00 refs/heads/main {shas[0]}\n"
    ft.check_hook_stdin((hook, line))


def test_hook_stdin_pushing_the_key_commit_is_refused() -> None:
    """The property's key clause, on the inputs that reach it (random lines rarely do)."""
    _, shas = ft.hook_repo()
    zero = "0" * 40
    for case in (("pre-push", f"refs/heads/main {shas[1]} refs/heads/main {zero}\n"),
                 ("pre-push", f"refs/heads/main {shas[2]} refs/heads/main {zero}\nGARBAGE\n"),  # exit 2
                 ("pre-receive", f"{zero} {shas[3]} refs/heads/main\n"),
                 ("pre-receive", f"{shas[2]} {shas[3]} refs/heads/main\n")):
        ft.check_hook_stdin(case)


@bounded
@given(ft.redact_inputs)
def test_redact_fuzz(text: str) -> None:
    ft.check_redact(text)


@settings(phases=PHASES, max_examples=120, deadline=1000, suppress_health_check=list(HealthCheck), database=None)
@given(ft.audit_inputs)
def test_audit_verify_fuzz(data: bytes) -> None:
    ft.check_audit_verify(data)


@settings(phases=PHASES, max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(ft.dotenv_docs())
def test_dotenv_rewrite_fuzz(doc: tuple[str, str]) -> None:
    ft.check_dotenv_rewrite(doc)


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
        intact = data == ft._template()[0]  # two mutations can cancel out (swap, swap back)
        assert result.exit_code == (0 if intact else 1), (result.output, result.exception)
        assert ("intact" if intact else "TAMPERED") in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


# --- linear time on 1 MB ---------------------------------------------------------------------


def _seconds(call, data, limit: float = LIMIT_S * 10) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with ft.time_limit(limit):
        try:
            call(data)
        except KeyvaultError:
            pass
    return time.perf_counter() - start


def assert_linear(call, make, size: int = MB) -> None:  # type: ignore[no-untyped-def]
    """`size` bytes in under a second; on a loaded machine, a 4x larger input must cost under
    8x more (linear is ~4x, quadratic ~16x), so a busy CI box does not fail a linear parser."""
    big = _seconds(call, make(size))
    if big < LIMIT_S:
        return
    small = _seconds(call, make(size // 4))
    assert big / max(small, 1e-3) < 8, f"{size} bytes took {big:.2f} s, {size // 4} bytes {small:.2f} s"


def _rep(unit: str, prefix: str = "", suffix: str = ""):  # type: ignore[no-untyped-def]
    return lambda n: prefix + unit * (n // len(unit)) + suffix


KEY_MB = {
    "spaces": _rep(" "),
    "newlines": _rep("\r\n"),
    "bom": _rep("\ufeff"),
    "long-body": _rep("A", "sk-ant-api03-"),
    "bad-chars": _rep("+", "sk-ant-api03-"),
    "prefixes": _rep("sk-ant-"),
    "placeholder": _rep("your", "sk-ant-api03-"),
    "angle": _rep("x", "<", ">"),
    "assignments": _rep("A="),
    "one-quote-pair": _rep("A", "'", "'"),
}
NESTED_QUOTES = {
    # once quadratic (each pass of the quote-stripping loop copied the text): found by this file
    "nested-quotes": _rep("'"),
    "nested-mixed-quotes": lambda n: "'\"`" * (n // 6) + "`\"'" * (n // 6),
}


@pytest.mark.parametrize("name", sorted(KEY_MB))
def test_parse_key_1mb_is_linear(name: str) -> None:
    assert_linear(parse_key, KEY_MB[name])


@pytest.mark.parametrize("name", sorted(NESTED_QUOTES))
def test_parse_key_1mb_nested_quotes_is_linear(name: str) -> None:
    assert_linear(parse_key, NESTED_QUOTES[name])


SOURCE_MB = {
    "no-scheme": _rep("x"),
    "fragments": _rep("#", "env://"),
    "queries": _rep("a=b&", "vault://a?"),
    "percent": _rep("%", "vault://a?x="),
    "long-scheme": _rep("a", "", "://x"),
}


@pytest.mark.parametrize("name", sorted(SOURCE_MB))
def test_parse_source_1mb_is_linear(name: str) -> None:
    from keyvault.backends import parse_source

    assert_linear(parse_source, SOURCE_MB[name])


@pytest.mark.parametrize("name", ["prefixes", "long-body", "plain"])
def test_redact_1mb_is_linear(name: str) -> None:
    make = {"prefixes": _rep("sk-ant-api03-"), "long-body": _rep("A", "sk-ant-api03-"), "plain": _rep("s")}[name]
    assert_linear(redact, make)


@pytest.mark.parametrize("name", ["one-line", "newlines", "nesting", "many-records", "garbage-lines"])
def test_audit_verify_1mb_is_linear(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    from keyvault.audit import AuditLog

    log_bytes, head = ft._template()
    make = {
        "one-line": lambda n: b"{" * n,
        "newlines": lambda n: b"\n" * n,
        "nesting": lambda n: b"[" * n + b"\n",
        "many-records": lambda n: log_bytes * (n // len(log_bytes)),
        "garbage-lines": lambda n: b"{x}\n" * (n // 4),
    }[name]
    path = tmp_path / "audit.jsonl"
    path.with_name("audit.jsonl.head").write_bytes(head)

    def verify(data: bytes) -> None:
        path.write_bytes(data)
        assert not AuditLog(path, key=ft.AUDIT_KEY).verify().ok

    # 256 KB: a line-oriented reader pays per line, and a real log has ~300 bytes per line
    assert_linear(verify, make, size=MB // 4)


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
@given(ft.keyed_policy_docs())
def test_long_policy_refuses_keys_without_echo(text: str) -> None:
    ft.check_policy_no_echo(text)


@pytest.mark.slow
@slow
@long_run
@given(ft.keyed_source_inputs)
def test_long_source_uri_errors_never_echo_a_key(uri: str) -> None:
    ft.check_parse_source_no_echo(uri)


@pytest.mark.slow
@slow
@long_run
@given(st.text(alphabet=ft.KEY_CHARS + "'\" \n", min_size=1000, max_size=20000))
def test_long_parse_key_large_inputs(text: str) -> None:
    with ft.time_limit(1.0):
        ft.check_parse_key(text)
