"""FakeAnthropic: the Anthropic API on loopback, for your tests.

A real HTTP server on 127.0.0.1 (ephemeral port) that answers the way the real API does for
what keyvault (and most apps) touch: key verification, the Admin API's API-key endpoints, and
a minimal Messages endpoint, so the official `anthropic` SDK works against it unchanged.

    from keyvault.testing import FakeAnthropic

    with FakeAnthropic() as fake:                      # or the pytest fixture `fake_anthropic`
        key = fake.mint_key("prod-api-server")         # plays the Console: id + Secret, once
        client = anthropic.Anthropic(api_key=key.secret.reveal(), base_url=fake.base_url)
        client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
        fake.set_status(key.id, "inactive")            # now the same call raises AuthenticationError
        fake.inject("/v1/models", status=429, retry_after=2, count=1)   # next call is rate limited
        assert fake.requests[-1].key_id == key.id      # the log holds ids and hints, never values

What it serves (shapes from the API reference and the `anthropic` SDK's types):

- `GET /v1/models`, `GET /v1/models/{id}`: a realistic catalogue, paginated like the real one.
- `POST /v1/messages`: a minimal valid Message (`fake.reply_text`), input validation, usage.
- `GET /v1/organizations/me`; `GET /v1/organizations/api_keys` (`after_id`, `before_id`, `limit`
  1-1000 default 20, `status`, `workspace_id`, `created_by_user_id`; envelope `data`,
  `has_more`, `first_id`, `last_id`); `GET` and `POST /v1/organizations/api_keys/{id}`
  (`name`, `status` active|inactive|archived).
- Authentication by `x-api-key` (raw HTTP, `anthropic-version: 2023-06-01`) or
  `Authorization: Bearer` (SDK 2.x, `anthropic-version: 2026-10-21`). Unknown, inactive,
  archived and expired keys get 401 `authentication_error` (`inactive_status=404` makes disabled
  keys answer 404 instead, as some clients have observed). The Admin API takes an admin key, or a
  principal-bound organization-scoped API key as the docs allow; a workspace key gets 403
  `permission_error`; an admin key on the Claude API gets 401.
- Every error is `{"type":"error","error":{"type":...,"message":...},"request_id":"req_..."}`
  with the `request-id` header; authenticated responses carry `anthropic-organization-id`,
  Claude API responses for workspace keys carry `anthropic-workspace-id`.
- Faults: `fake.inject(path_prefix, status=429|529|500|..., retry_after=s, delay=s, drop=True,
  count=N, method=...)` for the next N matching requests (count=None: until removed).

Where the real API is undocumented the fake makes a choice and says so in a comment (`assumed:`):
list order (newest first), cursor errors, archived keys being final, message wordings.
Not covered: streaming, tools, batches, files, count_tokens, workspaces/users/invites endpoints,
OAuth/WIF tokens, rate limiting by itself (inject it), the org's active-key limits.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from keyvault.keys import ADMIN, API, Secret, fingerprint, hint

__all__ = [
    "CREDIT_BALANCE_TOO_LOW",
    "FakeAnthropic",
    "FakeKey",
    "Fault",
    "MintedKey",
    "RecordedRequest",
]

CREDIT_BALANCE_TOO_LOW = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)

# error.type for each status, as the errors page lists them.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {
    400: "Invalid request",
    401: "invalid x-api-key",
    402: "There's an issue with your billing or payment information.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not Found",
    409: "Conflict",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your per-minute rate limit.",
    500: "Internal server error",
    504: "Request timed out",
    529: "Overloaded",
}

_ID_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # base58
KEY_STATUSES = ("active", "inactive", "archived", "expired")
SETTABLE_STATUSES = ("active", "inactive", "archived")

# A catalogue in the shape of GET /v1/models (newest first, as the real list is).
MODELS: tuple[dict[str, Any], ...] = (
    {"id": "claude-opus-4-6", "display_name": "Claude Opus 4.6", "created_at": "2026-02-05T00:00:00Z",
     "line": "opus", "max_input_tokens": 200000, "max_tokens": 128000},
    {"id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6", "created_at": "2026-02-17T00:00:00Z",
     "line": "sonnet", "max_input_tokens": 200000, "max_tokens": 64000},
    {"id": "claude-opus-4-5-20251101", "display_name": "Claude Opus 4.5", "created_at": "2025-11-24T00:00:00Z",
     "line": "opus", "max_input_tokens": 200000, "max_tokens": 64000},
    {"id": "claude-haiku-4-5-20251001", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-15T00:00:00Z",
     "line": "haiku", "max_input_tokens": 200000, "max_tokens": 64000},
    {"id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z",
     "line": "sonnet", "max_input_tokens": 200000, "max_tokens": 64000},
)
MODEL_ALIASES = {"claude-opus-4-5": "claude-opus-4-5-20251101", "claude-haiku-4-5": "claude-haiku-4-5-20251001",
                 "claude-sonnet-4-5": "claude-sonnet-4-5-20250929"}


def new_id(prefix: str) -> str:
    """Ids shaped like the real ones: `apikey_01` + 22 base58 characters."""
    return prefix + "01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class FakeKey:
    """The fake's record of a key: what the Admin API knows (never the value: a fingerprint)."""

    id: str
    name: str
    partial_key_hint: str
    fingerprint: str
    created_at: datetime
    seq: int
    admin: bool = False
    expires_at: datetime | None = None
    scope_type: str = "workspace"  # workspace | organization
    workspace_id: str | None = None  # the scope's workspace (the default one included)
    default_workspace: bool = False
    created_by: dict[str, str] | None = None
    principal: dict[str, str] | None = None
    stored_status: str = "active"

    @property
    def status(self) -> str:
        """`expired` once expires_at has passed, unless already inactive or archived."""
        if self.stored_status == "active" and self.expires_at is not None and self.expires_at <= _utcnow():
            return "expired"
        return self.stored_status

    def to_api(self) -> dict[str, Any]:
        """The key object exactly as GET /v1/organizations/api_keys/{id} returns it."""
        if self.scope_type == "organization":
            scope: dict[str, Any] = {"type": "organization"}
        else:
            scope = {"type": "workspace", "workspace_id": self.workspace_id}
        return {
            "id": self.id,
            "type": "api_key",
            "name": self.name,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "created_by": dict(self.created_by) if self.created_by else None,
            "expires_at": rfc3339(self.expires_at) if self.expires_at else None,
            "partial_key_hint": self.partial_key_hint,
            "principal": dict(self.principal) if self.principal else None,
            "scope": scope,
            # deprecated field: null for Default-Workspace keys and organization-scoped keys
            "workspace_id": None if self.scope_type == "organization" or self.default_workspace
            else self.workspace_id,
        }


