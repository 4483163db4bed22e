"""Canary: run keyvault with a known key reachable and grep everything it leaves behind.

The harness (tests/canary.py) is tested first against a deliberate leaker, once per channel, so
a clean result below means "looked and found nothing", not "did not look". The command list
grows as commands land: a command that is not built yet is skipped by name.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyvault.audit import AuditError, AuditLog
from keyvault.cli import LazyGroup
from keyvault.errors import KeyvaultError
from keyvault.keys import parse_key
from tests.canary import CANARY, assert_clean, find_leak, invoke_in_process, leak_forms, run_cli

VALUE = CANARY.reveal()
BODY = VALUE[13:]


def requires(command: str) -> None:
    if LazyGroup._load(command) is None:
        pytest.skip(f"'keyvault {command}' is not built yet")


# --- the harness finds what it is looking for ------------------------------------------------

_LEAKER = r"""
import os, subprocess, sys
key = sys.stdin.readline().strip()
mode = sys.argv[1]
if mode == "stdout": print("got", key)
if mode == "stderr": print(key[5:40], file=sys.stderr)
if mode == "file": open(os.path.join(os.environ["HOME"], ".cache", "k"), "w").write(key)
if mode == "shim": subprocess.run(["sh", "-c", ":", key])
if mode == "proc": subprocess.run(["/bin/sh", "-c", "sleep 0.3", "sh", key])
if mode == "b64":
    import base64; print(base64.b64encode(key.encode()).decode())
if mode == "hint": print(key[:16] + "..." + key[-4:])
"""


@pytest.mark.parametrize(("mode", "where"), [
    ("stdout", "stdout"), ("stderr", "stderr"), ("file", "file home/.cache/k"),
    ("shim", "child argv of 'sh'"), ("proc", "child argv of '/bin/sh'"), ("b64", "stdout"),
])
def test_harness_catches_each_channel(tmp_path: Path, mode: str, where: str) -> None:
    run = run_cli(tmp_path, [mode], command=[sys.executable, "-c", _LEAKER])
    leaks = run.leaks()
    assert any(leak.startswith(where) for leak in leaks), leaks
    channel = where.split(" of ")[0].split(" ")[0]  # the watcher may also see what the shim saw
    assert all(leak.startswith(channel) for leak in leaks), leaks
    assert all(BODY[10:30] not in leak for leak in leaks), "a leak report must not repeat the value"
    with pytest.raises(AssertionError, match="leaked the canary"):
        assert_clean(run)


def test_harness_lets_a_hint_through(tmp_path: Path) -> None:
    run = run_cli(tmp_path, ["hint"], command=[sys.executable, "-c", _LEAKER])
    assert run.stdout.strip() == CANARY.hint
    assert_clean(run)


def test_leak_forms_cover_partial_and_encoded_copies() -> None:
    forms = leak_forms()
    assert find_leak(VALUE[:60]) and find_leak(VALUE[50:]) and find_leak(VALUE.encode().hex())
    assert find_leak(CANARY.hint) is None and find_leak(CANARY.fingerprint) is None
    assert all(len(f) >= 12 for f in forms)


# --- core files ------------------------------------------------------------------------------


def test_cli_disables_core_dumps(tmp_path: Path) -> None:
    """A core file would hold the key: the CLI drops the soft RLIMIT_CORE to 0 first thing.
    The command is held open on a FIFO while its /proc limits are read."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("the hard core limit is already 0 here")
    soft = hard if hard != resource.RLIM_INFINITY else resource.RLIM_INFINITY
    fifo = tmp_path / "audit.jsonl"
    os.mkfifo(fifo)

    def allow_cores() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))

    proc = subprocess.Popen([sys.executable, "-m", "keyvault", "audit", "show", str(fifo)], preexec_fn=allow_cores,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        limits, deadline = "", time.monotonic() + 20
        while time.monotonic() < deadline:
            limits = Path(f"/proc/{proc.pid}/limits").read_text()
            core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
            if core.split()[4] == "0" and "python" in Path(f"/proc/{proc.pid}/cmdline").read_text():
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"keyvault kept its core limit: {core}")
    finally:
        with open(fifo, "w"):
            pass  # let `show` read an empty log and exit
        proc.communicate(timeout=30)


