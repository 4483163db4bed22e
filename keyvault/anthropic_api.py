"""The few Anthropic API calls keyvault makes: verify a key, and manage keys via the Admin API.

The official SDK takes over a second to import, so these calls use `httpx` directly, imported
inside the functions that send requests: importing this module costs only the standard library.

- `verify_key(secret)` makes the cheapest authenticated call (GET /v1/models for an API key,
  GET /v1/organizations/me for an Admin key: no tokens spent) and returns a `KeyStatus`.
- `AdminClient` lists keys (every page), gets one, finds a key's id from its value by the
  Admin API's `partial_key_hint`, and sets a key's status (revoke = inactive, then archived).
  The Admin API cannot create or delete keys: they are minted in the Console only.

Both retry 429, 5xx, 529 and network errors with exponential backoff and full jitter,
honouring `retry-after` up to `max_retry_after` seconds (a longer wait is reported, not slept).
Results branch on `error.type`, never on message text (one documented exception, see
`_classify`). Nothing here puts a key value in a message, a log or an exception.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote

from keyvault import __version__
from keyvault.errors import ApiError, KeyFormatError, KeyMatchError, KeyvaultError
from keyvault.keys import ADMIN, API, Secret, parse_key

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = [
    "AdminClient",
    "ApiKeyInfo",
    "KeyStatus",
    "OrganizationInfo",
    "admin_client_from",
    "resolve_base_url",
    "verify_key",
]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
USER_AGENT = f"keyvault/{__version__}"
ADMIN_KEY_ENV = "ANTHROPIC_ADMIN_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
SPEND_CAP_CODE = "enforced_spend_limit_reached"

State = Literal[
    "active", "unfunded", "invalid", "forbidden", "billing", "rate_limited", "overloaded",
    "server_error", "network_error", "unexpected",
]
KeyStatusName = Literal["active", "inactive", "archived", "expired"]

# error.type -> state: the documented contract. The status code is the fallback for bodies
# that are not the API's JSON (a proxy's HTML 502, an empty 503).
_BY_ERROR_TYPE: dict[str, State] = {
    "authentication_error": "invalid",
    "not_found_error": "invalid",  # on the verify endpoints: a disabled or unknown key
    "permission_error": "forbidden",
    "billing_error": "billing",
    "rate_limit_error": "rate_limited",
    "overloaded_error": "overloaded",
    "api_error": "server_error",
    "timeout_error": "server_error",
}
_BY_STATUS: dict[int, State] = {
    401: "invalid", 404: "invalid", 402: "billing", 403: "forbidden", 429: "rate_limited", 529: "overloaded",
}
_LIVE: dict[str, bool] = {"active": True, "unfunded": True, "invalid": False}


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def resolve_base_url(base_url: str | None = None) -> str:
    """The parameter, else ANTHROPIC_BASE_URL (empty means unset), else the real API."""
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if not re.match(r"https?://[^/\s]+", url):
        origin = "base_url" if base_url else BASE_URL_ENV
        shown = "(a key, not a URL: value not shown)" if "sk-ant-" in url else repr(url)
        raise KeyvaultError(f"{origin} {shown} is not an http(s):// URL (expected e.g. {DEFAULT_BASE_URL})")
    return url.rstrip("/")


def _parse_retry_after(value: str | None) -> float | None:
    """`retry-after` in seconds, or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # rare form; the module costs ~7 ms to import

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None, str | None]:
    """(error.type, error.message, error.details.error_code, request_id) from an error body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, None, response.headers.get("request-id")
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    request_id = body.get("request_id") or response.headers.get("request-id")
    return (
        str(error["type"]) if error.get("type") else None,
        str(error["message"]) if error.get("message") is not None else None,
        str(code) if code else None,
        str(request_id) if request_id else None,
    )


class _Retry(NamedTuple):
    """The retry policy: attempts = retries + 1; delays shrink in tests through the parameters."""

    retries: int = 2
    backoff: float = 0.5  # first delay cap; doubles per attempt (full jitter: uniform(0, cap))
    max_backoff: float = 8.0
    max_retry_after: float = 30.0  # a longer retry-after is returned to the caller, not slept

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.backoff * (2**attempt)))


class _Outcome(NamedTuple):
    response: httpx.Response | None
    error: Exception | None
    attempts: int


def _send(client: httpx.Client, method: str, url: str, policy: _Retry, **kwargs: Any) -> _Outcome:
    import httpx

    attempt = 0
    while True:
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:  # connect, timeout, connection dropped mid-way
            if attempt >= policy.retries:
                return _Outcome(None, exc, attempt + 1)
            time.sleep(policy.delay(attempt))
            attempt += 1
            continue
        if not _retryable(response.status_code) or attempt >= policy.retries:
            return _Outcome(response, None, attempt + 1)
        _, _, code, _ = _error_fields(response)
        if code == SPEND_CAP_CODE:  # the monthly cap: nothing changes before next month
            return _Outcome(response, None, attempt + 1)
        wait = _parse_retry_after(response.headers.get("retry-after"))
        if wait is not None and wait > policy.max_retry_after:
            return _Outcome(response, None, attempt + 1)
        time.sleep(wait if wait is not None else policy.delay(attempt))
        attempt += 1


_ssl_context: Any = None


def _http_client(timeout: float) -> httpx.Client:
    """An httpx client sharing one TLS context per process: building one reads the whole CA
    bundle (~40 ms), which would otherwise be paid on every verify."""
    global _ssl_context
    import httpx

    if _ssl_context is None:
        import ssl

        if os.environ.get("SSL_CERT_FILE"):
            _ssl_context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        elif os.environ.get("SSL_CERT_DIR"):
            _ssl_context = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
        else:
            import certifi

            _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return httpx.Client(timeout=timeout, verify=_ssl_context, follow_redirects=False)


def _headers(secret: Secret) -> dict[str, str]:
    return {
        "x-api-key": secret.reveal(),
        "anthropic-version": API_VERSION,
        "accept": "application/json",
        "user-agent": USER_AGENT,
    }


def _scrub(text: str | None, secret: Secret) -> str | None:
    """Belt and braces: the API never echoes a key, but a proxy in between might."""
    if text and secret.reveal() in text:
        return text.replace(secret.reveal(), secret.hint)
    return text


# -- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyStatus:
    """What the API said about a key.

    state: active | unfunded (400 "credit balance is too low": live but unfunded) |
    invalid (401, 404: dead) | forbidden (403) | billing (402) | rate_limited (429) |
    overloaded (529) | server_error (other 5xx) | network_error | unexpected (anything else).
    live: True for active and unfunded, False for invalid, None when undetermined.
    """

    state: State
    hint: str
    http_status: int | None = None
    error_type: str | None = None  # error.type, or the exception class for network errors
    error_code: str | None = None  # error.details.error_code
    message: str | None = None
    request_id: str | None = None
    retry_after: float | None = None  # seconds, from the last response's retry-after
    organization_id: str | None = None
    workspace_id: str | None = None
    attempts: int = 1
    endpoint: str = ""

    @property
    def live(self) -> bool | None:
        return _LIVE.get(self.state)

    @property
    def ok(self) -> bool:
        return self.state == "active"

    @property
    def spend_cap_reached(self) -> bool:
        return self.error_code == SPEND_CAP_CODE

    def to_dict(self) -> dict[str, Any]:
        return {
            "hint": self.hint,
            "state": self.state,
            "live": self.live,
            "http_status": self.http_status,
            "error_type": self.error_type,
            "error_code": self.error_code,
            "message": self.message,
            "request_id": self.request_id,
            "retry_after": self.retry_after,
            "organization_id": self.organization_id,
            "workspace_id": self.workspace_id,
            "attempts": self.attempts,
            "endpoint": self.endpoint,
        }

    def summary(self) -> str:
        """`sk-ant-api03-R2D...igAA: active (200, request req_...)`"""
        parts = []
        if self.http_status is not None:
            parts.append(f"{self.http_status} {self.error_type}" if self.error_type else str(self.http_status))
        elif self.error_type:
            parts.append(self.error_type)
        if self.error_code:
            parts.append(self.error_code)
        if self.retry_after is not None:
            parts.append(f"retry after {self.retry_after:g} s")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        if self.attempts > 1:
            parts.append(f"{self.attempts} attempts")
        return f"{self.hint}: {self.state}" + (f" ({', '.join(parts)})" if parts else "")


def _classify(status: int, error_type: str | None, message: str | None) -> State:
    if 200 <= status < 300:
        return "active"
    if status == 400 and error_type == "invalid_request_error":
        # The one case decided by message text: an org without credits gets 400
        # invalid_request_error "Your credit balance is too low ..." (the errors docs and
        # public reports show no dedicated error.type or error_code for it).
        if message and "credit balance" in message.lower():
            return "unfunded"
        return "unexpected"
    if error_type in _BY_ERROR_TYPE:
        return _BY_ERROR_TYPE[error_type]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return "server_error"
    return "unexpected"


def verify_key(secret: Secret, *, base_url: str | None = None, timeout: float = 10, retries: int = 2,
               backoff: float = 0.5, max_backoff: float = 8.0, max_retry_after: float = 30.0) -> KeyStatus:
    """Ask the API whether a key works, spending no tokens.

    An API key is checked with GET /v1/models?limit=1, an Admin key with GET
    /v1/organizations/me. 429, 5xx, 529 and network errors are retried `retries` times.
    """
    if not isinstance(secret, Secret):
        raise TypeError("verify_key takes a keyvault.Secret (use keyvault.parse_key(text))")
    if secret.family is API:
        endpoint = "/v1/models?limit=1"
    elif secret.family is ADMIN:
        endpoint = "/v1/organizations/me"
    else:
        raise KeyFormatError(
            f"verify checks API keys (sk-ant-api03-...) and Admin keys (sk-ant-admin01-...); "
            f"this is {secret.family.label}"
        )
    root = resolve_base_url(base_url)
    policy = _Retry(max(0, retries), backoff, max_backoff, max_retry_after)

    with _http_client(timeout) as client:
        outcome = _send(client, "GET", root + endpoint, policy, headers=_headers(secret))
    path = endpoint.split("?")[0]
    if outcome.response is None:
        exc = outcome.error
        detail = f"cannot reach {root}: {type(exc).__name__}"
        reason = _scrub(str(exc), secret)
        if reason:
            detail += f": {reason}"
        return KeyStatus("network_error", secret.hint, error_type=type(exc).__name__, message=detail,
                         attempts=outcome.attempts, endpoint=path)
    response = outcome.response
    status = response.status_code
    error_type = message = code = None
    request_id = response.headers.get("request-id")
    if status >= 300:
        error_type, message, code, request_id = _error_fields(response)
    return KeyStatus(
        state=_classify(status, error_type, message),
        hint=secret.hint,
        http_status=status,
        error_type=error_type,
        error_code=code,
        message=_scrub(message, secret),
        request_id=request_id,
        retry_after=_parse_retry_after(response.headers.get("retry-after")),
        organization_id=response.headers.get("anthropic-organization-id"),
        workspace_id=response.headers.get("anthropic-workspace-id"),
        attempts=outcome.attempts,
        endpoint=path,
    )


# -- Admin API ----------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    """RFC 3339 -> aware datetime; tolerates 'Z' and any number of fraction digits (3.10)."""
    if not value:
        return None
    text = str(value).replace("Z", "+00:00").replace("z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$", text)
    if m:
        fraction = (m.group(2) or "")[:6].ljust(6, "0")
        text = f"{m.group(1)}.{fraction}{m.group(3)}"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Actor:
    """created_by: who created a key (`type` user | service_account)."""

    id: str
    type: str


@dataclass(frozen=True)
class Principal:
    """Who a key acts as: `user_actor` (id = user_id) or `service_account_actor`."""

    type: str
    id: str


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as the Admin API describes it (never its value: only `partial_key_hint`)."""

    id: str
    name: str
    status: str  # active | inactive | archived | expired
    created_at: datetime
    expires_at: datetime | None
    partial_key_hint: str | None
    workspace_id: str | None  # from `scope`; None for an organization-scoped key
    scope: str  # workspace | organization
    created_by: Actor | None
    principal: Principal | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> ApiKeyInfo:
        try:
            scope = obj.get("scope") or {}
            created_by = obj.get("created_by")
            principal = obj.get("principal")
            principal_id = None
            if isinstance(principal, dict):
                principal_id = principal.get("user_id") or principal.get("service_account_id") or ""
            created_at = _parse_time(obj["created_at"])
            assert created_at is not None
            return cls(
                id=str(obj["id"]),
                name=str(obj.get("name") or ""),
                status=str(obj["status"]),
                created_at=created_at,
                expires_at=_parse_time(obj.get("expires_at")),
                partial_key_hint=obj.get("partial_key_hint"),
                # scope is authoritative; the top-level workspace_id is deprecated
                workspace_id=scope.get("workspace_id") if scope else obj.get("workspace_id"),
                scope=str(scope.get("type") or "workspace"),
                created_by=Actor(str(created_by["id"]), str(created_by["type"])) if created_by else None,
                principal=Principal(str(principal["type"]), str(principal_id)) if principal else None,
                raw=dict(obj),
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise ApiError(f"Admin API returned a key object keyvault cannot read ({problem})") from None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def matches(self, secret: Secret) -> bool:
        return self.partial_key_hint == secret.hint


@dataclass(frozen=True)
class OrganizationInfo:
    id: str
    name: str


def _describe(status: int | None, error_type: str | None, request_id: str | None, extra: str = "") -> str:
    parts = [" ".join(str(p) for p in (status, error_type) if p)]
    if extra:
        parts.append(extra)
    if request_id:
        parts.append(f"request {request_id}")
    return "(" + ", ".join(p for p in parts if p) + ")"


class AdminClient:
    """The Admin API's key endpoints: list, get, find by hint, update status and name.

    The admin key comes from the argument, else ANTHROPIC_ADMIN_KEY; `admin_client_from(uri)`
    reads it from a source. The docs also accept a personal or service-account API key that is
    not scoped to a workspace, so an `sk-ant-api03-` key is allowed (a workspace key gets 403).
    """

    def __init__(self, admin_key: Secret | None = None, base_url: str | None = None, *, timeout: float = 10,
                 retries: int = 2, backoff: float = 0.5, max_backoff: float = 8.0,
                 max_retry_after: float = 30.0) -> None:
        if admin_key is None:
            raw = os.environ.get(ADMIN_KEY_ENV)
            if not raw:
                raise KeyvaultError(
                    f"no Admin API key: pass one, set {ADMIN_KEY_ENV}, or read it from a source "
                    "(admin_client_from('vault://...'))"
                )
            try:
                admin_key = parse_key(raw)
            except KeyFormatError as exc:
                raise KeyFormatError(f"{ADMIN_KEY_ENV}: {exc}") from None
        if not isinstance(admin_key, Secret):
            raise TypeError("AdminClient takes a keyvault.Secret")
        if admin_key.family not in (ADMIN, API):
            raise KeyFormatError(
                f"the Admin API needs an Admin key (sk-ant-admin01-...); this is {admin_key.family.label}"
            )
        self.admin_key = admin_key
        self.base_url = resolve_base_url(base_url)
        self.timeout = timeout
        self.policy = _Retry(max(0, retries), backoff, max_backoff, max_retry_after)
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"AdminClient({self.admin_key.hint!r}, base_url={self.base_url!r})"

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = _http_client(self.timeout)
        return self._client

    def _call(self, method: str, path: str, what: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": _headers(self.admin_key)}
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        if body is not None:
            kwargs["json"] = body
        outcome = _send(self._http(), method, self.base_url + path, self.policy, **kwargs)
        if outcome.response is None:
            exc = outcome.error
            reason = _scrub(str(exc), self.admin_key) or ""
            raise ApiError(
                f"cannot reach the Admin API at {self.base_url} to {what} "
                f"({type(exc).__name__}{': ' + reason if reason else ''}; {outcome.attempts} attempts)",
                error_type=type(exc).__name__,
            )
        response = outcome.response
        if response.status_code < 300:
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ApiError(
                    f"Admin API answered {what} with a body that is not a JSON object "
                    f"{_describe(response.status_code, None, response.headers.get('request-id'))}",
                    status=response.status_code, request_id=response.headers.get("request-id"),
                )
            return data
        raise self._error(response, what)

    def _error(self, response: httpx.Response, what: str) -> ApiError:
        status = response.status_code
        error_type, message, code, request_id = _error_fields(response)
        message = _scrub(message, self.admin_key)
        retry_after = _parse_retry_after(response.headers.get("retry-after"))
        key = self.admin_key.hint
        if status == 401 or error_type == "authentication_error":
            text = (f"Admin API refused the admin key {key} {_describe(status, error_type, request_id)}: "
                    "it is invalid, inactive, archived or expired")
        elif status == 403 or error_type == "permission_error":
            text = f"Admin API: the key {key} may not {what} {_describe(status, error_type, request_id)}"
            if self.admin_key.family is API:
                text += "; workspace API keys cannot use the Admin API: use an Admin key (sk-ant-admin01-...)"
        elif status == 404 or error_type == "not_found_error":
            text = f"Admin API: cannot {what}: not found {_describe(status, error_type, request_id)}"
        elif status == 429 or error_type == "rate_limit_error":
            extra = code or (f"retry after {retry_after:g} s" if retry_after is not None else "")
            text = f"Admin API rate limited the request to {what} {_describe(status, error_type, request_id, extra)}"
        elif status >= 500:
            text = (f"Admin API failed to {what} {_describe(status, error_type, request_id)}; "
                    "the service is unavailable, try again later")
        else:
            text = f"Admin API rejected the request to {what}: {message or 'no reason given'} " \
                   f"{_describe(status, error_type, request_id)}"
        return ApiError(text, status=status, error_type=error_type, request_id=request_id, error_code=code,
                        retry_after=retry_after)

    # -- endpoints --------------------------------------------------------------------

    def organization(self) -> OrganizationInfo:
        data = self._call("GET", "/v1/organizations/me", "read the organization")
        return OrganizationInfo(id=str(data.get("id")), name=str(data.get("name")))

    def list_keys(self, status: KeyStatusName | None = None, workspace_id: str | None = None,
                  created_by_user_id: str | None = None, limit: int = 100, *, after_id: str | None = None,
                  before_id: str | None = None) -> Iterator[ApiKeyInfo]:
        """Every API key matching the filters, fetching pages of `limit` (1-1000) as needed.

        From the start of the list (newest first) or `after_id`, walking forward; with
        `before_id`, walking back toward the start, nearest key first.
        """
        if after_id and before_id:
            raise KeyvaultError("list_keys takes after_id or before_id, not both")
        params: dict[str, Any] = {
            "status": status, "workspace_id": workspace_id, "created_by_user_id": created_by_user_id,
            "limit": limit, "after_id": after_id, "before_id": before_id,
        }
        backward = before_id is not None
        seen: set[str] = set()
        while True:
            page = self._call("GET", "/v1/organizations/api_keys", "list API keys", params=params)
            data = page.get("data")
            if not isinstance(data, list):
                raise ApiError("Admin API answered the key list without a 'data' list")
            items = [ApiKeyInfo.from_api(obj) for obj in data]
            yield from reversed(items) if backward else items
            cursor = page.get("first_id") if backward else page.get("last_id")
            if not page.get("has_more") or not items or not cursor:
                return
            if cursor in seen:  # a server that repeats a cursor would loop forever
                raise ApiError(f"Admin API pagination repeated the cursor {cursor}; stopping")
            seen.add(cursor)
            params["before_id" if backward else "after_id"] = cursor

    def get_key(self, key_id: str) -> ApiKeyInfo:
        path = self._key_path(key_id)
        return ApiKeyInfo.from_api(self._call("GET", path, f"read API key {key_id}"))

    def update(self, key_id: str, *, name: str | None = None, status: str | None = None) -> ApiKeyInfo:
        if status is not None and status not in ("active", "inactive", "archived"):
            raise KeyvaultError(f"status {status!r}: the Admin API sets active, inactive or archived")
        body = {k: v for k, v in (("name", name), ("status", status)) if v is not None}
        path = self._key_path(key_id)
        change = f"set API key {key_id} to {status}" if status else f"update API key {key_id}"
        return ApiKeyInfo.from_api(self._call("POST", path, change, body=body))

    def set_status(self, key_id: str, status: Literal["active", "inactive", "archived"]) -> ApiKeyInfo:
        """Revoke with "inactive" (reversible), then "archived" (treat as final)."""
        return self.update(key_id, status=status)

    def find_key(self, secret: Secret, workspace_id: str | None = None,
                 status: KeyStatusName | None = None) -> ApiKeyInfo:
        """The one API key whose `partial_key_hint` is this key's hint.

        The Admin API has no lookup by value: the hint (prefix, first 3, last 4 characters) is
        all it shows, so two keys can share one; `workspace_id` and `status` narrow the search.
        Raises KeyMatchError naming the candidates when none or several match.
        """
        if not isinstance(secret, Secret):
            raise TypeError("find_key takes a keyvault.Secret")
        if secret.family is not API:
            raise KeyFormatError(
                f"the Admin API lists API keys (sk-ant-api03-...) only; this is {secret.family.label}"
            )
        candidates = [k for k in self.list_keys(status=status, workspace_id=workspace_id, limit=1000)
                      if k.matches(secret)]
        where = f" in workspace {workspace_id}" if workspace_id else ""
        if status:
            where += f" with status {status}"
        if not candidates:
            raise KeyMatchError(
                f"no API key{where} has the hint {secret.hint}: the key belongs to another "
                "organization, was made elsewhere, or the filters exclude it"
            )
        if len(candidates) > 1:
            listed = "; ".join(
                f"{k.id} ({k.name!r}, {k.status}, {k.workspace_id or 'organization'})" for k in candidates
            )
            raise KeyMatchError(
                f"{len(candidates)} API keys{where} share the hint {secret.hint}: {listed}; "
                "pass workspace_id or status to choose one",
                candidates,
            )
        return candidates[0]

    @staticmethod
    def _key_path(key_id: str) -> str:
        if not isinstance(key_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", key_id):
            raise KeyvaultError(f"{key_id!r} is not an API key id (expected apikey_...)")
        return "/v1/organizations/api_keys/" + quote(key_id)


def admin_client_from(uri: str, base_url: str | None = None, **options: Any) -> AdminClient:
    """An AdminClient whose admin key is read from a source URI (vault://..., aws-sm://...)."""
    from keyvault.backends import open_backend

    secret = open_backend(uri).read().secret
    if secret.family is not ADMIN:
        raise KeyFormatError(f"{uri}: holds {secret.family.label} ({secret.hint}); an Admin key "
                             "(sk-ant-admin01-...) is expected here")
    return AdminClient(secret, base_url, **options)