@dataclass(frozen=True)
class MintedKey:
    """What the Console shows once when a key is created: its id and its value."""

    id: str
    secret: Secret
    name: str
    workspace_id: str | None  # None for an organization-scoped key
    created_at: datetime
    expires_at: datetime | None = None
    admin: bool = False

    @property
    def hint(self) -> str:
        return self.secret.hint


@dataclass
class Fault:
    """An injected failure for requests whose path starts with `path_prefix`."""

    path_prefix: str
    status: int | None = 429
    retry_after: float | str | None = None
    count: int | None = 1  # None: every matching request until removed
    delay: float = 0.0
    drop: bool = False
    method: str | None = None
    error_type: str | None = None
    message: str | None = None
    error_code: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return path.startswith(self.path_prefix)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. Holds ids and hints, never a key value."""

    method: str
    path: str
    query: dict[str, str]
    status: int | None  # None when the connection was dropped
    request_id: str | None
    auth_scheme: str | None  # "x-api-key" | "bearer" | None
    key_id: str | None  # the authenticated key, None when unknown
    key_hint: str | None  # hint of the presented credential, also for unknown ones
    anthropic_version: str | None
    fault: bool = False
    at: float = field(default_factory=time.time)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str | None = None, error_type: str | None = None,
                 headers: dict[str, str] | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.message = message or DEFAULT_MESSAGES.get(status, "Error")
        self.headers = headers or {}
        self.details = details


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeAnthropic


class FakeAnthropic:
    """The Anthropic API on 127.0.0.1: see the module docstring for what it covers."""

    def __init__(self, *, organization_name: str = "Fake Organization", inactive_status: int = 401,
                 reply_text: str = "Hello from FakeAnthropic.") -> None:
        if inactive_status not in (401, 404):
            raise ValueError("inactive_status is 401 (the documented answer) or 404")
        self.organization_id = str(uuid.uuid4())
        self.organization_name = organization_name
        self.default_workspace_id = new_id("wrkspc_")
        self.user_id = new_id("user_")
        self.inactive_status = inactive_status
        self.reply_text = reply_text
        self.keys: dict[str, FakeKey] = {}  # API keys: what /v1/organizations/api_keys lists
        self.admin_keys: dict[str, FakeKey] = {}  # Admin keys: not listed by the Admin API
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.errors: list[str] = []  # bugs inside the fake's handlers (a test should assert empty)
        self._by_fingerprint: dict[str, FakeKey] = {}
        self._seq = 0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        minted_admin = self.mint_key("fake-admin", admin=True)
        self.admin_key: Secret = minted_admin.secret  # pre-minted: the Admin API works out of the box
        self.admin_key_id = minted_admin.id

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeAnthropic:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FakeAnthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on an injected delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What ANTHROPIC_BASE_URL (or the SDK's base_url=) is set to."""
        return f"http://127.0.0.1:{self.port}"

    def env(self, key: MintedKey | None = None) -> dict[str, str]:
        """Environment entries pointing a client (or a subprocess) at the fake."""
        entries = {"ANTHROPIC_BASE_URL": self.base_url}
        if key is not None:
            entries["ANTHROPIC_ADMIN_KEY" if key.admin else "ANTHROPIC_API_KEY"] = key.secret.reveal()
        return entries

    # -- the Console --------------------------------------------------------------------

    def mint_key(self, name: str = "test-key", workspace_id: str | None = None, *, admin: bool = False,
                 expires_at: datetime | None = None, status: str = "active", org_scoped: bool = False,
                 principal: str | None = "user", created_by_user_id: str | None = None,
                 secret: Secret | None = None) -> MintedKey:
        """Create a key the way the Console does and return its id and value (shown once).

        workspace_id None means the Default Workspace (the key object's deprecated
        `workspace_id` is then null, `scope.workspace_id` is the default workspace's id).
        `org_scoped=True` makes a principal-bound key with `scope: {"type": "organization"}`
        (these may call the Admin API). `principal` is "user", "service_account" or None
        (a legacy workspace key). `secret` mints a given value (e.g. to make two keys whose
        hints collide).
        """
        from keyvault.testing.keygen import make_key

        if status not in SETTABLE_STATUSES:
            raise ValueError(f"status must be one of {SETTABLE_STATUSES}")
        if org_scoped and principal is None:
            raise ValueError("only a principal-bound key (user or service account) can be organization-scoped")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        family = ADMIN if admin else API
        value = secret if secret is not None else make_key(family)
        if value.family is not family:
            raise ValueError(f"secret is {value.family.label!r}, expected {family.label!r}")
        creator = created_by_user_id or self.user_id
        if principal == "user":
            principal_obj: dict[str, str] | None = {"type": "user_actor", "user_id": creator}
        elif principal == "service_account":
            principal_obj = {"type": "service_account_actor", "service_account_id": new_id("svac_")}
        elif principal is None:
            principal_obj = None
        else:
            raise ValueError("principal is 'user', 'service_account' or None")
        with self._lock:
            self._seq += 1
            now = _utcnow()
            record = FakeKey(
                id=new_id("apikey_"),
                name=name,
                partial_key_hint=value.hint,
                fingerprint=value.fingerprint,
                created_at=now,
                seq=self._seq,
                admin=admin,
                expires_at=expires_at,
                scope_type="organization" if org_scoped else "workspace",
                workspace_id=None if org_scoped else (workspace_id or self.default_workspace_id),
                default_workspace=not org_scoped and workspace_id is None,
                created_by={"id": creator, "type": "user"},
                principal=principal_obj,
                stored_status=status,
            )
            if value.fingerprint in self._by_fingerprint:
                raise ValueError("this key value was already minted")
            (self.admin_keys if admin else self.keys)[record.id] = record
            self._by_fingerprint[value.fingerprint] = record
        return MintedKey(record.id, value, name, record.workspace_id, now, expires_at, admin)

    def key(self, key_id: str) -> FakeKey:
        with self._lock:
            found = self.keys.get(key_id) or self.admin_keys.get(key_id)
        if found is None:
            raise KeyError(key_id)
        return found

    def set_status(self, key_id: str, status: str) -> None:
        """What a Console user does: activate, deactivate or archive a key."""
        if status not in SETTABLE_STATUSES:
            raise ValueError(f"status must be one of {SETTABLE_STATUSES}")
        with self._lock:
            self.key(key_id).stored_status = status

    # -- faults ---------------------------------------------------------------------------

    def inject(self, path_prefix: str, status: int | None = 429, *, retry_after: float | str | None = None,
               count: int | None = 1, delay: float = 0.0, drop: bool = False, method: str | None = None,
               error_type: str | None = None, message: str | None = None,
               error_code: str | None = None) -> Fault:
        """Fail the next `count` requests whose path starts with `path_prefix`.

        status: the error to answer (body and error.type as the real API's), or None to
        answer normally after `delay`. drop: close the socket without any response.
        error_code fills `error.details.error_code` (e.g. "enforced_spend_limit_reached").
        """
        fault = Fault(path_prefix, status, retry_after, count, delay, drop, method, error_type, message, error_code)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    # -- request handling (called from server threads) ---------------------------------

    def _identify(self, headers: Any) -> tuple[str | None, str | None, FakeKey | None]:
        """(scheme, hint of what was presented, the matching record or None)."""
        api_key = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if api_key:
            scheme, value = "x-api-key", api_key
        elif authorization and authorization[:7].lower() == "bearer ":
            scheme, value = "bearer", authorization[7:].strip()
        else:
            return None, None, None
        with self._lock:
            record = self._by_fingerprint.get(fingerprint(value))
        return scheme, hint(value), record

    def _authenticate(self, scheme: str | None, record: FakeKey | None, admin_api: bool) -> FakeKey:
        if scheme is None:
            raise _HTTPError(401, "x-api-key header is required")
        invalid = "invalid x-api-key" if scheme == "x-api-key" else "Invalid bearer token"
        if record is None:
            raise _HTTPError(401, invalid)
        if record.status != "active":
            # inactive, archived, expired: the docs' 401 "revoked or expired"
            raise _HTTPError(self.inactive_status, invalid if self.inactive_status == 401 else None)
        if admin_api:
            if record.admin or (record.scope_type == "organization" and record.principal is not None):
                return record
            # assumed: the docs say workspace keys do not work on the Admin API, not how they fail
            raise _HTTPError(403, "This API key is scoped to a workspace and cannot be used with the Admin API. "
                                  "Use an Admin API key (sk-ant-admin01-...).")
        if record.admin:
            # assumed: an Admin key cannot call the Claude API; answered like an unknown key
            raise _HTTPError(401, invalid)
        return record

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes | None,
               headers: Any, scheme: str | None, record: FakeKey | None) -> tuple[int, Any, dict[str, str]]:
        admin_api = path.startswith("/v1/organizations")
        known = path in ("/v1/models", "/v1/messages") or path.startswith("/v1/models/") or admin_api
        if not known:
            raise _HTTPError(404, "Not Found")
        if not headers.get("anthropic-version"):
            raise _HTTPError(400, "anthropic-version: header is required")
        key = self._authenticate(scheme, record, admin_api)
        extra: dict[str, str] = {}
        if not admin_api and key.scope_type == "workspace" and key.workspace_id:
            extra["anthropic-workspace-id"] = key.workspace_id
        if not admin_api:
            extra.update(self._ratelimit_headers())
        if path == "/v1/models":
            self._allow(method, "GET")
            return 200, self._models_page(query), extra
        if path.startswith("/v1/models/"):
            self._allow(method, "GET")
            model = self._model(path[len("/v1/models/"):])
            if model is None:
                raise _HTTPError(404, f"model: {path[len('/v1/models/'):]}")
            return 200, model, extra
        if path == "/v1/messages":
            self._allow(method, "POST")
            return 200, self._message(body), extra
        if path == "/v1/organizations/me":
            self._allow(method, "GET")
            return 200, {"id": self.organization_id, "type": "organization", "name": self.organization_name}, extra
        if path == "/v1/organizations/api_keys":
            self._allow(method, "GET")
            return 200, self._list_keys(query), extra
        if path.startswith("/v1/organizations/api_keys/"):
            key_id = path[len("/v1/organizations/api_keys/"):]
            with self._lock:
                target = self.keys.get(key_id)
            if target is None or "/" in key_id:
                # assumed wording; the status and error.type are the documented ones
                raise _HTTPError(404, f"API key not found: {key_id}")
            if method == "GET":
                return 200, target.to_api(), extra
            self._allow(method, "POST")
            return 200, self._update_key(target, body), extra
        raise _HTTPError(404, "Not Found")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise _HTTPError(405, "Method Not Allowed", "invalid_request_error")

    def _ratelimit_headers(self) -> dict[str, str]:
        reset = rfc3339(_utcnow().replace(microsecond=0) + timedelta(seconds=60)).replace(".000000", "")
        return {
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "3999",
            "anthropic-ratelimit-requests-reset": reset,
        }

    # -- endpoints -------------------------------------------------------------------------

    @staticmethod
    def _limit(query: dict[str, str]) -> int:
        raw = query.get("limit")
        if raw is None:
            return 20
        try:
            limit = int(raw)
        except ValueError:
            message = "limit: Input should be a valid integer, unable to parse string as an integer"
            raise _HTTPError(400, message) from None
        if limit < 1:
            raise _HTTPError(400, "limit: Input should be greater than or equal to 1")
        if limit > 1000:
            raise _HTTPError(400, "limit: Input should be less than or equal to 1000")
        return limit

    @classmethod
    def _page(cls, items: list[dict[str, Any]], order: list[str], query: dict[str, str]) -> dict[str, Any]:
        """Cursor pagination over `items` (already filtered), positioned in the full `order`."""
        limit = cls._limit(query)
        after, before = query.get("after_id"), query.get("before_id")
        if after and before:
            # assumed wording
            raise _HTTPError(400, "Only one of after_id and before_id may be given")
        position = {item_id: i for i, item_id in enumerate(order)}
        for name, cursor in (("after_id", after), ("before_id", before)):
            if cursor is not None and cursor not in position:
                # assumed: an unknown cursor is a 400 naming the parameter
                raise _HTTPError(400, f"{name}: no object with id {cursor!r}")
        if before is not None:
            earlier = [it for it in items if position[it["id"]] < position[before]]
            page = earlier[-limit:]
            has_more = len(earlier) > limit
        else:
            later = [it for it in items if after is None or position[it["id"]] > position[after]]
            page = later[:limit]
            has_more = len(later) > limit
        return {
            "data": page,
            "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }

    @staticmethod
    def _model_object(entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "model",
            "id": entry["id"],
            "display_name": entry["display_name"],
            "created_at": entry["created_at"],
            "lifecycle": "active",
            "line": entry["line"],
            "deprecated_at": None,
            "retires_at": None,
            "max_input_tokens": entry["max_input_tokens"],
            "max_tokens": entry["max_tokens"],
        }

    def _model(self, model_id: str) -> dict[str, Any] | None:
        model_id = MODEL_ALIASES.get(model_id, model_id)
        for entry in MODELS:
            if entry["id"] == model_id:
                return self._model_object(entry)
        return None

    def _models_page(self, query: dict[str, str]) -> dict[str, Any]:
        items = [self._model_object(m) for m in MODELS]
        return self._page(items, [m["id"] for m in items], query)

    def _list_keys(self, query: dict[str, str]) -> dict[str, Any]:
        status = query.get("status")
        if status is not None and status not in KEY_STATUSES:
            raise _HTTPError(400, "status: Input should be 'active', 'archived', 'expired' or 'inactive'")
        workspace_id = query.get("workspace_id")
        created_by = query.get("created_by_user_id")
        with self._lock:
            # assumed: newest first (the docs do not state the order of this list)
            ordered = sorted(self.keys.values(), key=lambda k: k.seq, reverse=True)
            objects = [k.to_api() for k in ordered]
        selected = [
            obj for obj in objects
            if (status is None or obj["status"] == status)
            and (workspace_id is None or obj["scope"].get("workspace_id") == workspace_id)
            and (created_by is None or (obj["created_by"] or {}).get("id") == created_by)
        ]
        return self._page(selected, [obj["id"] for obj in objects], query)

    @staticmethod
    def _json_body(body: bytes | None) -> dict[str, Any]:
        if not body:
            raise _HTTPError(400, "Request body is required")  # assumed wording
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _HTTPError(400, "There was an error parsing the body of your request as JSON") from None
        if not isinstance(data, dict):
            raise _HTTPError(400, "Input should be a valid dictionary")
        return data

    def _update_key(self, target: FakeKey, body: bytes | None) -> dict[str, Any]:
        data = self._json_body(body) if body else {}
        for name in data:
            if name not in ("name", "status"):
                raise _HTTPError(400, f"{name}: Extra inputs are not permitted")
        new_name = data.get("name")
        status = data.get("status")
        if new_name is not None and (not isinstance(new_name, str) or not new_name.strip()):
            raise _HTTPError(400, "name: Input should be a valid, non-empty string")
        if new_name is not None and len(new_name) > 500:
            raise _HTTPError(400, "name: String should have at most 500 characters")
        if status is not None and status not in SETTABLE_STATUSES:
            raise _HTTPError(400, "status: Input should be 'active', 'inactive' or 'archived'")
        with self._lock:
            if status is not None and status != target.stored_status:
                if target.stored_status == "archived":
                    # assumed: the docs treat archiving as final
                    raise _HTTPError(400, "Archived API keys cannot be modified.")
                if target.status == "expired" and status == "active":
                    raise _HTTPError(400, "Expired API keys cannot be reactivated.")  # assumed wording
                target.stored_status = status
            if new_name is not None:
                target.name = new_name
            return target.to_api()

    def _message(self, body: bytes | None) -> dict[str, Any]:
        data = self._json_body(body)
        for required in ("model", "max_tokens", "messages"):
            if required not in data:
                raise _HTTPError(400, f"{required}: Field required")
        model = data["model"]
        if not isinstance(model, str) or self._model(model) is None:
            raise _HTTPError(404, f"model: {model}")
        max_tokens = data["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _HTTPError(400, "max_tokens: Input should be greater than or equal to 1")
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "messages: at least one message is required")
        if data.get("stream"):
            raise _HTTPError(400, "stream: FakeAnthropic does not implement streaming")
        prompt = json.dumps(messages)
        words = self.reply_text.split()[:max_tokens]
        return {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": " ".join(words)}],
            "stop_reason": "end_turn" if len(words) == len(self.reply_text.split()) else "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, len(prompt) // 4),
                "output_tokens": len(words),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive replies are small: without this each waits ~40 ms for an ACK
    server: _Server
    server_version = "FakeAnthropic"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        scheme, presented_hint, record = fake._identify(self.headers)
        request_id = new_id("req_")
        fault = fake._take_fault(method, path)
        if fault is not None and fault.delay:
            fake._stopping.wait(fault.delay)
            if fake._stopping.is_set():
                self.close_connection = True
                return
        # decide the answer, log it, then send it: a client that reads the response and then
        # looks at fake.requests always finds its request there
        answer: tuple[int, Any, dict[str, str], FakeKey | None] | None
        if fault is not None and fault.drop:
            answer = None
        elif fault is not None and fault.status is not None:
            headers: dict[str, str] = {}
            if fault.retry_after is not None:
                headers["retry-after"] = str(fault.retry_after)
            details = {"error_code": fault.error_code} if fault.error_code else None
            error = _HTTPError(fault.status, fault.message, fault.error_type, headers, details)
            answer = (error.status, self._error_body(error, request_id), error.headers, record)
        else:
            try:
                status, payload, headers = fake._route(method, path, query, body, self.headers, scheme, record)
                answer = (status, payload, headers, record)
            except _HTTPError as exc:
                answer = (exc.status, self._error_body(exc, request_id), exc.headers,
                          record if exc.status != 401 else None)
            except Exception as exc:  # a bug in the fake: answer like the API would, keep a note
                fake.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                answer = (500, self._error_body(_HTTPError(500), request_id), {}, None)
        with fake._lock:
            fake.requests.append(RecordedRequest(
                method=method, path=path, query=query, status=answer[0] if answer else None,
                request_id=request_id if answer else None,
                auth_scheme=scheme, key_id=record.id if record is not None else None, key_hint=presented_hint,
                anthropic_version=self.headers.get("anthropic-version"), fault=fault is not None,
            ))
        if answer is None:
            self.close_connection = True
            try:
                self.connection.shutdown(2)  # socket.SHUT_RDWR: no status line, no body
            except OSError:
                pass
            return
        self._send_json(answer[0], answer[1], request_id, answer[2], answer[3])

    @staticmethod
    def _error_body(exc: _HTTPError, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"type": exc.error_type, "message": exc.message}
        if exc.details:
            error["details"] = exc.details
        return {"type": "error", "error": error, "request_id": request_id}

    def _send_json(self, status: int, payload: Any, request_id: str, headers: dict[str, str],
                   record: FakeKey | None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", request_id)
        if record is not None and record.status == "active":
            self.send_header("anthropic-organization-id", self.server.fake.organization_id)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
