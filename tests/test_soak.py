"""Soak under rotation: 16 application threads resolve the key and call the (fake) API in a loop
while a full rotation (grace 0, archive 0) runs against each backend as the primary.

What must hold, from the FakeAnthropic request log (ids, hints and times; never values):
- no call fails: a thread whose cached key was just deactivated gets one 401, re-reads the key
  and retries (the SDK client does it in its middleware; the plain loop does what the docs tell
  an app to do: `refresh()` on 401, then retry once);
- no request presents the old key later than the configured TTL (plus a small slack for the
  refresh itself) after the Admin API call that deactivated it;
- memory is flat: what keyvault and the SDK hold after the soak is within a bound of what they
  held after the warm-up.

The default run is a few seconds per backend; `KEYVAULT_SLOW=1` runs each for a minute
(`KEYVAULT_SLOW=1 python -m pytest tests/test_soak.py -m slow -s` prints the figures).
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import keyvault
from keyvault.resolve import clear_cache
from keyvault.anthropic_api import verify_key
from tests.rotate_support import World, make_world, text

THREADS = 16
TTL = 1.0  # seconds a resolved key is cached by each get_api_key call
SLACK = 1.0  # a 401, a backend re-read and a retry, on 2 shared cores
MEMORY_BOUND = 512 * 1024  # bytes keyvault and the SDK may grow by over a soak
FRAMES = 12  # deep enough to see that a hint was computed for the fake's log
SLOW = os.environ.get("KEYVAULT_SLOW") == "1"
BACKENDS = ("vault", "aws-sm", "gcp", "dotenv", "file")


@dataclass
class Figures:
    backend: str
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    old_calls_after_revoke: int = 0
    max_staleness: float = 0.0
    rotation_seconds: float = 0.0
    memory_growth: int = 0

    def line(self) -> str:
        return (f"soak {self.backend}: {self.calls} calls, {len(self.failures)} failures, "
                f"{self.old_calls_after_revoke} old-key requests after the deactivation, max staleness "
                f"{self.max_staleness * 1000:.0f} ms (TTL {TTL * 1000:.0f} ms), rotation "
                f"{self.rotation_seconds:.1f} s, memory growth {self.memory_growth} B")


def _primary(request: pytest.FixtureRequest, world: World, backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """One target of the given kind, holding the world's old key, started on its real server."""
    old = world.old.secret.reveal()
    name = uuid.uuid4().hex[:10]
    if backend == "dotenv":
        return world.add_dotenv("app")
    if backend == "file":
        return world.add_file("prod")
    if backend == "vault":
        openbao = request.getfixturevalue("openbao")
        for k, v in openbao.env().items():
            monkeypatch.setenv(k, v)
        world.env_extra.update(openbao.env())
        openbao.client().secrets.kv.v2.create_or_update_secret(
            path=f"apps/{name}", secret={"api_key": old}, mount_point="secret")
        return world.add(f"vault://secret/apps/{name}#api_key")
    if backend == "aws-sm":
        moto = request.getfixturevalue("moto_server")
        for k, v in moto.env().items():
            monkeypatch.setenv(k, v)
        world.env_extra.update(moto.env())
        moto.client().create_secret(Name=f"prod/{name}", SecretString=json.dumps({"api_key": old}))
        return world.add(f"aws-sm://prod/{name}?region={moto.region}#api_key")
    if backend == "gcp":
        gcp = request.getfixturevalue("fake_gcp")
        gcp.create_secret("keyvault-test", f"chat-{name}", old)
        return world.add(gcp.source("keyvault-test", f"chat-{name}", transport="rest"))
    raise AssertionError(backend)


def _app_threads(source: str, base_url: str, stop: threading.Event, figures: Figures) -> list[threading.Thread]:
    """Half the threads use the SDK client, half get_api_key + verify_key with refresh-on-401."""
    lock = threading.Lock()

    def count(error: str | None) -> None:
        with lock:
            figures.calls += 1
            if error is not None:
                figures.failures.append(error)

    def plain() -> None:
        while not stop.is_set():
            try:
                key = keyvault.get_api_key(source, ttl=TTL)
                status = verify_key(key, base_url=base_url, retries=0, timeout=10)
                if status.http_status == 401:
                    status = verify_key(keyvault.refresh(source), base_url=base_url, retries=0, timeout=10)
                count(None if status.ok else status.summary())
            except Exception as exc:  # a failed call is what this test counts
                count(f"{type(exc).__name__}: {exc}")

    def sdk() -> None:
        client = keyvault.anthropic_client(source, ttl=TTL, base_url=base_url, max_retries=0, timeout=10)
        while not stop.is_set():
            try:
                page = client.models.list(limit=1)
                count(None if page.data else "empty model list")
            except Exception as exc:
                count(f"{type(exc).__name__}: {exc}")

    return [threading.Thread(target=sdk if i % 2 else plain, daemon=True, name=f"soak-{i}") for i in range(THREADS)]


