"""AWS Secrets Manager backend against moto (in process): labels, CAS, JSON fields, state, errors."""

from __future__ import annotations

import json
import threading

import pytest

from keyvault.backends import open_backend
from keyvault.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError, SourceError
from keyvault.testing.keygen import make_key


def labels(client, name: str) -> dict[str, list[str]]:
    described = client.describe_secret(SecretId=name)
    return {v: sorted(s) for v, s in described["VersionIdsToStages"].items()}


def holder(client, name: str, label: str) -> str | None:
    return next((v for v, s in labels(client, name).items() if label in s), None)


@pytest.fixture
def sm(aws_moto):
    return aws_moto.client()


def test_read_plain_and_json_field(sm):
    key, other = make_key(), make_key()
    sm.create_secret(Name="prod/plain", SecretString=key.reveal())
    sm.create_secret(Name="prod/json", SecretString=json.dumps({"api_key": other.reveal(), "org": "x"}))
    got = open_backend("aws-sm://prod/plain?region=us-east-1").read()
    assert got.secret == key and got.stage == "current" and got.created is not None
    assert got.created.tzinfo is not None
    assert open_backend("aws-sm://prod/json#api_key").read().secret == other


def test_field_errors_name_fields_never_values(sm):
    key = make_key()
    sm.create_secret(Name="j", SecretString=json.dumps({"api_key": key.reveal(), "org": "x"}))
    sm.create_secret(Name="p", SecretString=key.reveal())
    with pytest.raises(BackendError, match=r"fields api_key, org.*'#api_key'") as no_field:
        open_backend("aws-sm://j").read()
    with pytest.raises(NotFoundError, match=r"no field 'key' \(fields: api_key, org\)") as wrong:
        open_backend("aws-sm://j#key").read()
    with pytest.raises(BackendError, match="plain string, not JSON") as plain:
        open_backend("aws-sm://p#api_key").read()
    for exc in (no_field, wrong, plain):
        assert key.reveal() not in str(exc.value)


def test_missing_secret_names_region_and_fix(aws_moto):
    with pytest.raises(NotFoundError, match=r"'nope' in eu-west-1\).*create-secret --name nope"):
        open_backend("aws-sm://nope?region=eu-west-1").read()


def test_bad_source_parameters(aws_moto, monkeypatch):
    with pytest.raises(SourceError, match="unknown parameter colour"):
        open_backend("aws-sm://x?colour=blue")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(SourceError, match=r"no AWS region; add \?region="):
        open_backend("aws-sm://x").read()
    with pytest.raises(SourceError, match="profile 'ghost'"):
        open_backend("aws-sm://x?profile=ghost&region=us-east-1").read()


def test_unreachable_endpoint(aws_moto, monkeypatch):
    import botocore.endpoint

    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda s: None)  # skip retry back-off
    with pytest.raises(BackendError, match="cannot reach http://127.0.0.1:9"):
        open_backend("aws-sm://x?region=us-east-1&endpoint=http://127.0.0.1:9").read()


def test_stage_is_idempotent_and_not_served(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="s", SecretString=old.reveal())
    backend = open_backend("aws-sm://s")
    assert backend.read_pending() is None
    first = backend.stage(new)
    again = backend.stage(new)
    assert first.version == again.version and first.stage == "pending"
    assert len(labels(sm, "s")) == 2  # the retry made no second version
    assert backend.read().secret == old
    assert backend.read_pending().secret == new
    # a different key is refused while one is staged (it may be the only copy of that key)
    newer = make_key()
    with pytest.raises(ConflictError, match="already staged") as refused:
        backend.stage(newer)
    assert new.reveal() not in str(refused.value) and newer.reveal() not in str(refused.value)
    backend.clear_pending()
    backend.stage(newer)
    assert backend.read_pending().secret == newer
    assert sum("AWSPENDING" in s for s in labels(sm, "s").values()) == 1


