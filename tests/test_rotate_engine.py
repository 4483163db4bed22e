"""The rotation engine through its library API, over real dotenv and encrypted-file targets and
the fake Anthropic API: every step, every stop, every refusal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from keyvault.backends import open_backend
from keyvault.errors import KeyvaultError, RolledBack
from keyvault.rotate.engine import Options, rotate
from keyvault.testing.keygen import make_key
from tests.rotate_support import World, make_world


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> World:
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    w.add_dotenv("web")
    w.add_dotenv("worker")
    w.add_file("prod")
    return w


def run(world: World, **kw) -> tuple:
    events = []
    said = []
    result = rotate(world.policy(), Options(report=events.append, say=said.append, **kw))
    return result, events, said


def test_full_rotation_every_step_journaled(world: World) -> None:
    new = world.fake.mint_key("prod-chat-new")
    world.stage(new.secret)
    result, events, _ = run(world)
    assert result.phase == "done" and result.exit_code == 0
    assert world.held() == [new.secret.fingerprint] * 3
    assert world.status_of(world.old) == "archived" and world.status_of(new) == "active"
    assert world.pending() is None
    steps = [e.step for e in events]
    for step in ("plan", "create", "verify-new", "update", "verify-deploy", "revoke", "archive", "done"):
        assert step in steps
    updates = [e for e in events if e.step == "update"]
    assert [e.target for e in updates] == world.targets  # policy order
    assert all(e.hint == new.secret.hint and e.seconds is not None for e in updates)
    journal = world.journal()
    assert journal["phase"] == "done" and journal["step"] == "done"
    assert journal["old_fp"] == world.old.secret.fingerprint and journal["new_fp"] == new.secret.fingerprint
    assert journal["old_id"] == world.old.id and journal["new_id"] == new.id
    for stamp in ("started", "stashed_at", "deployed_at", "revoked_at", "archived_at", "finished_at"):
        assert journal[stamp].endswith("Z")
    values = " ".join(journal.values())
    assert world.old.secret.reveal() not in values and new.secret.reveal() not in values


def test_new_key_from_fd_and_command(world: World, tmp_path: Path) -> None:
    import os

    new = world.fake.mint_key("via-fd")
    r, w = os.pipe()
    os.write(w, (new.secret.reveal() + "\n").encode())
    os.close(w)
    from keyvault.rotate.newkey import KeyInput

    result, _, _ = run(world, key_input=KeyInput(fd=r))
    os.close(r)
    assert result.phase == "done" and world.held() == [new.secret.fingerprint] * 3
    again = world.fake.mint_key("via-command")
    keyfile = tmp_path / "k"
    keyfile.write_text(again.secret.reveal())
    result, _, _ = run(world, key_input=KeyInput(command=f"cat {keyfile}"))
    assert result.phase == "done" and world.held() == [again.secret.fingerprint] * 3
    assert world.status_of(new) == "archived"


def test_scheduled_run_without_a_key_changes_nothing(world: World) -> None:
    # The Admin API says the key was created just now: not due.
    result, _, _ = run(world)
    assert (result.phase, result.exit_code) == ("not-due", 0)
    assert "not due" in result.summary
    assert world.journal() is None  # nothing written
    # An expiring key is due now: exit 1 and the Console steps with the suggested name.
    world.fake.key(world.old.id).expires_at = __import__("datetime").datetime.now(
        __import__("datetime").timezone.utc) + __import__("datetime").timedelta(days=3)
    result, _, said = run(world)
    assert (result.phase, result.exit_code) == ("due", 1)
    assert "expires_at" in result.summary
    assert any("prod-chat-" in s and "platform.claude.com/settings/keys" in s for s in said)
    assert world.held() == [world.old.secret.fingerprint] * 3


def test_grace_parks_and_the_next_run_revokes(world: World) -> None:
    world.settings["grace"] = "2s"
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    result, _, _ = run(world)
    assert result.phase == "parked" and result.exit_code == 0
    assert result.summary.startswith("awaiting revoke at ")
    assert world.held() == [new.secret.fingerprint] * 3
    assert world.status_of(world.old) == "active"  # the old key still serves stragglers
    assert world.journal()["note"] == "awaiting-revoke" and "owner" not in world.journal()
    result, _, _ = run(world)  # too early: parks again
    assert result.phase == "parked" and world.status_of(world.old) == "active"
    from keyvault.rotate.journal import parse_iso, utcnow

    time.sleep(max(0.0, (parse_iso(world.journal()["revoke_after"]) - utcnow()).total_seconds()) + 0.05)
    result, events, _ = run(world)
    assert result.phase == "done"
    assert any("resuming rotation" in e.message for e in events)
    assert any(e.message == "old key now refused (401)" for e in events)  # re-read via read_previous
    assert world.status_of(world.old) == "archived"


def test_archive_waits_for_its_delay(world: World) -> None:
    world.settings["archive_delay"] = "1h"
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    result, _, _ = run(world)
    assert result.phase == "parked" and "awaiting archive" in result.summary
    assert world.status_of(world.old) == "inactive"


def test_without_admin_key_revoke_is_a_console_step(tmp_path: Path, fake_anthropic, monkeypatch) -> None:
    world = make_world(tmp_path, fake_anthropic, monkeypatch, admin=False)
    world.add_dotenv("web")
    world.add_file("prod")
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    result, _, said = run(world)
    assert result.phase == "parked" and result.exit_code == 0
    assert "awaiting manual revoke" in result.summary
    steps = "\n".join(said)
    assert world.old.secret.hint in steps and "platform.claude.com/settings/keys" in steps and "Disable" in steps
    assert world.held() == [new.secret.fingerprint] * 2
    assert world.status_of(world.old) == "active"
    result, _, _ = run(world)  # nobody disabled it yet
    assert result.phase == "parked"
    world.fake.set_status(world.old.id, "inactive")  # the person does the Console step
    result, events, _ = run(world)  # a new run: the old key is re-read from the targets' previous slot
    assert result.phase == "done"
    assert any("refused (401)" in e.message for e in events)


def test_failed_check_rolls_every_target_back_and_keeps_the_new_key(world: World) -> None:
    world.checks[1] = 'test "$ANTHROPIC_API_KEY" = never && exit 0; echo "health check failed" >&2; exit 3'
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    with pytest.raises(RolledBack) as info:
        run(world)
    message = str(info.value)
    assert "check exited 3: health check failed" in message and info.value.exit_code == 4
    assert world.held() == [world.old.secret.fingerprint] * 3
    assert world.status_of(world.old) == "active"
    assert world.pending() == new.secret  # not lost
    assert world.journal()["phase"] == "rolled-back"
    # Fix the app, run again: it rotates to the kept key.
    world.checks[1] = 'test -n "$ANTHROPIC_API_KEY" && test "$KEYVAULT_SOURCE" = "' + world.targets[1] + '"'
    result, events, _ = run(world)
    assert result.phase == "done" and world.held() == [new.secret.fingerprint] * 3
    assert any(e.message == "check passed" for e in events)


def test_check_gets_the_key_in_its_environment_never_argv(world: World, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    world.checks[0] = f'printf %s "$ANTHROPIC_API_KEY" | sha256sum > {out}; cat /proc/$$/cmdline >> {out}'
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    run(world)
    seen = out.read_text()
    assert seen.startswith(new.secret.fingerprint)
    assert new.secret.reveal() not in seen


def test_refused_new_key_aborts_and_is_dropped(world: World) -> None:
    dead = world.fake.mint_key("dead")
    world.fake.set_status(dead.id, "inactive")
    world.stage(dead.secret)
    with pytest.raises(KeyvaultError, match="the API refuses the new key .*removed from the pending slot"):
        run(world)
    assert world.pending() is None
    assert world.held() == [world.old.secret.fingerprint] * 3
    assert world.journal()["phase"] == "aborted"


def test_new_key_in_the_wrong_workspace_is_refused(world: World) -> None:
    stranger = world.fake.mint_key("elsewhere", workspace_id="wrkspc_other")
    world.stage(stranger.secret)
    with pytest.raises(KeyvaultError, match="is in wrkspc_other, expected workspace"):
        run(world)
    assert world.held() == [world.old.secret.fingerprint] * 3
    assert world.pending() == stranger.secret  # kept: the person decides what to do with it


def test_foreign_key_and_same_key_are_refused(world: World) -> None:
    world.stage(world.old.secret) if False else None
    foreign = make_key()  # well-formed, never minted: another organization's key
    world.stage(foreign)
    with pytest.raises(KeyvaultError, match="refuses the new key"):
        run(world)
    from keyvault.rotate.newkey import KeyInput
    import os

    r, w = os.pipe()
    os.write(w, world.old.secret.reveal().encode())
    os.close(w)
    with pytest.raises(KeyvaultError, match="is the key the targets already hold"):
        run(world, key_input=KeyInput(fd=r))
    os.close(r)


def test_targets_that_disagree_stop_the_plan(world: World) -> None:
    other = world.fake.mint_key("other")
    backend = open_backend(world.targets[1])
    backend.stage(other.secret)
    backend.promote(world.old.secret.fingerprint)
    world.stage(world.fake.mint_key("new").secret)
    with pytest.raises(KeyvaultError) as info:
        run(world)
    assert "do not hold the same key" in str(info.value)
    assert world.targets[1] in str(info.value) and other.secret.hint in str(info.value)


def test_dry_run_changes_nothing(world: World) -> None:
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    before = [p.read_bytes() for p in world.tmp.rglob("*") if p.is_file()]
    result, _, _ = run(world, dry_run=True)
    assert result.phase == "dry-run" and new.secret.hint in result.summary
    after = [p.read_bytes() for p in world.tmp.rglob("*") if p.is_file() and p.name != "rotation.toml"]
    assert sorted(after) == sorted(b for b in before)
    assert world.journal() is None


def test_transient_api_faults_are_retried(world: World) -> None:
    """429 (with retry-after), 529, 500, a POST refused with 429, a dropped connection: each
    hits a different request of one rotation, each is retried, the rotation completes."""
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    faults = [
        world.fake.inject("/v1/models", 429, retry_after=0),
        world.fake.inject("/v1/models", 529),
        world.fake.inject("/v1/organizations/api_keys", 500),
        world.fake.inject("/v1/organizations/api_keys", 429, retry_after=0, method="POST"),
        world.fake.inject("/v1/organizations/api_keys", None, drop=True),
    ]
    result, _, _ = run(world)
    assert result.phase == "done"
    assert [f.hits for f in faults] == [1] * 5
    assert world.held() == [new.secret.fingerprint] * 3 and world.status_of(world.old) == "archived"


@pytest.mark.parametrize(
    ("path", "method", "stops_at", "targets_on_new"),
    [
        ("/v1/models", None, "verify-new", False),
        ("/v1/organizations/api_keys", "POST", "revoke", True),
    ],
)
def test_persistent_api_faults_stop_cleanly_then_converge(world: World, path, method, stops_at, targets_on_new) -> None:
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    world.fake.inject(path, 529, count=None, method=method)
    with pytest.raises(KeyvaultError) as info:
        run(world)
    assert info.value.exit_code == 2
    journal = world.journal()
    assert journal["step"] == stops_at and journal["phase"] == "parked" and "owner" not in journal
    expected = new.secret.fingerprint if targets_on_new else world.old.secret.fingerprint
    assert world.held() == [expected] * 3  # never half-applied
    assert world.status_of(world.old) == "active"
    world.fake.clear_faults()
    result, _, _ = run(world)
    assert result.phase == "done" and world.held() == [new.secret.fingerprint] * 3
    assert world.status_of(world.old) == "archived"


def test_audit_log_records_every_step_without_values(world: World, tmp_path: Path, monkeypatch) -> None:
    from keyvault.audit import AuditLog

    log = tmp_path / "audit" / "audit.jsonl"
    monkeypatch.setenv("KEYVAULT_AUDIT_LOG", str(log))
    monkeypatch.setenv("KEYVAULT_AUDIT_KEY", "k" * 32)
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    run(world)
    records = list(AuditLog(log).records())
    events = [r["event"] for r in records if not r["event"].startswith("rotate.journal.")]  # the engine's own
    assert events[0] == "rotate.plan" and events[-1] == "rotate.done" and "rotate.revoke" in events
    assert AuditLog(log).verify().ok
    raw = log.read_text()
    assert new.secret.reveal() not in raw and world.old.secret.reveal() not in raw
    assert new.secret.hint in raw


def test_a_failing_target_write_rolls_back_then_the_rerun_converges(world: World) -> None:
    """The second target refuses writes (its .env became git-tracked): the first is put back on
    the old key, the new key stays staged; once fixed, the next run rotates every target."""
    import subprocess

    directory = Path(open_backend(world.targets[1]).path).parent
    subprocess.run(["git", "init", "-q"], cwd=directory, check=True)
    subprocess.run(["git", "add", ".env"], cwd=directory, check=True)
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    with pytest.raises(RolledBack) as info:
        run(world)
    assert "git tracks this file" in str(info.value)
    assert world.held() == [world.old.secret.fingerprint] * 3 and world.pending() == new.secret
    assert world.status_of(world.old) == "active"
    subprocess.run(["git", "rm", "-q", "--cached", ".env"], cwd=directory, check=True)
    result, _, _ = run(world)
    assert result.phase == "done" and world.held() == [new.secret.fingerprint] * 3
