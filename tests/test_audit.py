"""The audit trail: every kind of tampering is reported with its line, key values are refused,
concurrent writers keep one chain, and the CLI's exit codes say which case it is."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyvault.audit import AuditError, AuditLog
from keyvault.cli import cli
from keyvault.testing.keygen import make_key

KEY = b"k" * 32


def _log(tmp_path: Path, n: int = 6, key: bytes | None = KEY) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", key=key)
    secret = make_key()
    for i in range(1, n + 1):
        log.append("rotate.step", step=i, fingerprint=secret.fingerprint, hint=secret.hint, key_id=f"apikey_{i:04d}")
    return log


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def _problems(log: AuditLog) -> list[tuple[int | None, str]]:
    report = log.verify()
    assert not report.ok
    return [(p.line, p.kind) for p in report.problems]


def test_intact_log_verifies(tmp_path: Path) -> None:
    log = _log(tmp_path)
    report = log.verify()
    assert report.ok and report.records == 6 and report.last_seq == 6 and report.head_seq == 6
    assert [r["seq"] for r in log.records()] == [1, 2, 3, 4, 5, 6]
    first = next(iter(log.records()))
    assert first["event"] == "rotate.step" and first["fields"]["key_id"] == "apikey_0001"


def test_edited_field_is_reported_at_its_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2] = lines[2].replace(b"apikey_0003", b"apikey_9999")
    _write(log, lines)
    assert _problems(log) == [(3, "edited")]
    assert "line 3: seq 3 fails its MAC" in str(log.verify().problems[0])


def test_edit_that_keeps_the_json_value_is_still_reported(tmp_path: Path) -> None:
    # "\u0061" and "a" parse to the same value: the MAC alone would not see this edit
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1] = lines[1].replace(b'"rotate.step"', b'"\\u0072otate.step"')
    _write(log, lines)
    assert _problems(log) == [(2, "edited")]


def test_dropped_record_is_reported(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[2]
    _write(log, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(3, "dropped")]
    assert "seq 3 dropped before this line" in str(report.problems[0])


def test_dropped_first_records_are_reported(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _write(log, _lines(log)[2:])
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(1, "dropped")]
    assert "seqs 1-2 dropped" in str(report.problems[0])


def test_reordered_records_are_reported(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2], lines[3] = lines[3], lines[2]
    _write(log, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(3, "reordered")]
    assert "seq 3 is at line 4" in str(report.problems[0])


def test_forged_record_inserted_is_reported(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    forged = json.loads(lines[2])
    forged["fields"]["key_id"] = "apikey_evil"
    forged["seq"] = 4
    forged["prev_mac"] = json.loads(lines[2])["mac"]
    lines.insert(3, json.dumps(forged, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    _write(log, lines)
    problems = _problems(log)
    assert problems[0] == (4, "edited")  # no key, no valid MAC
    assert (5, "inserted") in problems  # the genuine seq 4 now repeats


def test_replayed_copy_of_a_genuine_record_is_reported(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines.insert(4, lines[1])
    _write(log, lines)
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(5, "inserted")]
    assert "seq 2 again (also at line 2)" in str(report.problems[0])


def test_record_replaced_by_a_validly_macd_one_from_another_log(tmp_path: Path) -> None:
    # same key, other log: each record has a good MAC, but seq 3 does not chain to seq 2
    log = _log(tmp_path)
    other = _log(tmp_path / "other")
    lines = _lines(log)
    lines[2] = _lines(other)[2]
    _write(log, lines)
    assert _problems(log)[0] == (3, "inserted")


def test_truncated_tail_partial_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-40])
    problems = _problems(log)
    assert (6, "truncated") in problems
    with pytest.raises(AuditError, match="ends with a partial record"):
        log.append("rotate.step", step=7)


def test_truncated_tail_whole_records_dropped_from_the_end(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _write(log, _lines(log)[:4])
    report = log.verify()
    assert [(p.line, p.kind) for p in report.problems] == [(4, "truncated")]
    assert "ends at seq 4 but its head records seq 6" in str(report.problems[0])
    with pytest.raises(AuditError, match="removed from the end"):
        log.append("rotate.step", step=7)


def test_log_emptied_or_deleted(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.path.write_bytes(b"")
    assert _problems(log) == [(None, "truncated")]
    log.path.unlink()
    assert _problems(log) == [(None, "truncated")]


def test_head_replaced_by_an_older_copy(tmp_path: Path) -> None:
    log = _log(tmp_path, n=2)
    old_head = log.head_path.read_bytes()
    for i in range(3):
        log.append("rotate.step", step=10 + i)
    log.head_path.write_bytes(old_head)
    assert _problems(log) == [(None, "head")]


def test_head_edited(tmp_path: Path) -> None:
    log = _log(tmp_path)
    head = json.loads(log.head_path.read_text())
    head["seq"] = 3
    log.head_path.write_text(json.dumps(head))
    kinds = [k for _, k in _problems(log)]
    assert kinds == ["head"]


def test_wrong_key_is_named_as_such(tmp_path: Path) -> None:
    _log(tmp_path)
    report = AuditLog(tmp_path / "audit.jsonl", key=b"x" * 32).verify()
    assert [p.kind for p in report.problems] == ["key"]
    assert "wrong audit key" in str(report.problems[0])


def test_garbage_line_is_malformed_not_a_traceback(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1] = b'{"seq": "two"\xff}\n'
    _write(log, lines)
    problems = _problems(log)
    assert problems[0] == (2, "malformed")


# --- what may be recorded --------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [lambda k: k, lambda k: k.reveal(), lambda k: f"Bearer {k.reveal()}",
                                  lambda k: {"headers": {"x-api-key": k.reveal()}}, lambda k: [k.hint, k.reveal()[:30]]])
def test_key_values_are_refused_and_the_error_does_not_echo_them(tmp_path: Path, wrap) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    secret = make_key()
    with pytest.raises(AuditError) as info:
        log.append("rotate.create", new_key=wrap(secret))
    message = str(info.value)
    assert "new_key" in message and "fingerprint" in message
    assert secret.reveal()[13:25] not in message
    assert not log.path.exists() or secret.reveal()[13:25] not in log.path.read_text()


def test_hints_fingerprints_and_ids_are_accepted(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    secret = make_key()
    rec = log.append("rotate.create", hint=secret.hint, fingerprint=secret.fingerprint, id="apikey_01",
                     short=f"sk-ant-api03-<5 chars redacted>", path=tmp_path, n=1.5, ok=True, none=None)
    assert rec["fields"]["hint"] == secret.hint and rec["seq"] == 1


@pytest.mark.parametrize(("event", "fields", "match"), [
    ("Bad Event", {}, "dotted lowercase"),
    ("ok", {"obj": object()}, "has type object"),
    ("ok", {"nan": float("nan")}, "JSON cannot hold"),
    ("ok", {"blob": "x" * 70000}, "the limit is"),
])
def test_bad_records_are_refused(tmp_path: Path, event: str, fields: dict, match: str) -> None:
    with pytest.raises(AuditError, match=match):
        AuditLog(tmp_path / "audit.jsonl", key=KEY).append(event, **fields)


# --- files, key, concurrency -----------------------------------------------------------------


def test_key_file_is_created_0600_and_a_loose_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYVAULT_AUDIT_KEY", raising=False)
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    log.append("rotate.plan")
    for p in (log.path, log.key_path, log.head_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert AuditLog(log.path).verify().ok
    log.key_path.chmod(0o644)
    with pytest.raises(AuditError, match="readable by others"):
        AuditLog(log.path).verify()


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYVAULT_AUDIT_KEY", "e" * 64)
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("rotate.plan")
    assert not log.key_path.exists()
    assert log.verify().ok
    monkeypatch.setenv("KEYVAULT_AUDIT_KEY", "f" * 64)
    assert [p.kind for p in AuditLog(log.path).verify().problems] == ["key"]  # one record and a head, both fail
    monkeypatch.setenv("KEYVAULT_AUDIT_KEY", "short")
    with pytest.raises(AuditError, match="at least 16"):
        AuditLog(log.path).verify()


def test_symlinked_log_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    (tmp_path / "audit.jsonl").symlink_to(target)
    with pytest.raises(AuditError, match="symlink"):
        AuditLog(tmp_path / "audit.jsonl", key=KEY).append("rotate.plan")
    assert target.read_text() == ""


_WRITER = """
import sys
from keyvault.audit import AuditLog
log = AuditLog(sys.argv[1], key=b"k" * 32)
for i in range(int(sys.argv[3])):
    log.append("soak.write", writer=int(sys.argv[2]), i=i)
