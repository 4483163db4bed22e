"""Vault backend against a real OpenBao dev server: KV v2 versions, cas, auth methods, namespaces."""

from __future__ import annotations

import threading
import uuid
import warnings

import pytest

from keyvault.backends import open_backend
from keyvault.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError, SourceError
from keyvault.testing.keygen import make_key

pytestmark = pytest.mark.server


@pytest.fixture
def kv(openbao, vault_env):
    return openbao.client().secrets.kv.v2


@pytest.fixture
def path(kv) -> str:
    return f"apps/{uuid.uuid4().hex[:10]}/chat"


def put(kv, path, **data):
    kv.create_or_update_secret(path=path, secret=data, mount_point="secret")


def current(kv, path):
    return kv.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)["data"]


def test_read_field_version_and_time(kv, path):
    key = make_key()
    put(kv, path, api_key=key.reveal(), owner="team")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # hvac's raise_on_deleted_version DeprecationWarning stays silent
        got = open_backend(f"vault://secret/{path}#api_key").read()
    assert got.secret == key and got.version == "1" and got.created.tzinfo is not None


def test_field_rules(kv, path):
    key = make_key()
    put(kv, path, api_key=key.reveal())
    assert open_backend(f"vault://secret/{path}").read().secret == key  # one field: no #field needed
    put(kv, path, api_key=key.reveal(), owner="team")
    with pytest.raises(BackendError, match="fields api_key, owner; name the one") as many:
        open_backend(f"vault://secret/{path}").read()
    with pytest.raises(NotFoundError, match=r"no field 'key' \(fields: api_key, owner\)") as missing:
        open_backend(f"vault://secret/{path}#key").read()
    assert key.reveal() not in str(many.value) + str(missing.value)


def test_mount_with_slashes(openbao, vault_env):
    root = openbao.client()
    mount = f"team/{uuid.uuid4().hex[:6]}/kv"
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    key = make_key()
    root.secrets.kv.v2.create_or_update_secret(path="chat", secret={"api_key": key.reveal()}, mount_point=mount)
    assert open_backend(f"vault://{mount}/chat?mount={mount}#api_key").read().secret == key


def test_source_errors(vault_env, monkeypatch):
    with pytest.raises(SourceError, match="expected vault://MOUNT/PATH#field"):
        open_backend("vault://secret")
    with pytest.raises(SourceError, match="unknown parameter colour"):
        open_backend("vault://secret/x?colour=1")
    with pytest.raises(SourceError, match="auth=ldap is not one of"):
        open_backend("vault://secret/x?auth=ldap")
    with pytest.raises(SourceError, match="needs role="):
        open_backend("vault://secret/x?auth=kubernetes")
    monkeypatch.delenv("VAULT_ADDR")
    with pytest.raises(SourceError, match="set VAULT_ADDR"):
        open_backend("vault://secret/x").read()


def test_missing_path_and_bad_token(openbao, kv, path, monkeypatch):
    with pytest.raises(NotFoundError, match="not found"):
        open_backend(f"vault://secret/{path}#api_key").read()
    monkeypatch.setenv("VAULT_TOKEN", "s.not-a-token")
    with pytest.raises(PermissionDeniedError, match="permission denied to read"):
        open_backend(f"vault://secret/{path}#api_key").read()


def test_no_token_anywhere(openbao, vault_env, monkeypatch, tmp_path):
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.vault-token either
    with pytest.raises(PermissionDeniedError, match="no Vault token; set VAULT_TOKEN"):
        open_backend("vault://secret/x#api_key").read()
    # the CLI's token file is honoured when VAULT_TOKEN is unset
    (tmp_path / ".vault-token").write_text(openbao.root_token + "\n")
    with pytest.raises(NotFoundError):
        open_backend("vault://secret/x-none#api_key").read()


