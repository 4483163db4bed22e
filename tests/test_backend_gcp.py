"""GCP Secret Manager backend against the fake, over gRPC and REST: aliases, etags, CRC32C."""

from __future__ import annotations

import json
import threading

import pytest

from keyvault.backends import open_backend
from keyvault.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError, SourceError
from keyvault.testing.keygen import make_key

P = "keyvault-test"


@pytest.fixture(params=["grpc", "rest"])
def transport(request) -> str:
    return request.param


@pytest.fixture
def api(fake_gcp, transport):
    return fake_gcp.client(transport)


def aliases(api, name: str) -> dict[str, int]:
    return dict(api.get_secret(name=f"projects/{P}/secrets/{name}").version_aliases)


def test_read_latest_enabled_then_alias(fake_gcp, api, transport):
    old, new = make_key(), make_key()
    fake_gcp.create_secret(P, "s", old.reveal(), new.reveal())
    backend = open_backend(fake_gcp.source(P, "s", transport))
    got = backend.read()
    assert got.secret == new and got.version == "2" and got.stage == "current"
    api.disable_secret_version(name=f"projects/{P}/secrets/s/versions/2")
    assert backend.read().secret == old  # latest is disabled: the newest enabled one serves
    fake_gcp.create_secret(P, "a", old.reveal(), new.reveal(), aliases={"prod": 1})
    assert open_backend(fake_gcp.source(P, "a", transport, alias="prod")).read().secret == old
    with pytest.raises(NotFoundError, match="no version alias 'blue'"):
        open_backend(fake_gcp.source(P, "a", transport, alias="blue")).read()
    with pytest.raises(NotFoundError):
        open_backend(fake_gcp.source(P, "missing", transport)).read()


def test_json_field(fake_gcp, transport):
    key = make_key()
    fake_gcp.create_secret(P, "j", json.dumps({"api_key": key.reveal(), "org": "acme"}))
    assert open_backend(fake_gcp.source(P, "j", transport, field="api_key")).read().secret == key
    with pytest.raises(BackendError, match="fields api_key, org") as caught:
        open_backend(fake_gcp.source(P, "j", transport)).read()
    assert key.reveal() not in str(caught.value)


def test_stage_pins_current_so_the_new_version_is_not_served(fake_gcp, api, transport):
    old, new = make_key(), make_key()
    fake_gcp.create_secret(P, "s", old.reveal())
    backend = open_backend(fake_gcp.source(P, "s", transport))
    pending = backend.stage(new)
    assert pending.version == "2" and pending.stage == "pending" and pending.created is not None
    assert aliases(api, "s") == {"current": 1, "pending": 2}
    assert backend.read().secret == old  # "latest" is the new version; the alias serves the old
    assert backend.read_pending().secret == new
    assert backend.stage(new).version == "2"  # idempotent
    assert len(list(api.list_secret_versions(parent=f"projects/{P}/secrets/s"))) == 2


def test_interrupted_stage_reuses_its_version(fake_gcp, api, transport):
    old, new = make_key(), make_key()
    fake_gcp.create_secret(P, "s", old.reveal(), aliases={"current": 1})
    # an earlier stage added the version, then died before moving the alias
    api.add_secret_version(parent=f"projects/{P}/secrets/s", payload={"data": new.reveal().encode()})
    backend = open_backend(fake_gcp.source(P, "s", transport))
    assert backend.stage(new).version == "2"
    assert len(list(api.list_secret_versions(parent=f"projects/{P}/secrets/s"))) == 2


