"""A rotation across every backend at once, against real servers: OpenBao (the primary: it holds
the pending slot and the journal), AWS Secrets Manager on moto_server, the fake GCP Secret
Manager, a .env file and the encrypted file store; then crashes at the cloud write points."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from keyvault.backends import open_backend
from keyvault.rotate.crash import CRASH_EXIT
from tests.rotate_support import World, make_world, text

pytestmark = pytest.mark.server


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch, openbao, moto_server, fake_gcp) -> World:
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    servers = {**openbao.env(), **moto_server.env()}
    for name, value in servers.items():
        monkeypatch.setenv(name, value)
    w.env_extra.update(servers)
    old = w.old.secret.reveal()
    name = uuid.uuid4().hex[:10]
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path=f"apps/{name}", secret={"api_key": old, "owner": "team-ai"}, mount_point="secret")
    w.add(f"vault://secret/apps/{name}#api_key")
    moto_server.client().create_secret(Name=f"prod/{name}", SecretString=json.dumps({"api_key": old, "region": "eu"}))
    w.add(f"aws-sm://prod/{name}?region={moto_server.region}#api_key")
    fake_gcp.create_secret("keyvault-test", f"chat-{name}", old)
    w.add(fake_gcp.source("keyvault-test", f"chat-{name}", transport="rest"))
    w.add_dotenv("web")
    w.add_file("prod")
    w.openbao, w.moto, w.name = openbao, moto_server, name  # type: ignore[attr-defined]
    return w


def test_rotation_across_every_backend(world: World) -> None:
    new = world.fake.mint_key("prod-chat-new")
    proc = world.cli("stage", "--policy", str(world.write_policy()), input=new.secret.reveal().encode())
    assert proc.returncode == 0, text(proc)
    proc = world.rotate("--format", "json")
    assert proc.returncode == 0, text(proc)
    out = json.loads(proc.stdout)
    assert out["phase"] == "done"
    assert world.held() == [new.secret.fingerprint] * 5
    assert world.status_of(world.old) == "archived"
    # the other fields beside the key are untouched
    kv = world.openbao.client().secrets.kv.v2.read_secret_version(path=f"apps/{world.name}", mount_point="secret",
                                                                  raise_on_deleted_version=True)
    assert kv["data"]["data"]["owner"] == "team-ai"
    aws = json.loads(world.moto.client().get_secret_value(SecretId=f"prod/{world.name}")["SecretString"])
    assert aws["region"] == "eu"
    # the journal lives in Vault, beside the secret, and holds no key value
    journal = world.journal()
    assert journal["phase"] == "done" and journal["new_fp"] == new.secret.fingerprint
    assert new.secret.reveal() not in json.dumps(journal) and world.old.secret.reveal() not in json.dumps(journal)
    # each target resolves the new key the way an app does
    from keyvault.resolve import clear_cache, get_api_key

    clear_cache()
    for uri in world.targets:
        assert get_api_key(uri, ttl=0) == new.secret


def test_crashes_at_the_cloud_writes_converge(world: World) -> None:
    """Crash around every write into Vault, AWS and GCP (stage, promote, journal steps) and at
    the revoke; every rerun resumes from the journal kept in Vault."""
    keys = [world.old]
    new = world.fake.mint_key("prod-chat-1")
    keys.append(new)
    world.stage(new.secret)
    points = ["create", "update:promote:1", "update:promoted:1", "update:stage:2", "update:promote:2",
              "update:stage:3", "update:promoted:3", "verify-deploy", "revoke:deactivated", "archive:set"]
    for point in points:
        proc = world.rotate(env=world.environ(KEYVAULT_CRASH_AT=point))
        assert proc.returncode == CRASH_EXIT, f"{point}: {text(proc)}"
        for uri in world.targets:
            served = open_backend(uri).read().secret
            key = next(k for k in keys if k.secret == served)
            assert world.status_of(key) == "active", f"after a crash at {point}, {uri} serves an inactive key"
        held = set(world.held())
        pending = world.pending()
        assert new.secret.fingerprint in held or (pending is not None and pending == new.secret), point
    proc = world.rotate()
    assert proc.returncode == 0, text(proc)
    assert world.held() == [new.secret.fingerprint] * 5
    assert world.status_of(world.old) == "archived"
