"""verify_key and AdminClient against the FakeAnthropic server: every status, retries, pages."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from keyvault.anthropic_api import AdminClient, ApiKeyInfo, KeyStatus, admin_client_from, verify_key
from keyvault.errors import ApiError, KeyFormatError, KeyMatchError, KeyvaultError
from keyvault.keys import OAUTH_ACCESS, Secret, parse_key
from keyvault.testing.fake_anthropic import CREDIT_BALANCE_TOO_LOW, FakeAnthropic
from keyvault.testing.keygen import make_admin_key, make_key

FAST = {"backoff": 0.001, "max_backoff": 0.002}


@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> Iterator[FakeAnthropic]:
    yield fake_anthropic
    assert fake_anthropic.errors == []


def check(fake: FakeAnthropic, secret: Secret, **options) -> KeyStatus:
    status = verify_key(secret, base_url=fake.base_url, **{**FAST, **options})
    assert secret.reveal() not in repr(status) and secret.reveal() not in str(status.to_dict())
    return status


def require_env_backend() -> None:
    try:
        import keyvault.backends.env  # noqa: F401
    except Exception as exc:  # not landed yet (ImportError), or keyvault.backends not importable
        pytest.skip(f"the env:// backend is not available on this branch ({type(exc).__name__})")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- verify_key: one test per state ----------------------------------------------------------


def test_active_api_key(fake):
    key = fake.mint_key("prod", "wrkspc_01Prod")
    status = check(fake, key.secret)
    assert (status.state, status.live, status.ok, status.http_status, status.attempts) == ("active", True, True, 200, 1)
    assert status.hint == key.secret.hint and status.endpoint == "/v1/models"
    assert status.request_id == fake.requests[-1].request_id
    assert status.organization_id == fake.organization_id and status.workspace_id == "wrkspc_01Prod"
    sent = fake.requests[-1]
    assert (sent.path, sent.query, sent.auth_scheme, sent.anthropic_version) == (
        "/v1/models", {"limit": "1"}, "x-api-key", "2023-06-01")
    assert status.summary() == f"{key.secret.hint}: active (200, request {status.request_id})"


def test_active_admin_key_uses_organizations_me(fake):
    status = check(fake, fake.admin_key)
    assert status.state == "active" and status.endpoint == "/v1/organizations/me"
    assert fake.requests[-1].path == "/v1/organizations/me"


@pytest.mark.parametrize("how", ["unknown", "inactive", "archived", "expired"])
def test_dead_keys_are_invalid(fake, how):
    if how == "unknown":
        secret = make_key()
    elif how == "expired":
        secret = fake.mint_key(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)).secret
    else:
        secret = fake.mint_key(status=how).secret
    status = check(fake, secret)
    assert (status.state, status.live, status.http_status, status.error_type) == (
        "invalid", False, 401, "authentication_error")
    assert status.attempts == 1  # a 401 is an answer, never retried
    assert status.request_id and status.request_id.startswith("req_")


def test_404_is_dead_too():
    with FakeAnthropic(inactive_status=404) as fake:
        status = check(fake, fake.mint_key(status="inactive").secret)
        assert (status.state, status.live, status.http_status, status.error_type) == (
            "invalid", False, 404, "not_found_error")


def test_unknown_admin_key_is_invalid(fake):
    assert check(fake, make_admin_key()).state == "invalid"


@pytest.mark.parametrize("http_status,message,state,live", [
    (403, None, "forbidden", None),
    (402, None, "billing", None),
    (400, CREDIT_BALANCE_TOO_LOW, "unfunded", True),
    (400, "max_tokens: Field required", "unexpected", None),
    (413, None, "unexpected", None),
])
def test_answers_that_are_not_retried(fake, http_status, message, state, live):
    key = fake.mint_key()
    fake.inject("/v1/models", http_status, message=message, count=None)
    status = check(fake, key.secret)
    assert (status.state, status.live, status.http_status, status.attempts) == (state, live, http_status, 1)
    if message:
        assert status.message == message


def test_retry_after_is_honoured(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", 429, retry_after=1, count=1)
    start = time.monotonic()
    status = check(fake, key.secret)
    elapsed = time.monotonic() - start
    assert status.state == "active" and status.attempts == 2
    assert elapsed >= 1.0  # waited what the server asked, not the (tiny) backoff
    assert [r.status for r in fake.requests[-2:]] == [429, 200]


def test_retry_after_beyond_the_cap_is_reported_not_slept(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", 429, retry_after=3600, count=None)
    start = time.monotonic()
    status = check(fake, key.secret, max_retry_after=30)
    assert time.monotonic() - start < 10  # neither the hour asked for nor the 30 s cap
    assert (status.state, status.http_status, status.error_type, status.retry_after, status.attempts) == (
        "rate_limited", 429, "rate_limit_error", 3600.0, 1)
    assert "retry after 3600 s" in status.summary()


def test_rate_limit_retries_exhausted(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", 429, count=None)
    status = check(fake, key.secret, retries=3)
    assert status.state == "rate_limited" and status.attempts == 4
    assert [r.status for r in fake.requests] == [429] * 4


def test_spend_cap_is_not_retried(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", 429, error_code="enforced_spend_limit_reached", count=None)
    status = check(fake, key.secret)
    assert (status.state, status.error_code, status.spend_cap_reached, status.retry_after, status.attempts) == (
        "rate_limited", "enforced_spend_limit_reached", True, None, 1)


@pytest.mark.parametrize("http_status,state,error_type", [
    (529, "overloaded", "overloaded_error"), (500, "server_error", "api_error"), (504, "server_error", "timeout_error"),
])
def test_server_side_failures_retried_then_reported(fake, http_status, state, error_type):
    key = fake.mint_key()
    fake.inject("/v1/models", http_status, count=None)
    status = check(fake, key.secret, retries=2)
    assert (status.state, status.live, status.error_type, status.attempts) == (state, None, error_type, 3)
    assert len(fake.requests) == 3


def test_transient_failure_then_success(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", 529, count=1)
    fake.inject("/v1/models", 500, count=1)
    status = check(fake, key.secret, retries=2)
    assert status.state == "active" and status.attempts == 3


def test_retries_zero_means_one_attempt(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", 529, count=1)
    assert check(fake, key.secret, retries=0).attempts == 1


def test_dropped_connection_is_network_error(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", drop=True, count=None)
    status = check(fake, key.secret)
    assert (status.state, status.live, status.http_status, status.attempts) == ("network_error", None, None, 3)
    assert status.error_type == "RemoteProtocolError"
    assert [r.status for r in fake.requests] == [None, None, None]


def test_timeout_is_network_error(fake):
    key = fake.mint_key()
    fake.inject("/v1/models", None, delay=2, count=None)
    status = check(fake, key.secret, timeout=0.2, retries=0)
    assert status.state == "network_error" and status.error_type == "ReadTimeout"


def test_refused_connection_is_network_error():
    status = verify_key(make_key(), base_url=f"http://127.0.0.1:{closed_port()}", retries=1, **FAST)
    assert status.state == "network_error" and status.error_type == "ConnectError" and status.attempts == 2
    assert "cannot reach http://127.0.0.1:" in (status.message or "")


def test_base_url_from_environment(fake, monkeypatch):
    key = fake.mint_key()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url + "/")
    assert verify_key(key.secret).state == "active"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")  # empty means unset: would go to the real API
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "ftp://example")
    with pytest.raises(KeyvaultError, match="ANTHROPIC_BASE_URL 'ftp://example' is not an http"):
        verify_key(key.secret)
    with pytest.raises(KeyvaultError) as caught:
        verify_key(key.secret, base_url=key.secret.reveal())  # a key pasted in the wrong place
    assert key.secret.reveal() not in str(caught.value)


def test_verify_rejects_what_it_cannot_check():
    with pytest.raises(TypeError):
        verify_key(make_key().reveal())  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError, match="OAuth access token"):
        verify_key(make_key(OAUTH_ACCESS))


def test_verify_import_does_not_pull_httpx():
    code = ("import sys, keyvault, keyvault.anthropic_api, keyvault.cli.verify, keyvault.testing.fake_anthropic; "
            "bad = [m for m in ('httpx', 'anthropic', 'boto3', 'hvac', 'google', 'grpc') if m in sys.modules]; "
            "sys.exit(', '.join(bad) or 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# -- AdminClient ------------------------------------------------------------------------------


@pytest.fixture
def admin(fake) -> Iterator[AdminClient]:
    with AdminClient(fake.admin_key, fake.base_url, **FAST) as client:
        yield client


def test_list_keys_walks_every_page(fake, admin):
    minted = [fake.mint_key(f"k{i}", "wrkspc_01A" if i % 2 else None) for i in range(7)]
    listed = list(admin.list_keys(limit=2))
    assert [k.id for k in listed] == [m.id for m in reversed(minted)]
    assert len([r for r in fake.requests if r.path == "/v1/organizations/api_keys"]) == 4
    first = listed[-1]
    assert isinstance(first, ApiKeyInfo)
    assert (first.name, first.status, first.scope) == ("k0", "active", "workspace")
    assert first.partial_key_hint == minted[0].hint
    assert first.workspace_id == fake.default_workspace_id  # from scope, though the deprecated field is null
    assert first.created_at.tzinfo is not None and abs(first.created_at - minted[0].created_at) < timedelta(seconds=1)
    assert first.created_by is not None and first.created_by.id == fake.user_id
    assert first.principal is not None and first.principal.type == "user_actor"
    assert {k.id for k in admin.list_keys(workspace_id="wrkspc_01A", limit=1)} == {m.id for m in minted[1::2]}


def test_list_keys_walks_backward(fake, admin):
    minted = [fake.mint_key(f"k{i}") for i in range(6)]
    back = list(admin.list_keys(before_id=minted[0].id, limit=2))
    assert [k.id for k in back] == [m.id for m in minted[1:]]  # nearest first, toward the newest
    forward = list(admin.list_keys(after_id=minted[4].id, limit=2))
    assert [k.id for k in forward] == [m.id for m in reversed(minted[:4])]
    with pytest.raises(KeyvaultError):
        list(admin.list_keys(after_id="a", before_id="b"))


def test_filters_and_expiry(fake, admin):
    expiring = fake.mint_key("exp", expires_at=datetime.now(timezone.utc) - timedelta(days=1))
    fake.mint_key("live")
    got = list(admin.list_keys(status="expired"))
    assert [k.id for k in got] == [expiring.id]
    assert got[0].expires_at is not None and got[0].expires_at < datetime.now(timezone.utc)
    with pytest.raises(ApiError, match=r"status: Input should be .*\(400 invalid_request_error, request req_"):
        list(admin.list_keys(status="revoked"))  # type: ignore[arg-type]


def test_get_update_and_revoke(fake, admin):
    key = fake.mint_key("prod-api-server-2026-11")
    assert admin.get_key(key.id).name == "prod-api-server-2026-11"
    assert admin.update(key.id, name="renamed").name == "renamed"
    assert admin.set_status(key.id, "inactive").status == "inactive"
    assert verify_key(key.secret, base_url=fake.base_url).state == "invalid"
    assert admin.set_status(key.id, "active").status == "active"
    assert verify_key(key.secret, base_url=fake.base_url).state == "active"
    assert admin.set_status(key.id, "archived").status == "archived"
    with pytest.raises(ApiError) as caught:
        admin.set_status(key.id, "active")
    assert caught.value.status == 400 and caught.value.error_type == "invalid_request_error"
    assert f"rejected the request to set API key {key.id} to active" in str(caught.value)
    with pytest.raises(KeyvaultError, match="sets active, inactive or archived"):
        admin.update(key.id, status="expired")
    with pytest.raises(KeyvaultError, match="is not an API key id"):
        admin.get_key("../me")


def test_unknown_key_id_is_a_404_error(fake, admin):
    with pytest.raises(ApiError) as caught:
        admin.get_key("apikey_01DoesNotExist")
    error = caught.value
    assert (error.status, error.error_type) == (404, "not_found_error")
    assert error.request_id == fake.requests[-1].request_id
    assert str(error) == (f"Admin API: cannot read API key apikey_01DoesNotExist: not found "
                          f"(404 not_found_error, request {error.request_id})")


def test_find_key_by_hint(fake, admin):
    fake.mint_key("other")
    key = fake.mint_key("mine", "wrkspc_01A")
    found = admin.find_key(key.secret)
    assert found.id == key.id and found.partial_key_hint == key.secret.hint
    with pytest.raises(KeyMatchError, match="no API key has the hint") as caught:
        admin.find_key(make_key())
    assert caught.value.candidates == []
    with pytest.raises(KeyMatchError, match="in workspace wrkspc_01B"):
        admin.find_key(key.secret, workspace_id="wrkspc_01B")
    with pytest.raises(KeyFormatError):
        admin.find_key(fake.admin_key)


def twin(secret: Secret) -> Secret:
    """Another key with the same hint: same prefix, first 3 and last 4 characters."""
    value = secret.reveal()
    middle = make_key().reveal()[16:-4]
    return parse_key(value[:16] + middle + value[-4:])


def test_find_key_ambiguity_is_explained_and_narrowed(fake, admin):
    key = fake.mint_key("prod", "wrkspc_01Prod")
    other = fake.mint_key("staging", "wrkspc_01Staging", secret=twin(key.secret))
    assert other.hint == key.hint and other.secret != key.secret
    with pytest.raises(KeyMatchError) as caught:
        admin.find_key(key.secret)
    message = str(caught.value)
    assert f"2 API keys share the hint {key.hint}" in message
    assert key.id in message and other.id in message and "pass workspace_id or status" in message
    assert {c.id for c in caught.value.candidates} == {key.id, other.id}
    assert key.secret.reveal() not in message and other.secret.reveal() not in message
    assert admin.find_key(key.secret, workspace_id="wrkspc_01Prod").id == key.id
    fake.set_status(other.id, "inactive")
    assert admin.find_key(key.secret, status="active").id == key.id


def test_refused_admin_key_message(fake):
    bad = make_admin_key()
    with AdminClient(bad, fake.base_url) as client, pytest.raises(ApiError) as caught:
        client.organization()
    error = caught.value
    assert (error.status, error.error_type) == (401, "authentication_error")
    assert str(error).startswith(f"Admin API refused the admin key {bad.hint} (401 authentication_error, request req_")
    assert bad.reveal() not in str(error) and bad.reveal() not in repr(error.__dict__)


def test_workspace_api_key_on_admin_api_is_explained(fake):
    workspace_key = fake.mint_key("ws")
    with AdminClient(workspace_key.secret, fake.base_url) as client, pytest.raises(ApiError) as caught:
        list(client.list_keys())
    assert caught.value.status == 403
    assert "workspace API keys cannot use the Admin API" in str(caught.value)
    org_key = fake.mint_key("org", org_scoped=True)
    with AdminClient(org_key.secret, fake.base_url) as client:
        assert client.organization().id == fake.organization_id


def test_admin_key_from_environment(fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", fake.admin_key.reveal() + "\n")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    with AdminClient() as client:
        assert client.organization().name == "Fake Organization"
        assert fake.admin_key.reveal() not in repr(client)
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY")
    with pytest.raises(KeyvaultError, match="ANTHROPIC_ADMIN_KEY"):
        AdminClient()
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-short")
    with pytest.raises(KeyFormatError, match="^ANTHROPIC_ADMIN_KEY: "):
        AdminClient()
    with pytest.raises(KeyFormatError, match="Admin key"):
        AdminClient(make_key(OAUTH_ACCESS))


def test_admin_client_from_source(fake, monkeypatch):
    require_env_backend()
    monkeypatch.setenv("KV_TEST_ADMIN", fake.admin_key.reveal())
    with admin_client_from("env://KV_TEST_ADMIN", fake.base_url) as client:
        assert client.organization().id == fake.organization_id
    monkeypatch.setenv("KV_TEST_API", fake.mint_key().secret.reveal())
    with pytest.raises(KeyFormatError, match="an Admin key"):
        admin_client_from("env://KV_TEST_API", fake.base_url)


def test_admin_retries_then_succeeds_or_explains(fake, admin):
    fake.inject("/v1/organizations/me", 429, retry_after=0, count=1)
    fake.inject("/v1/organizations/me", 529, count=1)
    assert admin.organization().id == fake.organization_id
    fake.inject("/v1/organizations/api_keys", 529, count=None)
    with pytest.raises(ApiError, match=r"failed to list API keys \(529 overloaded_error, request req_\w+\); "):
        list(admin.list_keys())
    fake.clear_faults()
    fake.inject("/v1/organizations/api_keys", 429, retry_after=120, count=None)
    with pytest.raises(ApiError, match=r"rate limited .*retry after 120 s") as caught:
        list(admin.list_keys())
    assert caught.value.retry_after == 120.0
    fake.clear_faults()
    fake.inject("/v1/organizations", drop=True, count=None)
    with pytest.raises(ApiError, match="cannot reach the Admin API at .* to read the organization"):
        admin.organization()


def test_api_key_info_parses_rfc3339_variants():
    base = {"id": "apikey_01x", "type": "api_key", "name": "n", "status": "active", "partial_key_hint": None,
            "created_by": None, "principal": None, "scope": {"type": "organization"}, "workspace_id": None}
    for text, micro in (("2024-10-30T23:58:27Z", 0), ("2024-10-30T23:58:27.4Z", 400000),
                        ("2024-10-30T23:58:27.427722123+00:00", 427722)):
        info = ApiKeyInfo.from_api({**base, "created_at": text, "expires_at": text})
        assert info.created_at == datetime(2024, 10, 30, 23, 58, 27, micro, tzinfo=timezone.utc)
        assert info.scope == "organization" and info.workspace_id is None
    with pytest.raises(ApiError, match="cannot read"):
        ApiKeyInfo.from_api({"id": "x"})