"""


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(w), "25"]) for w in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    log = AuditLog(path, key=KEY)
    report = log.verify()
    assert report.ok, report.problems
    records = list(log.records())
    assert [r["seq"] for r in records] == list(range(1, 101))
    assert sorted((r["fields"]["writer"], r["fields"]["i"]) for r in records) == [(w, i) for w in range(4) for i in range(25)]


# --- CLI -------------------------------------------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full_env = {**os.environ, "KEYVAULT_AUDIT_KEY": KEY.decode(), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "keyvault", *args], capture_output=True, text=True, env=full_env, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    log = _log(tmp_path)
    code, out, err = _run("audit", "verify", str(log.path))
    assert code == 0 and "intact, 6 records" in out and err == ""
    lines = _lines(log)
    lines[3] = lines[3].replace(b"apikey_0004", b"apikey_0000")
    _write(log, lines)
    code, out, err = _run("audit", "verify", str(log.path))
    assert code == 1 and "TAMPERED" in out and "line 4: seq 4 fails its MAC" in out
    code, out, err = _run("audit", "verify", "--format", "json", str(log.path))
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["problems"][0]["line"] == 4 and doc["problems"][0]["kind"] == "edited"
    code, out, err = _run("audit", "verify", str(tmp_path / "missing.jsonl"))
    assert code == 2 and err.startswith("keyvault: error: no audit log at") and "Traceback" not in err
    code, out, err = _run("audit", "verify", "--format", "xml", str(log.path))
    assert code == 2 and "Traceback" not in err


def test_cli_uses_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("KEYVAULT_AUDIT_LOG", raising=False)
    monkeypatch.setenv("KEYVAULT_AUDIT_KEY", KEY.decode())
    AuditLog().append("rotate.plan", target="env")
    assert (tmp_path / "state" / "keyvault" / "audit.jsonl").exists()
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0 and "intact, 1 records" in result.output


def test_cli_show_text_and_json(tmp_path: Path) -> None:
    log = _log(tmp_path, n=2)
    code, out, err = _run("audit", "show", str(log.path))
    assert code == 0 and "rotate.step" in out and "key_id=apikey_0002" in out and "not verified" in err
    code, out, err = _run("audit", "show", "--format", "json", str(log.path))
    assert code == 0 and [r["seq"] for r in json.loads(out)] == [1, 2]
    with log.path.open("ab") as fh:
        fh.write(b"not json\n")
    code, out, err = _run("audit", "show", str(log.path))
    assert code == 1 and "line 3: not valid JSON" in err


def test_cli_show_never_prints_a_key_planted_by_an_editor(tmp_path: Path) -> None:
    log = _log(tmp_path, n=1)
    secret = make_key()
    rec = json.loads(_lines(log)[0])
    rec["fields"]["hint"] = secret.reveal()
    log.path.write_text(json.dumps(rec) + "\n")
    for fmt in ("text", "json"):
        code, out, err = _run("audit", "show", "--format", fmt, str(log.path))
        assert secret.reveal()[13:] not in out + err and secret.hint in out


def test_cli_show_escapes_terminal_control_characters(tmp_path: Path) -> None:
    log = _log(tmp_path, n=1)
    rec = json.loads(_lines(log)[0])
    rec["event"] = "\x1b]0;owned\x07rotate"
    rec["fields"]["hint"] = "\x1b[2J"
    log.path.write_text(json.dumps(rec) + "\n")
    code, out, err = _run("audit", "show", str(log.path))
    assert code == 0 and "\x1b" not in out and "\\u001b" in out
