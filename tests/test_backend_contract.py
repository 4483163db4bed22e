"""The contract every backend keeps: the same tests, run over all six storages.

Each backend's test fixture `contract_<name>` (`-` -> `_`) returns a factory
`make(initial: Secret) -> Backend` that creates a fresh, isolated secret holding `initial` and
returns an open backend on it. Local fixtures: tests/fixtures/local.py; cloud fixtures:
tests/fixtures/cloud.py. A backend whose fixture does not exist is skipped, saying so.

What is checked: read gives value + version + created; stage is idempotent and not served;
a different staged key is not overwritten; promote and rollback compare-and-swap on the
current fingerprint and change nothing on a mismatch; previous is kept; versions() lists no
values; rotation state compare-and-swap (two writers with one token: one wins); read-only
backends refuse every write with a reason; no error message contains a key value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from keyvault.backends import Backend, Source, Version
from keyvault.errors import BackendError, ConflictError, KeyvaultError, UnsupportedOperation
from keyvault.keys import Secret
from keyvault.testing.keygen import make_key

BACKENDS = ["env", "dotenv", "file", "aws-sm", "vault", "gcp-sm"]
Make = Callable[[Secret], Backend]


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest) -> Make:
    name = "contract_" + request.param.replace("-", "_")
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"no {name} fixture: the {request.param} backend's contract fixture is not defined here")


@pytest.fixture
def keys() -> tuple[Secret, Secret, Secret]:
    return make_key(), make_key(), make_key()


def writable(backend: Backend) -> Backend:
    if not backend.writable:
        pytest.skip(f"{backend.source.scheme} is read-only (its refusals are checked by test_read_only_refuses_writes)")
    return backend


def assert_clean(exc: BaseException, *secrets: Secret) -> None:
    """An error names things by hint or fingerprint, never by value."""
    text = f"{exc} {exc!r} {exc.args!r}"
    for s in secrets:
        assert s.reveal() not in text, f"{type(exc).__name__} message contains a key value"
        body = s.reveal()[len("sk-ant-api03-"):]
        assert body[5:-5] not in text


def fingerprints(backend: Backend) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for info in backend.versions():
        for stage in info.stages:
            out[stage] = info.fingerprint
    return out


def test_read_returns_value_version_created(make: Make, keys: tuple[Secret, ...]) -> None:
    initial = keys[0]
    backend = make(initial)
    assert isinstance(backend, Backend)
    assert isinstance(backend.source, Source)
    v = backend.read()
    assert isinstance(v, Version)
    assert v.secret == initial
    assert v.stage == "current"
    assert isinstance(v.version, str) and v.version
    if v.created is not None:
        assert v.created.tzinfo is not None, "created must be timezone-aware UTC"
        assert v.created <= datetime.now(timezone.utc) + timedelta(minutes=5)
    assert initial.reveal() not in repr(v)
    assert backend.read().version == v.version, "reading twice gives the same version"


def test_versions_list_no_values(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, _ = keys
    backend = make(initial)
    if backend.writable:
        backend.stage(new)
    infos = backend.versions()
    stages = [s for info in infos for s in info.stages]
    assert "current" in stages
    for info in infos:
        blob = repr(info) + " ".join(str(getattr(info, f)) for f in info.__dataclass_fields__)
        assert initial.reveal() not in blob and new.reveal() not in blob
        assert not any(isinstance(getattr(info, f), Secret) for f in info.__dataclass_fields__)
    current = [i for i in infos if "current" in i.stages][0]
    assert current.version == backend.read().version
    if current.fingerprint is not None:
        assert current.fingerprint == initial.fingerprint


def test_read_only_refuses_writes(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, _ = keys
    backend = make(initial)
    if backend.writable:
        pytest.skip("writable backend")
    calls = {
        "stage": lambda: backend.stage(new),
        "clear_pending": backend.clear_pending,
        "promote": lambda: backend.promote(initial.fingerprint),
        "rollback": lambda: backend.rollback(initial.fingerprint),
        "write_state": lambda: backend.write_state({"step": "plan"}, None),
    }
    for step, call in calls.items():
        with pytest.raises(UnsupportedOperation) as info:
            call()
        message = str(info.value)
        assert str(backend.source) in message, f"{step}: the error names the source"
        assert "cannot" in message and len(message) > len(str(backend.source)) + 20, f"{step}: says why"
        assert_clean(info.value, initial, new)
    assert backend.read_pending() is None
    assert backend.read().secret == initial


def test_stage_is_not_served_and_is_idempotent(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, _ = keys
    backend = writable(make(initial))
    assert backend.read_pending() is None
    staged = backend.stage(new)
    assert staged.secret == new and staged.stage == "pending"
    assert staged.version != backend.read().version
    assert backend.read().secret == initial, "a staged key is not served"
    pending = backend.read_pending()
    assert pending is not None and pending.secret == new and pending.version == staged.version
    again = backend.stage(new)
    assert again.version == staged.version, "staging the same key twice is one version"
    assert [s for i in backend.versions() for s in i.stages].count("pending") == 1


def test_stage_refuses_to_replace_a_different_pending_key(make: Make, keys: tuple[Secret, ...]) -> None:
    """The pending slot may hold the only copy of a key the Console showed once: staging another
    key over it is refused until it is promoted or cleared on purpose."""
    initial, new, other = keys
    backend = writable(make(initial))
    backend.stage(new)
    with pytest.raises(ConflictError) as info:
        backend.stage(other)
    assert_clean(info.value, initial, new, other)
    pending = backend.read_pending()
    assert pending is not None and pending.secret == new, "the staged key is kept"
    backend.clear_pending()
    assert backend.read_pending() is None
    backend.clear_pending()  # idempotent
    assert backend.stage(other).secret == other
    assert backend.read().secret == initial


def test_promote_moves_pending_to_current_and_keeps_previous(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, third = keys
    backend = writable(make(initial))
    old_version = backend.read().version
    backend.stage(new)
    promoted = backend.promote(initial.fingerprint)
    assert promoted.secret == new and promoted.stage == "current"
    current = backend.read()
    assert current.secret == new and current.version == promoted.version
    assert current.version != old_version
    assert backend.read_pending() is None
    fps = fingerprints(backend)
    assert "previous" in fps
    if fps["previous"] is not None:
        assert fps["previous"] == initial.fingerprint
    assert old_version in {i.version for i in backend.versions() if "previous" in i.stages}
    reader = getattr(backend, "read_previous", None)  # optional: lets a later run re-check the old key
    if reader is not None:
        previous = reader()
        assert previous is not None and previous.secret == initial and previous.stage == "previous"
    # a second rotation: the previous becomes the key it replaced
    backend.stage(third)
    backend.promote(new.fingerprint)
    assert backend.read().secret == third
    if fingerprints(backend).get("previous") is not None:
        assert fingerprints(backend)["previous"] == new.fingerprint


def test_promote_compare_and_swap(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, other = keys
    backend = writable(make(initial))
    backend.stage(new)
    with pytest.raises(ConflictError) as info:
        backend.promote(other.fingerprint)
    assert_clean(info.value, initial, new, other)
    assert str(backend.source) in str(info.value)
    assert backend.read().secret == initial, "nothing changed"
    pending = backend.read_pending()
    assert pending is not None and pending.secret == new, "the staged key is still staged"
    assert backend.promote(initial.fingerprint).secret == new


def test_promote_without_a_staged_key_fails_and_changes_nothing(make: Make, keys: tuple[Secret, ...]) -> None:
    initial = keys[0]
    backend = writable(make(initial))
    with pytest.raises(BackendError) as info:
        backend.promote(initial.fingerprint)
    assert_clean(info.value, initial)
    assert backend.read().secret == initial


def test_rollback(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, other = keys
    backend = writable(make(initial))
    backend.stage(new)
    backend.promote(initial.fingerprint)
    with pytest.raises(ConflictError) as info:
        backend.rollback(other.fingerprint)
    assert_clean(info.value, initial, new, other)
    assert backend.read().secret == new, "a failed rollback changes nothing"
    rolled = backend.rollback(new.fingerprint)
    assert rolled.secret == initial and rolled.stage == "current"
    assert backend.read().secret == initial


def test_rollback_without_previous_fails(make: Make, keys: tuple[Secret, ...]) -> None:
    initial = keys[0]
    backend = writable(make(initial))
    with pytest.raises(BackendError) as info:
        backend.rollback(initial.fingerprint)
    assert_clean(info.value, initial)
    assert backend.read().secret == initial


def test_state_compare_and_swap(make: Make, keys: tuple[Secret, ...]) -> None:
    initial, new, _ = keys
    backend = writable(make(initial))
    assert backend.read_state() == (None, None)
    t1 = backend.write_state({"step": "staged", "new": new.fingerprint, "hint": new.hint}, None)
    assert isinstance(t1, str) and t1
    state, token = backend.read_state()
    assert state == {"step": "staged", "new": new.fingerprint, "hint": new.hint} and token == t1
    with pytest.raises(ConflictError):
        backend.write_state({"step": "other"}, None)  # "create" when it exists
    t2 = backend.write_state({"step": "promoted"}, t1)
    assert t2 != t1
    with pytest.raises(ConflictError) as info:
        backend.write_state({"step": "stale"}, t1)
    assert_clean(info.value, initial, new)
    assert backend.read_state() == ({"step": "promoted"}, t2)
    assert backend.read().secret == initial, "state is kept beside the secret, not in it"


def test_state_two_writers_one_token_one_wins(make: Make, keys: tuple[Secret, ...]) -> None:
    backend = writable(make(keys[0]))
    token = backend.write_state({"step": "plan"}, None)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def writer(name: str) -> None:
        barrier.wait()
        try:
            results[name] = backend.write_state({"step": "claimed", "by": name}, token)
        except KeyvaultError as exc:
            results[name] = exc

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [n for n, r in results.items() if isinstance(r, str)]
    losers = [r for r in results.values() if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, results
    state, final = backend.read_state()
    assert state == {"step": "claimed", "by": winners[0]} and final == results[winners[0]]