def test_promote_is_a_compare_and_swap(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="s", SecretString=old.reveal())
    backend = open_backend("aws-sm://s")
    backend.stage(new)
    with pytest.raises(ConflictError, match="current key changed") as stale:
        backend.promote(make_key().fingerprint)
    assert new.reveal() not in str(stale.value) and old.reveal() not in str(stale.value)
    promoted = backend.promote(old.fingerprint)
    assert promoted.secret == new and promoted.stage == "current"
    assert backend.read().secret == new
    assert backend.read_pending() is None
    stages = {v.version: v.stages for v in backend.versions()}
    assert sorted(stages.values()) == [("current",), ("previous",)]
    # plain GetSecretValue would be stale in moto; reads use VersionStage=AWSCURRENT explicitly
    assert sm.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")["SecretString"] == new.reveal()


def test_promote_without_pending(sm):
    sm.create_secret(Name="s", SecretString=make_key().reveal())
    with pytest.raises(NotFoundError, match="no pending key"):
        open_backend("aws-sm://s").promote("0" * 64)


def test_promote_resumes_after_a_crash_between_moves(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="s", SecretString=old.reveal())
    backend = open_backend("aws-sm://s")
    pending = backend.stage(new)
    # the first promote moved AWSCURRENT and died before removing AWSPENDING
    sm.update_secret_version_stage(SecretId="s", VersionStage="AWSCURRENT",
                                   MoveToVersionId=pending.version, RemoveFromVersionId=holder(sm, "s", "AWSCURRENT"))
    again = backend.promote(old.fingerprint)
    assert again.secret == new and backend.read_pending() is None


def test_someone_else_moving_awscurrent_is_a_conflict(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="s", SecretString=old.reveal())
    a, b = open_backend("aws-sm://s"), open_backend("aws-sm://s")
    a.stage(new)
    # b's plan was made against `old`, but a promotes first
    a.promote(old.fingerprint)
    b.stage(make_key())
    with pytest.raises(ConflictError):
        b.promote(old.fingerprint)
    assert a.read().secret == new


def test_rollback_restores_previous_and_keeps_the_new_as_previous(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="s", SecretString=old.reveal())
    backend = open_backend("aws-sm://s")
    backend.stage(new)
    backend.promote(old.fingerprint)
    with pytest.raises(ConflictError):
        backend.rollback(old.fingerprint)
    assert backend.read_previous().secret == old
    rolled = backend.rollback(new.fingerprint)
    assert rolled.secret == old and backend.read().secret == old
    assert backend.read_previous().secret == new
    # staging the same value again re-labels the existing version (AWS ignores labels on a replay)
    again = backend.stage(new)
    assert again.secret == new and backend.read_pending().secret == new
    assert backend.promote(old.fingerprint).secret == new


def test_rollback_without_previous(sm):
    key = make_key()
    sm.create_secret(Name="s", SecretString=key.reveal())
    assert open_backend("aws-sm://s").read_previous() is None
    with pytest.raises(NotFoundError, match="AWSPREVIOUS"):
        open_backend("aws-sm://s").rollback(key.fingerprint)


def test_json_field_keeps_every_other_field(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="j", SecretString=json.dumps({"org": "acme", "api_key": old.reveal(), "n": 3}))
    backend = open_backend("aws-sm://j#api_key")
    backend.stage(new)
    # someone edits another field between stage and promote: the promote must not revert it
    current = holder(sm, "j", "AWSCURRENT")
    sm.put_secret_value(SecretId="j", SecretString=json.dumps({"org": "acme2", "api_key": old.reveal(), "n": 3}),
                        VersionStages=["EDIT"])
    sm.update_secret_version_stage(SecretId="j", VersionStage="AWSCURRENT",
                                   MoveToVersionId=holder(sm, "j", "EDIT"), RemoveFromVersionId=current)
    backend.promote(old.fingerprint)
    data = json.loads(sm.get_secret_value(SecretId="j", VersionStage="AWSCURRENT")["SecretString"])
    assert data == {"org": "acme2", "api_key": new.reveal(), "n": 3}
    assert list(data) == ["org", "api_key", "n"]
    backend.rollback(new.fingerprint)
    data = json.loads(sm.get_secret_value(SecretId="j", VersionStage="AWSCURRENT")["SecretString"])
    assert data == {"org": "acme2", "api_key": old.reveal(), "n": 3}