def test_unreachable(vault_env, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    with pytest.raises(BackendError, match="cannot reach Vault"):
        open_backend("vault://secret/x#api_key").read()


def test_stage_promote_rollback_keep_other_fields(kv, path):
    old, new = make_key(), make_key()
    put(kv, path, api_key=old.reveal(), owner="team")
    backend = open_backend(f"vault://secret/{path}#api_key")
    assert backend.read_pending() is None
    staged = backend.stage(new)
    assert backend.stage(new).version == staged.version  # idempotent
    assert backend.read().secret == old and backend.read_pending().secret == new
    with pytest.raises(ConflictError, match="current key changed"):
        backend.promote(make_key().fingerprint)
    put(kv, path, api_key=old.reveal(), owner="team-2")  # another field edited meanwhile
    promoted = backend.promote(old.fingerprint)
    assert promoted.secret == new and promoted.version == "3"
    assert current(kv, path)["data"] == {"api_key": new.reveal(), "owner": "team-2"}
    assert backend.read_pending() is None
    # previous = the newest older version with a different key (v2 only changed `owner`)
    put(kv, path, api_key=new.reveal(), owner="team-3")
    assert backend.read_previous().secret == old and backend.read_previous().version == "2"
    rolled = backend.rollback(new.fingerprint)
    assert rolled.secret == old
    assert current(kv, path)["data"] == {"api_key": old.reveal(), "owner": "team-3"}
    listed = backend.versions()
    stages = {v.version: v.stages for v in listed}
    assert stages["5"] == ("current",) and stages["4"] == ("previous",)
    assert {v.fingerprint for v in listed if v.version in ("1", "5")} == {old.fingerprint}


def test_stage_refuses_a_different_pending_until_cleared(kv, path):
    put(kv, path, api_key=make_key().reveal())
    backend = open_backend(f"vault://secret/{path}#api_key")
    first = backend.stage(make_key())
    assert first.version == "2"  # the number it will get when promoted
    newer = make_key()
    with pytest.raises(ConflictError, match="already staged"):
        backend.stage(newer)
    backend.clear_pending()
    assert backend.read_pending() is None
    backend.stage(newer)  # cas=0 works again once the pending path is gone
    assert backend.read_pending().secret == newer


def test_promote_resumes_after_crash_before_pending_delete(kv, path):
    old, new = make_key(), make_key()
    put(kv, path, api_key=old.reveal())
    backend = open_backend(f"vault://secret/{path}#api_key")
    backend.stage(new)
    put(kv, path, api_key=new.reveal())  # the first promote wrote PATH and died
    assert backend.promote(old.fingerprint).secret == new
    assert backend.read_pending() is None


def test_concurrent_promoters_write_one_version(kv, path):
    old, new = make_key(), make_key()
    put(kv, path, api_key=old.reveal())
    open_backend(f"vault://secret/{path}#api_key").stage(new)
    outcomes: list[str] = []

    def promoter() -> None:
        try:
            open_backend(f"vault://secret/{path}#api_key").promote(old.fingerprint)
            outcomes.append("ok")
        except (ConflictError, NotFoundError) as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=promoter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert current(kv, path)["metadata"]["version"] == 2  # exactly one write won
    assert current(kv, path)["data"]["api_key"] == new.reveal()
    assert "ok" in outcomes


def test_state_cas(kv, path):
    put(kv, path, api_key=make_key().reveal())
    backend = open_backend(f"vault://secret/{path}#api_key")
    assert backend.read_state() == (None, None)
    t1 = backend.write_state({"step": "staged"}, None)
    with pytest.raises(ConflictError, match="another rotator"):
        backend.write_state({"step": "x"}, None)
    t2 = backend.write_state({"step": "promoted"}, t1)
    with pytest.raises(ConflictError):
        backend.write_state({"step": "late"}, t1)
    assert backend.read_state() == ({"step": "promoted"}, t2)
    wins: list[str] = []

    def writer(i: int) -> None:
        try:
            wins.append(open_backend(f"vault://secret/{path}#api_key").write_state({"step": str(i)}, t2))
        except ConflictError:
            pass

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_approle_login(openbao, kv, path, monkeypatch):
    root = openbao.client()
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method(method_type="approle")
    root.sys.create_or_update_policy(name="chat-read", policy=f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    root.auth.approle.create_or_update_approle(role_name="chat", token_policies=["chat-read"], token_ttl="10m")
    key = make_key()
    put(kv, path, api_key=key.reveal())
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", root.auth.approle.read_role_id(role_name="chat")["data"]["role_id"])
    monkeypatch.setenv("VAULT_SECRET_ID", root.auth.approle.generate_secret_id(role_name="chat")["data"]["secret_id"])
    assert open_backend(f"vault://secret/{path}?auth=approle#api_key").read().secret == key
    monkeypatch.setenv("VAULT_SECRET_ID", str(uuid.uuid4()))
    with pytest.raises(PermissionDeniedError, match="invalid role or secret ID"):
        open_backend(f"vault://secret/{path}?auth=approle#api_key").read()
    monkeypatch.delenv("VAULT_SECRET_ID")
    with pytest.raises(PermissionDeniedError, match="needs VAULT_ROLE_ID and VAULT_SECRET_ID"):
        open_backend(f"vault://secret/{path}?auth=approle#api_key").read()


def test_namespaces(openbao, vault_env, monkeypatch):
    """OpenBao 2.x has namespaces: the same path in two namespaces holds two keys."""
    ns = "team-" + uuid.uuid4().hex[:6]
    openbao.client().sys.create_namespace(ns)
    inner = openbao.client(namespace=ns)
    inner.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    ns_key, root_key = make_key(), make_key()
    inner.secrets.kv.v2.create_or_update_secret(path="chat", secret={"api_key": ns_key.reveal()}, mount_point="secret")
    openbao.client().secrets.kv.v2.create_or_update_secret(path="chat", secret={"api_key": root_key.reveal()},
                                                           mount_point="secret")
    assert open_backend(f"vault://secret/chat?namespace={ns}#api_key").read().secret == ns_key
    assert open_backend("vault://secret/chat#api_key").read().secret == root_key
    monkeypatch.setenv("VAULT_NAMESPACE", ns)
    backend = open_backend("vault://secret/chat#api_key")
    assert backend.read().secret == ns_key
    new = make_key()
    backend.stage(new)
    assert backend.promote(ns_key.fingerprint).secret == new
    assert open_backend("vault://secret/chat?namespace=root#api_key").read().secret == root_key


def test_kubernetes_login(openbao, kv, path, monkeypatch, tmp_path):
    """The pod's service-account token is exchanged for a Vault token (TokenReview on a fake API)."""
    from tests.fake_tokenreview import FakeTokenReview

    review = FakeTokenReview().start()
    try:
        root = openbao.client()
        mount = "k8s-" + uuid.uuid4().hex[:6]
        root.sys.enable_auth_method("kubernetes", path=mount)
        root.auth.kubernetes.configure(kubernetes_host=review.url, kubernetes_ca_cert=review.ca_pem,
                                       token_reviewer_jwt="reviewer", disable_local_ca_jwt=True, mount_point=mount)
        root.sys.create_or_update_policy(name="chat-k8s", policy=f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
        root.auth.kubernetes.create_role("chat", bound_service_account_names=["chat"],
                                         bound_service_account_namespaces=["apps"], policies=["chat-k8s"],
                                         mount_point=mount)
        key = make_key()
        put(kv, path, api_key=key.reveal())
        monkeypatch.delenv("VAULT_TOKEN")
        jwt = tmp_path / "token"
        jwt.write_text(review.service_account_jwt("apps", "chat"))
        source = f"vault://secret/{path}?auth=kubernetes&role=chat&auth_mount={mount}&jwt_path={jwt}#api_key"
        assert open_backend(source).read().secret == key
        assert review.reviews == 1
        jwt.write_text(review.service_account_jwt("other-ns", "chat"))  # not bound to the role
        with pytest.raises(PermissionDeniedError, match="Kubernetes role 'chat'"):
            open_backend(source).read()
        with pytest.raises(PermissionDeniedError, match="cannot read the service-account token"):
            open_backend(source.replace(str(jwt), str(tmp_path / "absent"))).read()
    finally:
        review.stop()
