"""Eight rotators started at once against the same targets: exactly one rotation happens, the
others stop cleanly (exit 3, "rotation in progress by host/pid") or find nothing left to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault.rotate.journal import Journal, Owner, iso, utcnow
from tests.rotate_support import World, make_world


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> World:
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    w.add_dotenv("web")
    w.add_file("prod")
    w.checks[1] = "sleep 2"  # keep the winner busy while the others arrive
    return w


def test_eight_rotators_one_rotation(world: World) -> None:
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    policy = str(world.write_policy())
    env = world.environ()
    procs = [
        subprocess.Popen([sys.executable, "-m", "keyvault", "rotate", "--policy", policy, "--non-interactive",
                          "--format", "json"], env=env, cwd=world.tmp, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        outcomes.append((p.returncode, json.loads(out), err.decode()))
    done = [o for o in outcomes if o[1]["phase"] == "done"]
    assert len(done) == 1, [(c, o["phase"], o.get("error")) for c, o, _ in outcomes]
    assert done[0][0] == 0
    for code, out, err in outcomes:
        if out["phase"] == "done":
            continue
        if code == 3:
            assert "rotation in progress by " in out["error"] and "/" in out["error"]
        else:  # arrived after the winner finished: the pending slot is empty, the key is new
            assert (code, out["phase"]) == (0, "not-due"), (code, out, err)
    assert sum(1 for c, _, _ in outcomes if c == 3) >= 1
    assert world.held() == [new.secret.fingerprint] * 2
    posts = [r for r in world.fake.requests if r.method == "POST" and world.old.id in r.path]
    assert len(posts) == 2  # one inactive, one archived: never twice
    assert world.journal()["phase"] == "done"


def test_a_dead_rotator_on_this_host_is_taken_over(world: World) -> None:
    """kill -9 leaves phase=running with an owner; its pid is gone, so the next run resumes."""
    new = world.fake.mint_key("new")
    world.stage(new.secret)
    world.checks.pop(1)
    proc = world.rotate(env=world.environ(KEYVAULT_CRASH_AT="update"))
    assert proc.returncode == 137
    journal = world.journal()
    dead = Owner.parse(journal["owner"])
    assert journal["phase"] == "running" and dead is not None and dead.alive_here() is False
    proc = world.rotate()
    assert proc.returncode == 0, proc.stderr.decode()
    assert world.held() == [new.secret.fingerprint] * 2


def test_a_live_rotator_elsewhere_holds_the_lock_until_its_lease_expires(world: World) -> None:
    from keyvault.backends import open_backend

    new = world.fake.mint_key("new")
    world.stage(new.secret)
    world.checks.pop(1)
    backend = open_backend(world.targets[0])
    journal = Journal(backend)
    state = {"v": "1", "rotation": "r-other", "env": "prod", "phase": "running", "step": "update",
             "owner": "another-host/4242", "owner_started": iso(utcnow()), "lease_until": iso(utcnow().replace(year=2999)),
             "old_fp": world.old.secret.fingerprint, "old_hint": world.old.secret.hint,
             "new_fp": new.secret.fingerprint, "new_hint": new.secret.hint, "started": iso(utcnow())}
    backend.write_state(state, None)
    proc = world.rotate()
    assert proc.returncode == 3
    assert "rotation in progress by another-host/4242" in proc.stderr.decode()
    assert world.held() == [world.old.secret.fingerprint] * 2  # nothing changed
    # The other host died: once its lease has expired, this run takes over and finishes.
    current, token = backend.read_state()
    backend.write_state({**current, "lease_until": "2000-01-01T00:00:00Z"}, token)
    proc = world.rotate()
    assert proc.returncode == 0, proc.stderr.decode()
    assert world.held() == [new.secret.fingerprint] * 2
    assert Owner.parse("h/12") == Owner("h", 12) and journal.me.host