def test_state_compare_and_swap(sm):
    sm.create_secret(Name="app/key", SecretString=make_key().reveal())
    backend = open_backend("aws-sm://app/key")
    assert backend.read_state() == (None, None)
    t1 = backend.write_state({"step": "staged", "new": "ab12"}, None)
    with pytest.raises(ConflictError, match="already exists"):
        backend.write_state({"step": "other"}, None)
    t2 = backend.write_state({"step": "promoted"}, t1)
    assert t2 != t1
    assert backend.write_state({"step": "promoted"}, t1) == t2  # a retry of the same write
    with pytest.raises(ConflictError):
        backend.write_state({"step": "late"}, t1)
    assert backend.read_state() == ({"step": "promoted"}, t2)
    # the state lives beside the secret, never inside it
    assert "app/key/keyvault-state" in {s["Name"] for s in sm.list_secrets()["SecretList"]}


def test_concurrent_state_writers_one_wins(sm):
    sm.create_secret(Name="c", SecretString=make_key().reveal())
    token = open_backend("aws-sm://c").write_state({"step": "0"}, None)
    wins, conflicts = [], []

    def writer(i: int) -> None:
        try:
            wins.append(open_backend("aws-sm://c").write_state({"step": str(i)}, token))
        except ConflictError:
            conflicts.append(i)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(conflicts) == 5


def test_versions_lists_stages_newest_first(sm):
    old, new = make_key(), make_key()
    sm.create_secret(Name="v", SecretString=old.reveal())
    backend = open_backend("aws-sm://v")
    backend.stage(new)
    listed = backend.versions()
    assert {v.stages for v in listed} == {("current",), ("pending",)}
    assert all(v.fingerprint is None for v in listed)


def test_arn_source_keeps_state_beside_the_name(sm):
    arn = sm.create_secret(Name="team/key", SecretString=make_key().reveal())["ARN"]
    backend = open_backend(f"aws-sm://{arn}")
    assert backend.state_name == "team/key/keyvault-state" and backend.region == "us-east-1"
    backend.write_state({"step": "x"}, None)
    assert backend.read_state()[0] == {"step": "x"}


def test_throttling_is_retried_then_reported(sm, monkeypatch):
    """A throttle injected in front of moto goes through botocore's real retry path."""
    import botocore.endpoint
    from botocore.awsrequest import AWSResponse

    sm.create_secret(Name="t", SecretString=make_key().reveal())
    backend = open_backend("aws-sm://t")
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda s: None)
    calls = []

    class Raw:
        def stream(self, **kw):
            yield b'{"__type":"ThrottlingException","message":"Rate exceeded"}'

    def throttle(request, **kwargs):
        calls.append(1)
        if len(calls) <= 2 or always[0]:
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Raw())
        return None

    always = [False]
    backend.client.meta.events.register_first("before-send.secrets-manager.GetSecretValue", throttle)
    assert backend.read().secret is not None and len(calls) == 3
    always[0] = True
    with pytest.raises(BackendError, match="throttled by AWS"):
        backend.read()


def test_missing_credentials(aws_moto, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(PermissionDeniedError, match="no AWS credentials"):
        open_backend("aws-sm://x?region=us-east-1").read()


@pytest.mark.parametrize(("code", "error", "says"), [
    ("AccessDeniedException", PermissionDeniedError, "access denied for secretsmanager:GetSecretValue"),
    ("DecryptionFailure", PermissionDeniedError, "kms:Decrypt"),
    ("ExpiredTokenException", PermissionDeniedError, "rejected the credentials"),
    ("InternalServiceError", BackendError, "InternalServiceError"),
])
def test_real_aws_error_shapes(sm, code, error, says):
    """AWS's own JSON error bodies (moto answers some of these differently) map to the fix."""
    from botocore.awsrequest import AWSResponse

    key = make_key()
    sm.create_secret(Name="e", SecretString=key.reveal())
    backend = open_backend("aws-sm://e")
    body = json.dumps({"__type": code, "message": "refused"}).encode()

    class Raw:
        def stream(self, **kw):
            yield body

    backend.client.meta.events.register_first(
        "before-send.secrets-manager.GetSecretValue",
        lambda request, **kw: AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Raw()),
    )
    with pytest.raises(error, match=says) as caught:
        backend.read()
    assert key.reveal() not in str(caught.value)