def test_promote_rollback_and_versions(fake_gcp, api, transport):
    old, new = make_key(), make_key()
    fake_gcp.create_secret(P, "s", old.reveal())
    backend = open_backend(fake_gcp.source(P, "s", transport))
    with pytest.raises(NotFoundError, match="no pending key"):
        backend.promote(old.fingerprint)
    backend.stage(new)
    with pytest.raises(ConflictError, match="current key changed") as stale:
        backend.promote(make_key().fingerprint)
    assert old.reveal() not in str(stale.value)
    promoted = backend.promote(old.fingerprint)
    assert promoted.secret == new and backend.read().secret == new
    assert aliases(api, "s") == {"current": 2, "previous": 1}
    assert backend.read_pending() is None
    listed = {v.version: (v.stages, v.state) for v in backend.versions()}
    assert listed == {"2": (("current",), "enabled"), "1": (("previous",), "enabled")}
    assert backend.read_previous().secret == old
    with pytest.raises(ConflictError):
        backend.rollback(old.fingerprint)
    assert backend.rollback(new.fingerprint).secret == old
    assert backend.read_previous().secret == new
    assert aliases(api, "s") == {"current": 1, "previous": 2}


def test_promote_finishes_an_interrupted_promote(fake_gcp, api, transport):
    old, new = make_key(), make_key()
    fake_gcp.create_secret(P, "s", old.reveal(), new.reveal(), aliases={"current": 2, "pending": 2})
    backend = open_backend(fake_gcp.source(P, "s", transport))
    assert backend.promote(old.fingerprint).secret == new
    assert aliases(api, "s") == {"current": 2}


def test_alias_move_is_compare_and_swap(fake_gcp, api, transport):
    """Concurrent promoters: the etag lets exactly one alias patch through."""
    old, new = make_key(), make_key()
    fake_gcp.create_secret(P, "s", old.reveal())
    open_backend(fake_gcp.source(P, "s", transport)).stage(new)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def promoter() -> None:
        backend = open_backend(fake_gcp.source(P, "s", transport))
        backend.client  # connect before the race
        barrier.wait()
        try:
            backend.promote(old.fingerprint)
            outcomes.append("ok")
        except (ConflictError, NotFoundError) as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=promoter) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert aliases(api, "s") == {"current": 2, "previous": 1}
    # one alias patch wins; the others were refused (stale etag) or found nothing left to promote
    assert outcomes.count("ok") == 1 and set(outcomes) <= {"ok", "ConflictError", "NotFoundError"}


def test_json_field_keeps_other_fields_across_promote(fake_gcp, api, transport):
    old, new = make_key(), make_key()
    name = f"projects/{P}/secrets/j"
    fake_gcp.create_secret(P, "j", json.dumps({"org": "acme", "api_key": old.reveal()}))
    backend = open_backend(fake_gcp.source(P, "j", transport, field="api_key"))
    backend.stage(new)
    # someone publishes an edit of another field as the served version meanwhile
    edit = api.add_secret_version(parent=name, payload={"data": json.dumps({"org": "acme2", "api_key": old.reveal()}).encode()})
    secret = api.get_secret(name=name)
    api.update_secret(secret={"name": name, "version_aliases": {**secret.version_aliases, "current": int(edit.name[-1])},
                              "etag": secret.etag}, update_mask={"paths": ["version_aliases"]})
    backend.promote(old.fingerprint)
    served = api.access_secret_version(name=f"{name}/versions/current").payload.data
    assert json.loads(served) == {"org": "acme2", "api_key": new.reveal()}


def test_clear_pending_disables_the_unserved_version(fake_gcp, api, transport):
    fake_gcp.create_secret(P, "s", make_key().reveal())
    backend = open_backend(fake_gcp.source(P, "s", transport))
    backend.stage(make_key())
    backend.clear_pending()
    assert backend.read_pending() is None
    assert api.get_secret_version(name=f"projects/{P}/secrets/s/versions/2").state.name == "DISABLED"
    backend.clear_pending()  # nothing staged: no-op


