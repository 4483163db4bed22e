"""A tampered rotation journal: whoever can write the secret's metadata (tags, custom metadata,
labels, the state file beside a .env) can edit the journal. The rotator must not let an edited
journal make it deactivate a key other than the one it replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyvault.backends import open_backend
from tests.rotate_support import World, make_world, text


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    w.add_dotenv("app")
    w.settings["grace"] = "1h"
    return w


def _parked_rotation(world: World) -> None:
    new = world.fake.mint_key("prod-chat-new")
    world.stage(new.secret)
    proc = world.rotate()
    assert proc.returncode == 0, text(proc)
    assert world.journal()["note"] == "awaiting-revoke"
    world.new = new  # type: ignore[attr-defined]


def _tamper(world: World, **changes: str) -> None:
    from keyvault.rotate.journal import iso, utcnow

    backend = open_backend(world.targets[0])
    state, token = backend.read_state()
    assert state is not None
    state = {**state, "revoke_after": iso(utcnow()), **changes}  # and skip the grace period
    backend.write_state(state, token)


def test_an_edited_grace_deadline_only_revokes_the_replaced_key(world: World) -> None:
    _parked_rotation(world)
    _tamper(world)
    proc = world.rotate()
    assert proc.returncode == 0, text(proc)
    assert world.status_of(world.old) in ("inactive", "archived")
    assert world.status_of(world.new) == "active"  # type: ignore[attr-defined]


def test_an_edited_old_id_cannot_deactivate_another_key(world: World) -> None:
    # the new key is the worst victim (an outage); another app's key fails the same way
    _parked_rotation(world)
    _tamper(world, old_id=world.new.id)  # type: ignore[attr-defined]
    proc = world.rotate()
    assert world.status_of(world.new) == "active", "the new key was deactivated through an edited journal"  # type: ignore[attr-defined]
    assert proc.returncode == 2 and "the key the targets serve now" in text(proc) and "was edited" in text(proc)
    assert world.status_of(world.old) == "active"  # refused outright: nothing deactivated


@pytest.mark.parametrize("also_hint", [False, True], ids=["old_id", "old_id+old_hint"])
def test_an_edited_journal_cannot_deactivate_another_apps_key(world: World, also_hint: bool) -> None:
    other = world.fake.mint_key("prod-billing")
    _parked_rotation(world)
    # with old_hint edited too, the old key's value (previous version) still says which key it was
    _tamper(world, old_id=other.id, **({"old_hint": other.hint} if also_hint else {}))
    proc = world.rotate()
    assert proc.returncode == 2, text(proc)
    assert f"is {other.hint}, not the replaced key {world.old.hint}" in text(proc)
    assert world.status_of(other) == "active" and world.status_of(world.old) == "active"
    # a person puts the journal right: the rotation finishes on the right key
    _tamper(world, old_id=world.old.id, old_hint=world.old.hint)
    proc = world.rotate()
    assert proc.returncode == 0, text(proc)
    assert world.status_of(world.old) in ("inactive", "archived") and world.status_of(other) == "active"


def test_the_served_key_is_refused_even_when_the_old_value_is_gone(world: World) -> None:
    """Without the old value the journal's old_hint is all there is; an edit naming the new
    key in both fields still meets the targets, which serve that key."""
    _parked_rotation(world)
    # the dotenv backend keeps the previous value in its state file: forget the old fingerprint
    _tamper(world, old_id=world.new.id, old_hint=world.new.hint, old_fp="0" * 64)  # type: ignore[attr-defined]
    proc = world.rotate()
    assert proc.returncode == 2, text(proc)
    assert "the key the targets serve now" in text(proc)
    assert world.status_of(world.new) == "active"  # type: ignore[attr-defined]


def test_an_edited_old_id_cannot_archive_another_key(world: World) -> None:
    world.settings["archive_delay"] = "1h"
    _parked_rotation(world)
    _tamper(world)
    proc = world.rotate()
    assert proc.returncode == 0 and world.journal()["note"] == "awaiting-archive", text(proc)
    retired = world.fake.mint_key("prod-chat-retired")  # inactive, like the old key, another hint
    world.fake.set_status(retired.id, "inactive")
    for victim in (world.new, retired):  # type: ignore[attr-defined]
        _tamper(world, old_id=victim.id, archive_after=_now())
        proc = world.rotate()
        assert proc.returncode == 2, text(proc)
        assert "refusing to archive" in text(proc)
    assert world.status_of(world.new) == "active" and world.status_of(retired) == "inactive"  # type: ignore[attr-defined]
    assert world.status_of(world.old) == "inactive"


def _now() -> str:
    from keyvault.rotate.journal import iso, utcnow

    return iso(utcnow())
