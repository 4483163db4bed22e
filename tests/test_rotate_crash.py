"""Crash injection: kill the rotation (os._exit(137), what kill -9 leaves) at every crash point
a rotation passes through, then run again, and prove it converges.

The points are not a hand-kept list: a first run records every point it reaches
(KEYVAULT_CRASH_TRACE), then the matrix crashes at each one in turn. Runs are chained: the run
after a crash at point k is the one that crashes at point k+1, so each crash is followed by a
resume from the journal; when a resumed run finishes before reaching the next point, a new
rotation starts and is crashed there. After every crash:
- no key is lost: the new key is still held by a target (current or pending slot);
- the app never resolves an inactive key: each target resolves (get_api_key) to an active key;
and at the end every target serves the same active key and the old ones are archived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyvault.keys import Secret
from keyvault.rotate.crash import CRASH_EXIT
from tests.rotate_support import World, make_world, text


def trace_points(world: World, *extra: str) -> list[str]:
    trace = world.tmp / "trace.txt"
    proc = world.rotate(*extra, env=world.environ(KEYVAULT_CRASH_TRACE=str(trace)))
    assert proc.returncode in (0, 4), text(proc)
    seen: list[str] = []
    for name in trace.read_text().split():
        if name not in seen:
            seen.append(name)
    return seen


class Keys:
    """Every key minted in the world, by fingerprint, to ask the fake for its status."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.by_fp: dict[str, Any] = {world.old.secret.fingerprint: world.old}
        self.current: Any = None

    def mint(self) -> Secret:
        key = self.world.fake.mint_key(f"prod-chat-{len(self.by_fp)}")
        self.by_fp[key.secret.fingerprint] = key
        self.current = key
        (self.world.tmp / "newkey").write_text(key.secret.reveal() + "\n")
        return key.secret

    def status(self, fp: str) -> str:
        return self.world.fake.key(self.by_fp[fp].id).status


def assert_safe(world: World, keys: Keys, where: str) -> None:
    from keyvault.backends import open_backend
    from keyvault.resolve import clear_cache, get_api_key

    clear_cache()
    held = set()
    for uri in world.targets:
        backend = open_backend(uri)
        served = get_api_key(uri, ttl=0)  # what an app resolves right now
        assert keys.status(served.fingerprint) == "active", f"after a crash at {where}: {uri} resolves an inactive key"
        held.add(served.fingerprint)
        pending = backend.read_pending()
        if pending is not None:
            held.add(pending.secret.fingerprint)
    journal = world.journal() or {}
    if journal.get("new_fp") == keys.current.secret.fingerprint:
        # Once the journal knows the new key, some target must hold it: the Console will not
        # show it again. (Before that it is still in the operator's own source.)
        assert keys.current.secret.fingerprint in held, f"after a crash at {where}: the new key is held by no target (lost)"


def assert_converged(world: World, keys: Keys) -> None:
    held = set(world.held())
    assert held == {keys.current.secret.fingerprint}, "targets disagree or missed the new key"
    assert keys.status(keys.current.secret.fingerprint) == "active"
    for fp in keys.by_fp:
        if fp != keys.current.secret.fingerprint:
            assert keys.status(fp) == "archived"
    assert world.pending() is None
    assert world.journal()["phase"] == "done"


def crash_chain(world: World, keys: Keys, points: list[str], rotate_args: tuple[str, ...], finished: int,
                on_finish: Any) -> dict[str, str]:
    """Crash at each point in turn; returns point -> outcome, for the report."""
    results: dict[str, str] = {}
    i = 0
    retried = None
    while i < len(points):
        point = points[i]
        proc = world.rotate(*rotate_args, env=world.environ(KEYVAULT_CRASH_AT=point))
        if proc.returncode == CRASH_EXIT:
            assert_safe(world, keys, point)
            results[point] = "crashed, safe"
            i += 1
            retried = None
            continue
        assert proc.returncode == finished, f"run meant to crash at {point} failed:\n{text(proc)}"
        assert retried != point, f"a fresh rotation never reached crash point {point}"
        on_finish()  # the resumed run finished before reaching this point: start a new rotation
        retried = point
    proc = world.rotate(*rotate_args)
    assert proc.returncode == finished, text(proc)
    return results


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> World:
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    w.add_dotenv("web")
    w.add_file("prod")
    w.checks[1] = "true"
    return w


def test_every_crash_point_converges(world: World) -> None:
    keys = Keys(world)
    args = ("--new-key-command", f"cat {world.tmp / 'newkey'}")
    keys.mint()
    points = trace_points(world, *args)
    for step in ("plan", "create", "verify-new", "update", "verify-deploy", "grace", "revoke", "archive", "done"):
        assert step in points
    for must in ("create:stash", "update:stage:2", "update:promote:2", "revoke:deactivate", "archive:set",
                 "verify-deploy:check:2"):
        assert must in points
    assert_converged(world, keys)

    def finished() -> None:
        assert_converged(world, keys)
        keys.mint()

    keys.mint()
    results = crash_chain(world, keys, points, args, 0, finished)
    assert_converged(world, keys)
    assert set(results) == set(points)
    (world.tmp / "matrix.txt").write_text("\n".join(f"{p}: {r}" for p, r in results.items()))


def test_every_crash_point_of_a_rollback_converges(world: World) -> None:
    """A deploy check that fails: crash everywhere on the way back; the end state is every
    target on the old (active) key and the new key kept in the pending slot."""
    world.checks[1] = "exit 7"
    keys = Keys(world)
    keys.mint()
    world.stage(keys.current.secret)
    points = trace_points(world)
    assert any(p.startswith("rollback:") for p in points)
    # the points before verify-deploy are the first matrix's; crash from there on
    points = points[points.index("verify-deploy"):]

    def back() -> None:
        assert_rolled_back(world, keys)

    results = crash_chain(world, keys, points, (), 4, back)
    assert_rolled_back(world, keys)
    assert set(results) == set(points)


def assert_rolled_back(world: World, keys: Keys) -> None:
    assert set(world.held()) == {world.old.secret.fingerprint}
    assert keys.status(world.old.secret.fingerprint) == "active"
    assert world.pending() == keys.current.secret
    assert world.journal()["phase"] == "rolled-back"