def _app(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    """The allocations of the app side: not those made under the fakes (the request log grows
    with every call by design), not pytest's."""
    return snapshot.filter_traces([
        tracemalloc.Filter(False, f"*{os.sep}keyvault{os.sep}testing{os.sep}*", all_frames=True),
        tracemalloc.Filter(False, f"*{os.sep}_pytest{os.sep}*", all_frames=True),
        tracemalloc.Filter(False, tracemalloc.__file__),
    ])


def _held(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in _app(snapshot).statistics("filename"))


def _warm_up(tmp_path: Path, fake: Any) -> None:
    """Load what an app loads on its first calls, 401 path included (the SDK builds its error
    models lazily), so the memory figure shows growth, not first use."""
    spare = fake.mint_key("warm-up")
    fake.set_status(spare.id, "inactive")
    env = tmp_path / "warm-up.env"
    env.write_text(f"ANTHROPIC_API_KEY={spare.secret.reveal()}\n")
    env.chmod(0o600)
    source = f"dotenv://{env}#ANTHROPIC_API_KEY"
    client = keyvault.anthropic_client(source, ttl=TTL, base_url=fake.base_url, max_retries=0, timeout=10)
    import anthropic

    with pytest.raises(anthropic.AuthenticationError):
        client.models.list(limit=1)
    assert verify_key(keyvault.refresh(source), base_url=fake.base_url, retries=0).http_status == 401


def soak(request: pytest.FixtureRequest, tmp_path: Path, fake: Any, monkeypatch: pytest.MonkeyPatch,
         backend: str, *, before: float, after: float) -> Figures:
    world = make_world(tmp_path, fake, monkeypatch)
    source = _primary(request, world, backend, monkeypatch)
    new = fake.mint_key("prod-chat-new")
    world.stage(new.secret)
    policy = world.write_policy()
    clear_cache()
    _warm_up(tmp_path, fake)
    figures = Figures(backend)
    stop = threading.Event()
    threads = _app_threads(source, fake.base_url, stop, figures)
    try:
        for t in threads:
            t.start()
        time.sleep(before)  # warm-up: connections, the SDK's lazy imports, the cache
        # traced from here: what the rotation and the calls allocate and is still held once
        # the threads are gone
        gc.collect()
        tracemalloc.start(FRAMES)
        first = tracemalloc.take_snapshot()
        started = time.monotonic()
        proc = world.cli("rotate", "--policy", str(policy), "--non-interactive", "--format", "json", timeout=120)
        figures.rotation_seconds = time.monotonic() - started
        time.sleep(after)  # past the TTL: every thread must have moved to the new key
        stop.set()
        for t in threads:
            t.join(30)
        hung = [t.name for t in threads if t.is_alive()]
        threads.clear()  # their SDK clients and connections go with them
        gc.collect()
        last = tracemalloc.take_snapshot()
    finally:
        stop.set()
        tracemalloc.stop()
    assert not hung, f"app threads still running 30 s after the stop: {hung}"
    figures.memory_growth = _held(last) - _held(first)
    if os.environ.get("SOAK_DEBUG"):
        for stat in _app(last).compare_to(_app(first), "lineno")[:10]:
            print(stat)
    assert proc.returncode == 0, text(proc)
    assert json.loads(proc.stdout)["phase"] == "done"
    assert fake.key(world.old.id).status == "archived"

    log = list(fake.requests)
    revoked = [r.at for r in log if r.method == "POST" and r.path == f"/v1/organizations/api_keys/{world.old.id}"
               and r.status == 200]
    assert revoked, "the rotation never deactivated the old key"
    deactivated = revoked[0]
    stale = [r.at - deactivated for r in log
             if r.key_hint == world.old.hint and r.auth_scheme == "x-api-key" and r.at > deactivated]
    figures.old_calls_after_revoke = len(stale)
    figures.max_staleness = max(stale, default=0.0)
    assert any(r.key_hint == new.hint for r in log), "no thread ever called with the new key"
    assert not fake.errors
    print(figures.line())
    return figures


def check(figures: Figures) -> None:
    assert figures.calls > THREADS, figures.line()
    assert not figures.failures, f"{figures.line()}; first failures: {figures.failures[:3]}"
    assert figures.max_staleness <= TTL + SLACK, figures.line()
    assert figures.memory_growth < MEMORY_BOUND, figures.line()


@pytest.mark.server
@pytest.mark.parametrize("backend", BACKENDS)
def test_soak_under_rotation(request: pytest.FixtureRequest, tmp_path: Path, fake_anthropic: Any,
                             monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    check(soak(request, tmp_path, fake_anthropic, monkeypatch, backend, before=0.7, after=TTL + 0.5))


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.skipif(not SLOW, reason="long soak: set KEYVAULT_SLOW=1")
@pytest.mark.parametrize("backend", BACKENDS)
def test_soak_under_rotation_long(request: pytest.FixtureRequest, tmp_path: Path, fake_anthropic: Any,
                                  monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    check(soak(request, tmp_path, fake_anthropic, monkeypatch, backend, before=20, after=40))

