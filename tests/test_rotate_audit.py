"""The rotation's journal transitions in the audit log, through the CLI: every step the
journal passes is recorded with fingerprints, hints and ids, the chain verifies with
`keyvault audit verify`, and no key value is written."""

from __future__ import annotations

import json
from pathlib import Path

from keyvault.audit import AuditLog
from keyvault.rotate.journal import STEPS
from tests.rotate_support import make_world, text


def test_cli_rotation_writes_a_verifiable_audit_trail_without_values(tmp_path: Path, fake_anthropic, monkeypatch) -> None:
    world = make_world(tmp_path, fake_anthropic, monkeypatch)
    world.add_dotenv("web")
    world.add_file("prod")
    new = fake_anthropic.mint_key("prod-chat-new")
    world.stage(new.secret)
    log = tmp_path / "state" / "audit.jsonl"
    env = world.environ(KEYVAULT_AUDIT_LOG=str(log))  # the MAC key file is made beside the log

    proc = world.rotate(env=env)
    assert proc.returncode == 0, text(proc)
    check = world.cli("audit", "verify", "--format", "json", env=env)
    assert check.returncode == 0, text(check)
    assert json.loads(check.stdout)["ok"] is True

    records = list(AuditLog(log).records())
    journal = [r for r in records if r["event"].startswith("rotate.journal.")]
    steps = [r["fields"]["step"] for r in journal]
    assert steps[0] == "plan" and steps[-1] == "done"
    for step in ("create", "verify-new", "update", "verify-deploy", "revoke", "archive", "done"):
        assert step in steps, f"no audit record for step {step}: {steps}"
    assert steps == sorted(steps, key=STEPS.index), steps
    last = journal[-1]["fields"]
    assert last["phase"] == "done" and last["env"] == "prod"
    assert last["old_fp"] == world.old.secret.fingerprint and last["new_fp"] == new.secret.fingerprint
    assert last["old_hint"] == world.old.hint and last["new_hint"] == new.hint
    assert last["old_id"] == world.old.id and last["new_id"] == new.id
    # the engine's own step records are there too, in the same chain
    assert any(r["event"] == "rotate.revoke" for r in records)
    raw = log.read_bytes()
    for secret in (world.old.secret, new.secret, fake_anthropic.admin_key):
        assert secret.reveal().encode() not in raw
    assert b"sk-ant-api03-" not in raw.replace(world.old.hint.encode(), b"").replace(new.hint.encode(), b"")


def test_an_unwritable_audit_log_does_not_stop_the_rotation(tmp_path: Path, fake_anthropic, monkeypatch) -> None:
    world = make_world(tmp_path, fake_anthropic, monkeypatch)
    world.add_dotenv("web")
    new = fake_anthropic.mint_key("prod-chat-new")
    world.stage(new.secret)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = world.rotate(env=world.environ(KEYVAULT_AUDIT_LOG=str(blocker / "audit.jsonl")))
    assert proc.returncode == 0, text(proc)
    assert world.held() == [new.secret.fingerprint]
    assert "audit log not written" in text(proc)
