"""FakeAnthropic answers like the real API: shapes asserted field by field against CONTEXT.md
and the SDK's types, through raw HTTP and through the official `anthropic` SDK."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from keyvault.keys import API, Secret
from keyvault.testing.fake_anthropic import CREDIT_BALANCE_TOO_LOW, MODELS, FakeAnthropic
from keyvault.testing.keygen import make_key

REQ_ID = re.compile(r"^req_01[1-9A-HJ-NP-Za-km-z]{22}$")
KEY_ID = re.compile(r"^apikey_01[1-9A-HJ-NP-Za-km-z]{22}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
KEY_FIELDS = {"id", "type", "name", "status", "created_at", "created_by", "expires_at", "partial_key_hint",
              "principal", "scope", "workspace_id"}
MODEL_FIELDS = {"type", "id", "display_name", "created_at", "lifecycle", "line", "deprecated_at", "retires_at",
                "max_input_tokens", "max_tokens"}
PAGE_FIELDS = {"data", "has_more", "first_id", "last_id"}


@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> Iterator[FakeAnthropic]:
    yield fake_anthropic
    assert fake_anthropic.errors == []  # the fake itself never crashed


@pytest.fixture
def http(fake: FakeAnthropic) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=5, verify=False) as client:  # loopback http
        yield client


def raw(secret: Secret, version: str = "2023-06-01") -> dict[str, str]:
    return {"x-api-key": secret.reveal(), "anthropic-version": version}


def bearer(secret: Secret) -> dict[str, str]:
    return {"authorization": f"Bearer {secret.reveal()}", "anthropic-version": "2026-10-21"}


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert REQ_ID.match(body["request_id"])
    assert response.headers["request-id"] == body["request_id"]
    return body


# -- the Claude API side --------------------------------------------------------------------


@pytest.mark.parametrize("auth", [raw, bearer], ids=["x-api-key", "bearer"])
def test_models_list_shape_and_headers(fake, http, auth):
    key = fake.mint_key("prod-api-server")
    r = http.get("/v1/models", headers=auth(key.secret))
    assert r.status_code == 200
    assert REQ_ID.match(r.headers["request-id"])
    assert r.headers["anthropic-organization-id"] == fake.organization_id
    assert r.headers["anthropic-workspace-id"] == fake.default_workspace_id
    assert r.headers["anthropic-ratelimit-requests-limit"].isdigit()
    body = r.json()
    assert set(body) == PAGE_FIELDS
    assert len(body["data"]) == 5 and body["has_more"] is False
    for model in body["data"]:
        assert set(model) == MODEL_FIELDS
        assert model["type"] == "model" and model["id"].startswith("claude-")
        assert RFC3339.match(model["created_at"]) and model["lifecycle"] == "active"
    assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
    assert fake.requests[-1].auth_scheme == ("x-api-key" if auth is raw else "bearer")
    assert fake.requests[-1].key_id == key.id


def test_models_pagination_and_single_model(fake, http):
    key = fake.mint_key()
    first = http.get("/v1/models", params={"limit": 2}, headers=raw(key.secret)).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    second = http.get("/v1/models", params={"limit": 2, "after_id": first["last_id"]}, headers=raw(key.secret)).json()
    assert second["data"][0]["id"] != first["data"][-1]["id"]
    one = http.get("/v1/models/claude-sonnet-4-6", headers=raw(key.secret))
    assert one.status_code == 200 and set(one.json()) == MODEL_FIELDS
    assert_error(http.get("/v1/models/claude-nope", headers=raw(key.secret)), 404, "not_found_error")


def test_models_without_version_header_is_400(fake, http):
    key = fake.mint_key()
    r = http.get("/v1/models", headers={"x-api-key": key.secret.reveal()})
    assert_error(r, 400, "invalid_request_error")
    assert "anthropic-version" in r.json()["error"]["message"]


def test_missing_credentials_is_401(fake, http):
    r = http.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    body = assert_error(r, 401, "authentication_error")
    assert "x-api-key" in body["error"]["message"]
    assert "anthropic-organization-id" not in r.headers and "anthropic-workspace-id" not in r.headers


@pytest.mark.parametrize("state", ["unknown", "inactive", "archived", "expired"])
@pytest.mark.parametrize("auth", [raw, bearer], ids=["x-api-key", "bearer"])
def test_dead_keys_get_401(fake, http, state, auth):
    if state == "unknown":
        secret = make_key()
    elif state == "expired":
        secret = fake.mint_key(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)).secret
    else:
        secret = fake.mint_key(status=state).secret
    r = http.get("/v1/models", headers=auth(secret))
    body = assert_error(r, 401, "authentication_error")
    assert body["error"]["message"] == ("invalid x-api-key" if auth is raw else "Invalid bearer token")
    assert "anthropic-organization-id" not in r.headers
    assert fake.requests[-1].key_hint == secret.hint


def test_disabled_keys_can_answer_404():
    with FakeAnthropic(inactive_status=404) as fake, httpx.Client(base_url=fake.base_url, verify=False) as http:
        key = fake.mint_key(status="inactive")
        assert_error(http.get("/v1/models", headers=raw(key.secret)), 404, "not_found_error")


def test_admin_key_cannot_call_the_claude_api(fake, http):
    assert_error(http.get("/v1/models", headers=raw(fake.admin_key)), 401, "authentication_error")
    assert http.get("/v1/organizations/me", headers=raw(fake.admin_key)).status_code == 200
    fake.set_status(fake.admin_key_id, "inactive")  # a deactivated admin key is refused like any other
    assert_error(http.get("/v1/organizations/me", headers=raw(fake.admin_key)), 401, "authentication_error")


def test_messages_create_shape_and_validation(fake, http):
    key = fake.mint_key()
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    r = http.post("/v1/messages", json=body, headers=raw(key.secret))
    assert r.status_code == 200
    msg = r.json()
    assert set(msg) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["id"].startswith("msg_01")
    assert msg["content"] == [{"type": "text", "text": fake.reply_text}]
    assert msg["stop_reason"] == "end_turn" and msg["usage"]["output_tokens"] == 3
    missing = dict(body)
    del missing["max_tokens"]
    r = http.post("/v1/messages", json=missing, headers=raw(key.secret))
    assert assert_error(r, 400, "invalid_request_error")["error"]["message"] == "max_tokens: Field required"
    r = http.post("/v1/messages", json={**body, "model": "claude-nope"}, headers=raw(key.secret))
    assert_error(r, 404, "not_found_error")
    r = http.post("/v1/messages", content=b"{not json", headers=raw(key.secret))
    assert_error(r, 400, "invalid_request_error")


def test_unknown_route_is_404(fake, http):
    assert_error(http.get("/v1/nope", headers=raw(fake.mint_key().secret)), 404, "not_found_error")


# -- the Admin API side ---------------------------------------------------------------------


def test_organization_me(fake, http):
    r = http.get("/v1/organizations/me", headers=raw(fake.admin_key))
    assert r.status_code == 200
    assert r.json() == {"id": fake.organization_id, "type": "organization", "name": "Fake Organization"}
    assert r.headers["anthropic-organization-id"] == fake.organization_id
    assert "anthropic-workspace-id" not in r.headers  # absent on Admin API responses


def test_key_object_field_by_field(fake, http):
    default = fake.mint_key("default-ws")
    scoped = fake.mint_key("prod", "wrkspc_01ProdWorkspaceXXXXXXXXX", principal="service_account",
                           expires_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    org = fake.mint_key("org-wide", org_scoped=True)
    legacy = fake.mint_key("legacy", "wrkspc_01ProdWorkspaceXXXXXXXXX", principal=None)
    objects = {o["id"]: o for o in http.get("/v1/organizations/api_keys", headers=raw(fake.admin_key)).json()["data"]}
    assert set(objects) == {default.id, scoped.id, org.id, legacy.id}  # admin keys are not listed
    for minted in (default, scoped, org, legacy):
        obj = objects[minted.id]
        assert set(obj) == KEY_FIELDS
        assert KEY_ID.match(obj["id"]) and obj["type"] == "api_key" and obj["status"] == "active"
        assert obj["name"] == minted.name
        assert obj["partial_key_hint"] == minted.secret.hint
        assert re.fullmatch(r"sk-ant-api03-[A-Za-z0-9_-]{3}\.\.\.[A-Za-z0-9_-]{2}AA", obj["partial_key_hint"])
        assert RFC3339.match(obj["created_at"])
        assert obj["created_by"] == {"id": fake.user_id, "type": "user"}
    d = objects[default.id]
    assert d["scope"] == {"type": "workspace", "workspace_id": fake.default_workspace_id}
    assert d["workspace_id"] is None and d["expires_at"] is None  # deprecated field: null for the default
    assert d["principal"] == {"type": "user_actor", "user_id": fake.user_id}
    s = objects[scoped.id]
    assert s["scope"] == {"type": "workspace", "workspace_id": "wrkspc_01ProdWorkspaceXXXXXXXXX"}
    assert s["workspace_id"] == "wrkspc_01ProdWorkspaceXXXXXXXXX"
    assert s["expires_at"] == "2031-01-02T03:04:05.000000Z"
    assert s["principal"]["type"] == "service_account_actor"
    assert s["principal"]["service_account_id"].startswith("svac_01")
    o = objects[org.id]
    assert o["scope"] == {"type": "organization"} and o["workspace_id"] is None
    assert objects[legacy.id]["principal"] is None


def test_get_and_update_key(fake, http):
    key = fake.mint_key("old-name")
    admin = raw(fake.admin_key)
    got = http.get(f"/v1/organizations/api_keys/{key.id}", headers=admin)
    assert got.status_code == 200 and set(got.json()) == KEY_FIELDS
    path = f"/v1/organizations/api_keys/{key.id}"
    r = http.post(path, json={"name": "new-name", "status": "inactive"}, headers=admin)
    assert r.status_code == 200
    assert r.json()["name"] == "new-name" and r.json()["status"] == "inactive"
    assert fake.keys[key.id].status == "inactive" and fake.keys[key.id].name == "new-name"
    assert_error(http.get("/v1/models", headers=raw(key.secret)), 401, "authentication_error")
    r = http.post(f"/v1/organizations/api_keys/{key.id}", json={"status": "active"}, headers=admin)
    assert r.json()["status"] == "active"
    assert http.get("/v1/models", headers=raw(key.secret)).status_code == 200


@pytest.mark.parametrize("body,fragment", [
    ({"status": "expired"}, "status: Input should be 'active', 'inactive' or 'archived'"),
    ({"status": "deleted"}, "status: Input should be"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"name": 5}, "name: Input should be a valid"),
    ([1, 2], "valid dictionary"),
])
def test_update_validation_errors(fake, http, body, fragment):
    key = fake.mint_key()
    r = http.post(f"/v1/organizations/api_keys/{key.id}", json=body, headers=raw(fake.admin_key))
    assert fragment in assert_error(r, 400, "invalid_request_error")["error"]["message"]
    assert fake.keys[key.id].status == "active"


def test_archived_is_final_and_unknown_ids_are_404(fake, http):
    key = fake.mint_key()
    admin = raw(fake.admin_key)
    path = f"/v1/organizations/api_keys/{key.id}"
    assert http.post(path, json={"status": "archived"}, headers=admin).status_code == 200
    r = http.post(path, json={"status": "active"}, headers=admin)
    assert_error(r, 400, "invalid_request_error")
    assert fake.keys[key.id].status == "archived"
    assert_error(http.get("/v1/organizations/api_keys/apikey_01nope", headers=admin), 404, "not_found_error")
    assert_error(http.post("/v1/organizations/api_keys/apikey_01nope", json={}, headers=admin), 404, "not_found_error")


def test_admin_api_refuses_workspace_keys_and_accepts_org_scoped_ones(fake, http):
    workspace_key = fake.mint_key("ws")
    r = http.get("/v1/organizations/api_keys", headers=raw(workspace_key.secret))
    assert_error(r, 403, "permission_error")
    org_key = fake.mint_key("org", org_scoped=True)
    assert http.get("/v1/organizations/api_keys", headers=raw(org_key.secret)).status_code == 200
    assert_error(http.get("/v1/organizations/me", headers=raw(make_key())), 401, "authentication_error")


def test_pagination_both_ways(fake, http):
    minted = [fake.mint_key(f"k{i}") for i in range(7)]
    newest_first = [m.id for m in reversed(minted)]
    admin = raw(fake.admin_key)
    seen, params = [], {"limit": 3}
    while True:
        page = http.get("/v1/organizations/api_keys", params=params, headers=admin).json()
        assert set(page) == PAGE_FIELDS
        ids = [o["id"] for o in page["data"]]
        assert page["first_id"] == ids[0] and page["last_id"] == ids[-1]
        seen += ids
        if not page["has_more"]:
            break
        params = {"limit": 3, "after_id": page["last_id"]}
    assert seen == newest_first
    # and back from the oldest key toward the start
    back, params = [], {"limit": 3, "before_id": newest_first[-1]}
    while True:
        page = http.get("/v1/organizations/api_keys", params=params, headers=admin).json()
        back = [o["id"] for o in page["data"]] + back
        if not page["has_more"]:
            break
        params = {"limit": 3, "before_id": page["first_id"]}
    assert back == newest_first[:-1]
    empty = http.get("/v1/organizations/api_keys", params={"after_id": newest_first[-1]}, headers=admin).json()
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_limit_default_and_range(fake, http):
    for i in range(25):
        fake.mint_key(f"k{i}")
    admin = raw(fake.admin_key)
    page = http.get("/v1/organizations/api_keys", headers=admin).json()
    assert len(page["data"]) == 20 and page["has_more"] is True
    assert len(http.get("/v1/organizations/api_keys", params={"limit": 1000}, headers=admin).json()["data"]) == 25
    assert len(http.get("/v1/organizations/api_keys", params={"limit": 1}, headers=admin).json()["data"]) == 1
    for bad, fragment in (("0", "greater than or equal to 1"), ("1001", "less than or equal to 1000"),
                          ("ten", "valid integer")):
        r = http.get("/v1/organizations/api_keys", params={"limit": bad}, headers=admin)
        assert fragment in assert_error(r, 400, "invalid_request_error")["error"]["message"]
    r = http.get("/v1/organizations/api_keys", params={"after_id": "apikey_01unknown"}, headers=admin)
    assert_error(r, 400, "invalid_request_error")


def test_list_filters(fake, http):
    a = fake.mint_key("a", "wrkspc_01A")
    b = fake.mint_key("b", "wrkspc_01B", status="inactive")
    c = fake.mint_key("c", expires_at=datetime.now(timezone.utc) - timedelta(days=1))
    d = fake.mint_key("d", created_by_user_id="user_01Other")
    admin = raw(fake.admin_key)

    def ids(**params):
        return {o["id"] for o in http.get("/v1/organizations/api_keys", params=params, headers=admin).json()["data"]}

    assert ids(workspace_id="wrkspc_01A") == {a.id}
    assert ids(workspace_id=fake.default_workspace_id) == {c.id, d.id}
    assert ids(status="inactive") == {b.id}
    assert ids(status="expired") == {c.id}
    assert ids(status="active") == {a.id, d.id}
    assert ids(created_by_user_id="user_01Other") == {d.id}
    r = http.get("/v1/organizations/api_keys", params={"status": "revoked"}, headers=admin)
    assert_error(r, 400, "invalid_request_error")


# -- faults, the log, the SDK ------------------------------------------------------------------


def test_injected_429_529_500_count_and_method(fake, http):
    key = fake.mint_key()
    fake.inject("/v1/models", 429, retry_after=7, count=2)
    for _ in range(2):
        r = http.get("/v1/models", headers=raw(key.secret))
        assert_error(r, 429, "rate_limit_error")
        assert r.headers["retry-after"] == "7"
    assert http.get("/v1/models", headers=raw(key.secret)).status_code == 200
    fake.inject("/v1/models", 529)
    overloaded = assert_error(http.get("/v1/models", headers=raw(key.secret)), 529, "overloaded_error")
    assert overloaded["error"]["message"] == "Overloaded"
    fake.inject("/v1/organizations", 500, method="POST", count=None)
    admin = raw(fake.admin_key)
    assert http.get("/v1/organizations/me", headers=admin).status_code == 200
    assert_error(http.post(f"/v1/organizations/api_keys/{key.id}", json={}, headers=admin), 500, "api_error")
    fake.inject("/v1/models", 429, error_code="enforced_spend_limit_reached")
    r = http.get("/v1/models", headers=raw(key.secret))
    details = assert_error(r, 429, "rate_limit_error")["error"]["details"]
    assert details == {"error_code": "enforced_spend_limit_reached"}
    assert "retry-after" not in r.headers
    fake.inject("/v1/models", 400, message=CREDIT_BALANCE_TOO_LOW)
    r = http.get("/v1/models", headers=raw(key.secret))
    assert assert_error(r, 400, "invalid_request_error")["error"]["message"] == CREDIT_BALANCE_TOO_LOW
    assert [q.fault for q in fake.requests[-3:]] == [True, True, True]


def test_injected_delay_and_drop(fake, http):
    key = fake.mint_key()
    fake.inject("/v1/models", None, delay=0.3)
    start = time.monotonic()
    assert http.get("/v1/models", headers=raw(key.secret)).status_code == 200
    assert time.monotonic() - start >= 0.3
    fake.inject("/v1/models", drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/v1/models", headers=raw(key.secret))
    assert fake.requests[-1].status is None
    assert http.get("/v1/models", headers=raw(key.secret)).status_code == 200


def test_stop_does_not_wait_for_injected_delays():
    fake = FakeAnthropic().start()
    fake.inject("/v1/models", None, delay=30)
    with socket.create_connection(("127.0.0.1", fake.port)) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        start = time.monotonic()
        fake.stop()
        assert time.monotonic() - start < 2


def test_request_log_and_state_hold_no_key_values(fake, http):
    keys = [fake.mint_key(f"k{i}").secret for i in range(3)] + [make_key(), fake.admin_key]
    for secret in keys:
        http.get("/v1/models", headers=raw(secret))
        http.get("/v1/models", headers=bearer(secret))
        http.get("/v1/organizations/api_keys", headers=raw(secret))
    fake.inject("/v1/models", 429)
    http.get("/v1/models", headers=raw(keys[0]))
    assert len(fake.requests) == 16
    dumped = repr(fake.requests) + repr(fake.keys) + repr(fake.admin_keys) + json.dumps(
        [vars(k) for k in fake.keys.values()], default=str)
    for secret in keys:
        assert secret.reveal() not in dumped
        assert secret.reveal()[13:40] not in dumped  # not even a slice of the body
    assert {r.key_hint for r in fake.requests} == {s.hint for s in keys}


def test_official_sdk_against_the_fake(fake):
    anthropic = pytest.importorskip("anthropic")
    key = fake.mint_key("sdk")
    client = anthropic.Anthropic(api_key=key.secret.reveal(), base_url=fake.base_url, max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=32,
                                     messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].text == fake.reply_text and message.stop_reason == "end_turn"
    assert message._request_id == fake.requests[-1].request_id
    assert [m.id for m in client.models.list(limit=2)] == [m["id"] for m in MODELS]  # every page
    sdk_request = fake.requests[-1]
    assert sdk_request.auth_scheme in ("bearer", "x-api-key") and sdk_request.key_id == key.id

    admin = anthropic.Anthropic(api_key=fake.admin_key.reveal(), base_url=fake.base_url, max_retries=0)
    for i in range(4):
        fake.mint_key(f"more-{i}")
    listed = list(admin.organization.api_keys.list(limit=2))  # the SDK walks every page
    assert [k.id for k in listed] == sorted(fake.keys, key=lambda i: fake.keys[i].seq, reverse=True)
    assert listed[-1].partial_key_hint == key.secret.hint and listed[-1].scope.type == "workspace"
    assert admin.organization.retrieve().id == fake.organization_id
    assert admin.organization.api_keys.update(key.id, status="inactive").status == "inactive"

    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 401 and caught.value.request_id == fake.requests[-1].request_id
    fake.set_status(key.id, "active")
    fake.inject("/v1/messages", 429, retry_after=1)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "Hi"}])


def test_mint_key_validation(fake):
    with pytest.raises(ValueError):
        fake.mint_key(status="expired")
    with pytest.raises(ValueError):
        fake.mint_key(org_scoped=True, principal=None)
    with pytest.raises(ValueError):
        fake.mint_key(expires_at=datetime(2030, 1, 1))
    secret = make_key(API)
    fake.mint_key(secret=secret)
    with pytest.raises(ValueError):
        fake.mint_key(secret=secret)
    with pytest.raises(KeyError):
        fake.key("apikey_01missing")