# --- audit -----------------------------------------------------------------------------------


def test_audit_refuses_the_canary_in_every_shape(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", key=b"k" * 32)
    log.append("rotate.plan", hint=CANARY.hint, fingerprint=CANARY.fingerprint)
    for shape in (CANARY, VALUE, f"x-api-key: {VALUE}", {"nested": [VALUE]}, VALUE[:40]):
        with pytest.raises(AuditError) as info:
            log.append("rotate.create", new=shape)
        assert find_leak(str(info.value)) is None
    for path in tmp_path.iterdir():
        assert find_leak(path.read_bytes()) is None, path


def test_audit_show_and_verify_on_a_log_edited_to_hold_the_canary(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", key=b"k" * 32)
    log.append("rotate.plan", hint=CANARY.hint)
    record = json.loads(log.path.read_text())
    record["fields"]["hint"] = VALUE
    record["event"] = VALUE
    log.path.write_text(json.dumps(record) + "\n")
    env = {"KEYVAULT_AUDIT_KEY": "k" * 32}
    allow = [log.path]  # the planted input itself
    for args in (["audit", "show", str(log.path)], ["audit", "show", "--format", "json", str(log.path)],
                 ["--debug", "audit", "verify", "--format", "json", str(log.path)]):
        run = run_cli(tmp_path, args, via="none", env=env, allow=allow)
        assert_clean(run)
        assert run.code in (0, 1)


# --- verify (foundation) ---------------------------------------------------------------------

BAD_VALUES = {
    "truncated": VALUE[:-1],
    "extra": VALUE + "Q",
    "bad-char": VALUE[:50] + "+" + VALUE[51:],
    "two-keys": VALUE + VALUE,
    "wrong-family": VALUE.replace("sk-ant-api03-", "sk-ant-oat01-"),
    "quoted-with-garbage": f"'{VALUE}' trailing",
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_verify_bad_key_on_stdin(tmp_path: Path, name: str) -> None:
    requires("verify")
    for args in (["--debug", "verify", "--retries", "0"], ["verify"]) if name == "bad-char" else (["--debug", "verify"],):
        run = run_cli(tmp_path, args, via="stdin", value=BAD_VALUES[name])
        assert_clean(run)
        assert run.code == 2 and "keyvault: error:" in run.stderr


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_verify_good_key_network_error(tmp_path: Path, debug: bool) -> None:
    """ANTHROPIC_BASE_URL points at a closed loopback port: the network-error path."""
    requires("verify")
    run = run_cli(tmp_path, ["--debug", "verify", "--retries", "0"] if debug else ["verify", "--retries", "0"],
                  via="stdin")
    assert_clean(run)
    assert run.code != 0


@pytest.mark.parametrize(("via", "source"), [("env", "env://ANTHROPIC_API_KEY"),
                                             ("dotenv", "dotenv://.env#ANTHROPIC_API_KEY")])
def test_verify_from_a_source(tmp_path: Path, via: str, source: str) -> None:
    requires("verify")
    run = run_cli(tmp_path, ["--debug", "verify", "--retries", "0", "--source", source], via=via, stdin="")  # type: ignore[arg-type]
    assert_clean(run)
    assert run.code != 0


def test_verify_in_process_log_records_and_exception(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    requires("verify")
    for value in (VALUE, *BAD_VALUES.values()):
        run = invoke_in_process(tmp_path, ["--debug", "verify", "--retries", "0"], caplog, input=value + "\n")
        assert_clean(run)
        caplog.clear()


def test_a_key_pasted_as_a_command_argument_is_not_echoed(tmp_path: Path) -> None:
    """Users paste the key where a command or option was expected; click's usage error must
    not print it back."""
    for args in ([VALUE], ["--debug", VALUE], ["audit", "show", "--format", VALUE], ["audit", VALUE]):
        run = run_cli(tmp_path, args, via="none")
        assert run.code == 2
        assert_clean(run)


def test_a_key_pasted_as_a_source_is_not_echoed(tmp_path: Path) -> None:
    requires("get")
    cases: list[tuple[list[str], dict[str, str]]] = [
        (["get", "--source", VALUE], {}),
        (["get"], {"KEYVAULT_SOURCE": VALUE}),
        (["get", "--source", f"env://{VALUE}"], {}),
        (["exec", "--source", VALUE, "--", "true"], {}),
    ]
    for args, env in cases:
        run = run_cli(tmp_path, args, via="none", env=env)
        assert run.code == 2
        assert_clean(run)


# --- library calls ---------------------------------------------------------------------------


def test_parse_key_rejections_of_canary_variants() -> None:
    for value in BAD_VALUES.values():
        with pytest.raises(KeyvaultError) as info:
            parse_key(value, expect="api")
        assert find_leak(str(info.value)) is None and find_leak(repr(info.value)) is None


# --- verify against the fake API -------------------------------------------------------------


@pytest.fixture
def canary_api(fake_anthropic):  # type: ignore[no-untyped-def]
    """FakeAnthropic holding the canary as a live key."""
    minted = fake_anthropic.mint_key("canary", secret=CANARY)
    return fake_anthropic, minted


def _fake_log(fake) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"fake API request log": repr(fake.requests)}


@pytest.mark.parametrize(("via", "args"), [
    ("stdin", ["verify"]),
    ("stdin", ["verify", "--format", "json"]),
    ("env", ["--debug", "verify", "--source", "env://ANTHROPIC_API_KEY"]),
    ("dotenv", ["verify", "--source", "dotenv://.env#ANTHROPIC_API_KEY"]),
])
def test_verify_live_and_revoked_key(tmp_path: Path, canary_api, via: str, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    requires("verify")
    fake, minted = canary_api
    env = {"ANTHROPIC_BASE_URL": fake.base_url}
    run = run_cli(tmp_path, args, via=via, env=env, stdin=None if via == "stdin" else "")  # type: ignore[arg-type]
    run.extra.update(_fake_log(fake))
    assert_clean(run)
    assert run.code == 0 and CANARY.hint in run.stdout
    if args != ["verify"]:
        return  # the revoked path once is enough: it differs only in the answer
    fake.set_status(minted.id, "inactive")
    run = run_cli(tmp_path, args, via=via, env=env, stdin=None if via == "stdin" else "")  # type: ignore[arg-type]
    run.extra.update(_fake_log(fake))
    assert_clean(run)
    assert run.code == 1


# --- get and exec ----------------------------------------------------------------------------


@pytest.mark.parametrize(("via", "args"), [
    ("env", ["get"]),
    ("env", ["get", "--format", "json"]),
    ("env", ["--debug", "get", "--source", "env://ANTHROPIC_API_KEY"]),
    ("dotenv", ["get", "--source", "dotenv://.env#ANTHROPIC_API_KEY"]),
    ("dotenv", ["get", "--format", "json", "--source", "dotenv://.env#ANTHROPIC_API_KEY"]),
])
def test_get_shows_hint_and_fingerprint_only(tmp_path: Path, via: str, args: list[str]) -> None:
    requires("get")
    run = run_cli(tmp_path, args, via=via)  # type: ignore[arg-type]
    assert_clean(run)
    assert run.code == 0 and CANARY.hint in run.stdout


@pytest.mark.parametrize(("via", "name", "debug"), [
    ("env", "truncated", False), ("dotenv", "bad-char", True), ("env", "two-keys", True), ("dotenv", "extra", False),
])
def test_get_and_exec_with_a_damaged_key(tmp_path: Path, via: str, name: str, debug: bool) -> None:
    requires("get")
    source = "env://ANTHROPIC_API_KEY" if via == "env" else "dotenv://.env#ANTHROPIC_API_KEY"
    prefix = ["--debug"] if debug else []
    for args in ([*prefix, "get", "--source", source], [*prefix, "exec", "--source", source, "--", "true"]):
        run = run_cli(tmp_path, args, via=via, value=BAD_VALUES[name])  # type: ignore[arg-type]
        assert_clean(run)
        assert run.code == 2 and "keyvault: error:" in run.stderr


def test_get_reveal_prints_the_key_only_to_its_pipe(tmp_path: Path) -> None:
    requires("get")
    run = run_cli(tmp_path, ["get", "--reveal", "--source", "env://ANTHROPIC_API_KEY"], via="env")
    assert run.code == 0 and run.stdout == VALUE  # asked for, into a pipe: the one place it may go
    run.stdout = ""
    assert_clean(run)


@pytest.mark.parametrize("via", ["env", "dotenv"])
def test_exec_puts_the_key_in_the_environment_never_argv(tmp_path: Path, via: str) -> None:
    requires("exec")
    script = 'test "${#ANTHROPIC_API_KEY}" -eq 108 && echo has-key; sleep 0.3'
    source = "env://ANTHROPIC_API_KEY" if via == "env" else "dotenv://.env#ANTHROPIC_API_KEY"
    run = run_cli(tmp_path, ["exec", "--source", source, "--", "sh", "-c", script], via=via)  # type: ignore[arg-type]
    assert_clean(run)
    assert run.code == 0 and run.stdout.strip() == "has-key"
    assert any(argv[:2] == ["sh", "-c"] for argv in run.argvs), "the shim must have seen the child"


def test_exec_of_a_missing_command(tmp_path: Path) -> None:
    requires("exec")
    run = run_cli(tmp_path, ["--debug", "exec", "--source", "env://ANTHROPIC_API_KEY", "--", "no-such-cmd-kv"],
                  via="env")
    assert_clean(run)
    assert run.code == 127


def test_file_store_holds_no_plaintext_and_get_shows_the_hint(tmp_path: Path, _store_template: Path) -> None:
    import shutil

    from keyvault.backends import open_backend
    from tests.fixtures.local import PASSPHRASE

    requires("get")
    store = tmp_path / "store"
    shutil.copyfile(_store_template, store)
    store.chmod(0o600)
    os.environ["KEYVAULT_PASSPHRASE"] = PASSPHRASE
    try:
        backend = open_backend(f"file://{store}#prod")
        backend.stage(CANARY)
        backend.promote("")
    finally:
        del os.environ["KEYVAULT_PASSPHRASE"]
    assert find_leak(store.read_bytes()) is None
    for args in (["get", "--source", f"file://{store}#prod"], ["--debug", "get", "--source", f"file://{store}#nope"]):
        run = run_cli(tmp_path, args, via="none", env={"KEYVAULT_PASSPHRASE": PASSPHRASE})
        assert_clean(run)
    assert run.code == 2


# --- the start-up API, in process ------------------------------------------------------------


def test_get_api_key_and_load_env_log_and_raise_without_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from keyvault import resolve

    caplog.set_level("DEBUG")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("KEYVAULT_SOURCE", raising=False)
    texts: list[str] = []
    for value in (VALUE, *BAD_VALUES.values()):
        (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={value}\n")
        resolve.clear_cache()
        try:
            secret = resolve.get_api_key("dotenv://.env#ANTHROPIC_API_KEY")
            texts += [repr(secret), str(secret), repr(resolve.lookup("dotenv://.env#ANTHROPIC_API_KEY"))]
        except KeyvaultError as exc:
            texts += [str(exc), repr(exc), repr(exc.args)]
    resolve.clear_cache()
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert find_leak(text) is None, "the start-up API leaked the canary"


def test_dotenv_writes_keep_the_key_in_the_env_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """stage/promote/rotation state in process: git is run (tracked-file guard) with paths only;
    the lock, state and temp files hold no value."""
    from keyvault.backends import open_backend
    from keyvault.testing.keygen import make_key
    from tests.canary import ProcWatcher, collect_files, make_shim, read_shim_log

    old = make_key()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # so the tracked-file guard runs git
    env_file = tmp_path / ".env"
    env_file.write_text(f"DEBUG=1\nANTHROPIC_API_KEY={old.reveal()}\n")
    shim = make_shim(tmp_path / ".canary" / "bin", tmp_path / ".canary" / "argv.log")
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    backend = open_backend(f"dotenv://{env_file}#ANTHROPIC_API_KEY")
    with ProcWatcher(os.getpid()) as watcher:
        backend.stage(CANARY)
        backend.promote(old.fingerprint)
        state, token = backend.read_state()
        backend.write_state({"step": "promoted", "new": CANARY.fingerprint, "hint": CANARY.hint}, token)
        with pytest.raises(KeyvaultError) as info:
            backend.write_state({"new": VALUE}, backend.read_state()[1])
    argvs = watcher.argvs + read_shim_log(tmp_path / ".canary" / "argv.log")
    assert any(a and a[0].endswith("git") for a in argvs), "the git guard must have run (and been seen)"
    from tests.canary import CanaryRun

    run = CanaryRun(["dotenv stage/promote"], 0, "", "", argvs, collect_files(tmp_path, [env_file]),
                    extra={"error": str(info.value)})
    assert_clean(run)
    assert find_leak(env_file.read_bytes()) is not None, "the key must be in the .env file itself"


def test_demo_shows_no_key_and_leaves_none_behind(tmp_path: Path) -> None:
    """The demo mints its own keys, so there is no canary to grep: any credential value at all
    (keyvault.redact.credential_in) in its output, its children's argv or the files it leaves
    in the sandbox (temp dir included) is a leak."""
    from keyvault.redact import credential_in

    requires("demo")
    run = run_cli(tmp_path, ["demo"], via="none", timeout=120)
    found = [name for name, text in (("stdout", run.stdout), ("stderr", run.stderr)) if credential_in(text)]
    found += [f"argv of {argv[0]!r}" for argv in run.argvs if credential_in("\0".join(argv))]
    found += [f"file {path}" for path, data in run.files.items() if credential_in(data.decode("latin-1"))]
    assert not found, "keyvault demo showed or left a key: " + ", ".join(found)
    assert "Traceback" not in run.stderr
    if LazyGroup._load("scan") is not None:
        assert run.code == 0, run.stderr[-400:]


# --- the scanner -----------------------------------------------------------------------------


def test_scan_and_baseline_show_the_canary_by_hint_only(tmp_path: Path) -> None:
    import base64

    requires("scan")
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    planted = [project / "settings.py", project / "k8s-secret.yaml"]
    planted[0].write_text(f'ANTHROPIC_API_KEY = "{VALUE}"\n')
    planted[1].write_text(f"data:\n  key: {base64.b64encode(VALUE.encode()).decode()}\n")
    cases = [
        (["scan", str(project)], 1),
        (["scan", "--format", "json", str(project)], 1),
        (["scan", "--format", "sarif", str(project)], 1),
        (["--debug", "scan", "--stdin"], 1),
        (["baseline", "create", "--file", str(project / "baseline.json"), str(project)], 0),
        (["scan", "--baseline", str(project / "baseline.json"), str(project)], 0),
    ]
    for args, code in cases:
        run = run_cli(tmp_path, args, via="stdin" if "--stdin" in args else "none", allow=planted)
        assert_clean(run)
        assert run.code == code, (args, run.code, run.stderr[-300:])
        if code == 1:
            assert CANARY.hint in run.stdout
    assert CANARY.fingerprint in (project / "baseline.json").read_text()
