"""The fake GCP Secret Manager, driven by the official client over both transports."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from google.api_core import exceptions as gx
from google.api_core import retry as retries
from google.protobuf import duration_pb2, field_mask_pb2

from keyvault._crc32c import crc32c
from keyvault.backends.gcp import status_of

TRANSPORTS = ["grpc", "rest"]
AUTO = {"replication": {"automatic": {}}}


@pytest.fixture(params=TRANSPORTS)
def client(request, fake_gcp):
    return fake_gcp.client(request.param)


def error(call) -> gx.GoogleAPICallError:
    with pytest.raises(gx.GoogleAPICallError) as caught:
        call()
    return caught.value


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def test_crc32c_reference_value():
    assert crc32c(b"123456789") == 0xE3069283


def test_secret_lifecycle_and_errors(client):
    secret = client.create_secret(parent="projects/p", secret_id="k", secret={**AUTO, "labels": {"app": "chat"}})
    assert secret.name == "projects/p/secrets/k" and secret.etag.startswith('"')
    again = error(lambda: client.create_secret(parent="projects/p", secret_id="k", secret=AUTO))
    assert again.code == 409 and status_of(again) == "ALREADY_EXISTS"
    assert error(lambda: client.get_secret(name="projects/p/secrets/none")).code == 404
    no_replication = error(lambda: client.create_secret(parent="projects/p", secret_id="r", secret={}))
    assert status_of(no_replication) == "INVALID_ARGUMENT"
    bad_id = error(lambda: client.create_secret(parent="projects/p", secret_id="a/b.c", secret=AUTO))
    assert status_of(bad_id) == "INVALID_ARGUMENT"
    stale = error(lambda: client.delete_secret(request={"name": secret.name, "etag": '"stale"'}))
    assert status_of(stale) == "FAILED_PRECONDITION" and stale.code == 400
    client.delete_secret(request={"name": secret.name, "etag": secret.etag})
    assert error(lambda: client.get_secret(name=secret.name)).code == 404


def test_list_secrets_pages(client):
    for i in range(5):
        client.create_secret(parent="projects/pg", secret_id=f"s{i}", secret=AUTO)
    client.create_secret(parent="projects/other", secret_id="x", secret=AUTO)
    pager = client.list_secrets(request={"parent": "projects/pg", "page_size": 2})
    assert [s.name.rsplit("/", 1)[1] for s in pager] == ["s0", "s1", "s2", "s3", "s4"]
    first = client.list_secrets(request={"parent": "projects/pg", "page_size": 2})
    assert len(list(first.pages)) == 3


def test_versions_checksums_states_and_etags(client, fake_gcp):
    name = client.create_secret(parent="projects/p", secret_id="v", secret=AUTO).name
    v1 = client.add_secret_version(parent=name, payload={"data": b"one", "data_crc32c": crc32c(b"one")})
    assert v1.name.endswith("/versions/1") and v1.state.name == "ENABLED" and v1.client_specified_payload_checksum
    bad = error(lambda: client.add_secret_version(parent=name, payload={"data": b"two", "data_crc32c": 1}))
    assert status_of(bad) == "INVALID_ARGUMENT" and "Checksum mismatch" in bad.message
    v2 = client.add_secret_version(parent=name, payload={"data": b"two"})
    assert not v2.client_specified_payload_checksum
    latest = client.access_secret_version(name=f"{name}/versions/latest")
    assert latest.name == v2.name and latest.payload.data == b"two"
    assert latest.payload.data_crc32c == crc32c(b"two")
    stale = error(lambda: client.disable_secret_version(request={"name": v2.name, "etag": v1.etag}))
    assert status_of(stale) == "FAILED_PRECONDITION"
    disabled = client.disable_secret_version(request={"name": v2.name, "etag": v2.etag})
    assert disabled.state.name == "DISABLED" and disabled.etag != v2.etag
    refused = error(lambda: client.access_secret_version(name=f"{name}/versions/latest"))
    assert status_of(refused) == "FAILED_PRECONDITION" and "DISABLED state" in refused.message
    listed = client.list_secret_versions(request={"parent": name})
    assert [(v.name[-1], v.state.name) for v in listed] == [("2", "DISABLED"), ("1", "ENABLED")]
    enabled = client.list_secret_versions(request={"parent": name, "filter": "state:ENABLED"})
    assert [v.name[-1] for v in enabled] == ["1"]
    client.enable_secret_version(name=v2.name)
    destroyed = client.destroy_secret_version(name=v2.name)
    assert destroyed.state.name == "DESTROYED" and destroyed.destroy_time
    assert fake_gcp.payload(v2.name) == b""
    assert status_of(error(lambda: client.enable_secret_version(name=v2.name))) == "FAILED_PRECONDITION"
    assert error(lambda: client.access_secret_version(name=f"{name}/versions/9")).code == 404


def test_update_secret_aliases_labels_annotations_rotation(client):
    secret = client.create_secret(parent="projects/p", secret_id="u", secret={**AUTO, "labels": {"a": "1"}})
    client.add_secret_version(parent=secret.name, payload={"data": b"one"})
    client.add_secret_version(parent=secret.name, payload={"data": b"two"})
    updated = client.update_secret(
        secret={"name": secret.name, "version_aliases": {"current": 1}, "annotations": {"owner.team": "ai"},
                "labels": {"b": "2"}, "etag": secret.etag},
        update_mask=mask("version_aliases", "annotations"),
    )
    assert dict(updated.version_aliases) == {"current": 1} and dict(updated.annotations) == {"owner.team": "ai"}
    assert dict(updated.labels) == {"a": "1"}  # not in the mask: untouched
    by_alias = client.access_secret_version(name=f"{secret.name}/versions/current")
    assert by_alias.payload.data == b"one" and by_alias.name.endswith("/versions/1")
    assert client.get_secret_version(name=f"{secret.name}/versions/current").name.endswith("/1")
    stale = error(lambda: client.update_secret(secret={"name": secret.name, "labels": {}, "etag": secret.etag},
                                               update_mask=mask("labels")))
    assert status_of(stale) == "FAILED_PRECONDITION" and stale.code == 400
    for aliases in ({"latest": 1}, {"1x": 1}, {"ok": 7}):
        invalid = error(lambda: client.update_secret(secret={"name": secret.name, "version_aliases": aliases},
                                                     update_mask=mask("version_aliases")))
        assert status_of(invalid) == "INVALID_ARGUMENT"
    assert status_of(error(lambda: client.update_secret(secret={"name": secret.name}, update_mask=mask("name")))) \
        == "INVALID_ARGUMENT"
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    rotation = {"next_rotation_time": soon, "rotation_period": duration_pb2.Duration(seconds=90 * 86400)}
    no_topic = error(lambda: client.update_secret(secret={"name": secret.name, "rotation": rotation},
                                                  update_mask=mask("rotation")))
    assert status_of(no_topic) == "INVALID_ARGUMENT"
    rotated = client.update_secret(
        secret={"name": secret.name, "rotation": rotation, "topics": [{"name": "projects/p/topics/rotate"}]},
        update_mask=mask("rotation", "topics"),
    )
    assert rotated.rotation.rotation_period.days == 90 and rotated.topics[0].name == "projects/p/topics/rotate"
    short = {"next_rotation_time": soon, "rotation_period": duration_pb2.Duration(seconds=60)}
    assert status_of(error(lambda: client.update_secret(secret={"name": secret.name, "rotation": short},
                                                        update_mask=mask("rotation")))) == "INVALID_ARGUMENT"


def test_regional_secret(client):
    parent = "projects/p/locations/europe-west1"
    secret = client.create_secret(parent=parent, secret_id="r", secret={})  # regional: no replication
    client.add_secret_version(parent=secret.name, payload={"data": b"eu"})
    assert client.access_secret_version(name=f"{secret.name}/versions/1").payload.data == b"eu"
    assert [s.name for s in client.list_secrets(parent=parent)] == [secret.name]


def test_fault_injection_and_call_log(client, fake_gcp):
    fake_gcp.create_secret("p", "f", "value")
    name = "projects/p/secrets/f/versions/1"
    fake_gcp.fail("AccessSecretVersion", "PERMISSION_DENIED")
    denied = error(lambda: client.access_secret_version(name=name))
    assert denied.code == 403 and "secretmanager.versions.access" in denied.message
    assert client.access_secret_version(name=name).payload.data == b"value"  # used up
    fake_gcp.fail("access_secret_version", "UNAVAILABLE", times=2)
    quick = retries.Retry(initial=0.01, maximum=0.02, multiplier=2, timeout=5,
                          predicate=retries.if_exception_type(gx.ServiceUnavailable))
    started = time.monotonic()
    assert client.access_secret_version(name=name, retry=quick).payload.data == b"value"
    assert time.monotonic() - started < 2
    accesses = [c for c in fake_gcp.calls if c[0] == "AccessSecretVersion"]
    assert len(accesses) == 5 and accesses[0][1] == name
    fake_gcp.corrupt_checksums()
    corrupted = client.access_secret_version(name=name)  # the client itself does not notice
    assert corrupted.payload.data_crc32c != crc32c(b"value")
    with pytest.raises(ValueError):
        fake_gcp.fail("NoSuchMethod")


def test_unimplemented_methods_say_so(client, fake_gcp):
    fake_gcp.create_secret("p", "i", "v")
    refused = error(lambda: client.get_iam_policy(request={"resource": "projects/p/secrets/i"}))
    assert status_of(refused) == "UNIMPLEMENTED"