def test_state_in_sibling_annotations_with_etag(fake_gcp, api, transport):
    fake_gcp.create_secret(P, "s", make_key().reveal())
    backend = open_backend(fake_gcp.source(P, "s", transport))
    assert backend.read_state() == (None, None)
    t1 = backend.write_state({"step": "staged"}, None)
    with pytest.raises(ConflictError, match="already exists"):
        backend.write_state({"step": "x"}, None)
    # a promote between two state writes must not invalidate the state token
    backend.stage(make_key())
    t2 = backend.write_state({"step": "promoted"}, t1)
    with pytest.raises(ConflictError, match="changed since it was read"):
        backend.write_state({"step": "late"}, t1)
    assert backend.read_state() == ({"step": "promoted"}, t2)
    sibling = api.get_secret(name=f"projects/{P}/secrets/s-keyvault-state")
    assert sibling.labels["keyvault"] == "rotation-state"
    assert api.get_secret(name=f"projects/{P}/secrets/s").annotations.get("keyvault-state") is None


def test_state_secret_created_by_an_administrator(fake_gcp, transport):
    fake_gcp.create_secret(P, "s", make_key().reveal())
    fake_gcp.create_secret(P, "s-keyvault-state")  # pre-created: the rotator lacks secrets.create
    backend = open_backend(fake_gcp.source(P, "s", transport))
    state, token = backend.read_state()
    assert state is None and token
    assert backend.read_state()[0] is None
    backend.write_state({"step": "1"}, None)
    assert backend.read_state()[0] == {"step": "1"}


def test_checksum_mismatch_is_caught(fake_gcp, transport):
    fake_gcp.create_secret(P, "s", make_key().reveal())
    fake_gcp.corrupt_checksums()
    with pytest.raises(BackendError, match="CRC32C"):
        open_backend(fake_gcp.source(P, "s", transport)).read()


def test_transient_errors_are_retried_fast(fake_gcp, transport):
    key = make_key()
    fake_gcp.create_secret(P, "s", key.reveal())
    backend = open_backend(fake_gcp.source(P, "s", transport))
    fake_gcp.fail("AccessSecretVersion", "UNAVAILABLE", times=2)
    assert backend.read().secret == key
    fake_gcp.fail("AccessSecretVersion", "UNAVAILABLE", times=100)
    slow = open_backend(fake_gcp.source(P, "s", transport) + "&timeout=0.5")
    with pytest.raises(BackendError, match="unavailable"):
        slow.read()


def test_permission_denied_names_the_permission(fake_gcp, transport):
    key = make_key()
    fake_gcp.create_secret(P, "s", key.reveal())
    fake_gcp.fail("AccessSecretVersion", "PERMISSION_DENIED")
    with pytest.raises(PermissionDeniedError, match=r"secretmanager\.versions\.access.*policies/gcp/reader.yaml") as caught:
        open_backend(fake_gcp.source(P, "s", transport)).read()
    assert key.reveal() not in str(caught.value)


def test_source_errors(fake_gcp):
    with pytest.raises(SourceError, match="expected gcp-sm://projects/PROJECT/secrets/SECRET"):
        open_backend("gcp-sm://my-secret")
    with pytest.raises(SourceError, match="transport must be grpc or rest"):
        open_backend("gcp-sm://projects/p/secrets/s?transport=http")
    with pytest.raises(SourceError, match="alias 'latest' is not a valid"):
        open_backend("gcp-sm://projects/p/secrets/s?alias=latest")
    with pytest.raises(SourceError, match="unknown parameter"):
        open_backend("gcp-sm://projects/p/secrets/s?region=x")


def test_endpoint_from_environment(fake_gcp, monkeypatch):
    key = make_key()
    fake_gcp.create_secret(P, "e", key.reveal())
    monkeypatch.setenv("KEYVAULT_GCP_ENDPOINT", fake_gcp.rest_endpoint)
    assert open_backend(f"gcp-sm://projects/{P}/secrets/e?transport=rest").read().secret == key


def test_unreachable_endpoint():
    with pytest.raises(BackendError, match="cannot reach|unavailable"):
        open_backend("gcp-sm://projects/p/secrets/s?transport=rest&endpoint=http://127.0.0.1:9&timeout=0.5").read()


def test_no_google_credentials(monkeypatch, tmp_path):
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "KEYVAULT_GCP_ENDPOINT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    with pytest.raises(PermissionDeniedError, match="no Google credentials"):
        open_backend("gcp-sm://projects/p/secrets/s").read()
