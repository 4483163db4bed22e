"""What the rotation asks the Anthropic API, with the rotation's rules applied.

`keyvault.anthropic_api` retries 429/529/5xx/timeouts; what is still undetermined after its
retries becomes an `ApiError` here, so the step stops with nothing half-applied and the next
run repeats it. Definitive answers (401 for a new key, a key in the wrong workspace) stop the
rotation with a reason instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyvault.errors import ApiError, KeyvaultError
from keyvault.keys import ADMIN, Secret, parse_key

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.anthropic_api import AdminClient, ApiKeyInfo, KeyStatus
    from keyvault.policy import Environment, Policy

UNDETERMINED = ("rate_limited", "overloaded", "server_error", "network_error", "unexpected")


def base_url_for(policy: Policy) -> str | None:
    """ANTHROPIC_BASE_URL wins over the policy file, as the SDK's own variable does."""
    return os.environ.get("ANTHROPIC_BASE_URL") or policy.base_url


def read_admin_key(uri: str | None) -> tuple[Secret | None, str]:
    """(admin key or None, a note saying where it came from or why there is none)."""
    if not uri:
        return None, "no admin_key in the policy"
    from keyvault.backends import open_backend, parse_source

    source = parse_source(uri)
    if source.scheme == "env":
        # The conventional default: an unset variable means "no Admin key", not an error.
        raw = os.environ.get(source.location)
        if not raw:
            return None, f"{uri} is not set"
        try:
            secret = parse_key(raw, expect="admin")
        except KeyvaultError as exc:
            raise KeyvaultError(f"{uri}: {exc}") from None
        return secret, uri
    secret = open_backend(source).read().secret
    if secret.family is not ADMIN:
        raise KeyvaultError(f"{uri}: holds {secret.family.label} ({secret.hint}); an Admin key (sk-ant-admin01-...) is expected")
    return secret, uri


@dataclass
class KeyService:
    base_url: str | None
    admin: AdminClient | None
    admin_note: str

    @classmethod
    def for_env(cls, policy: Policy, env: Environment, *, use_admin: bool = True) -> KeyService:
        base_url = base_url_for(policy)
        if not use_admin:
            return cls(base_url, None, "admin key not used")
        secret, note = read_admin_key(env.admin_key)
        if secret is None:
            return cls(base_url, None, note)
        from keyvault.anthropic_api import AdminClient

        return cls(base_url, AdminClient(secret, base_url), note)

    @classmethod
    def default(cls) -> KeyService:
        """Without a policy: ANTHROPIC_ADMIN_KEY and ANTHROPIC_BASE_URL."""
        from keyvault.policy import DEFAULT_ADMIN_KEY

        base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
        secret, note = read_admin_key(DEFAULT_ADMIN_KEY)
        if secret is None:
            return cls(base_url, None, note)
        from keyvault.anthropic_api import AdminClient

        return cls(base_url, AdminClient(secret, base_url), note)

    def verify(self, secret: Secret, what: str) -> KeyStatus:
        """The API's verdict on a key; undetermined answers raise (retry the step later)."""
        from keyvault.anthropic_api import verify_key

        status = verify_key(secret, base_url=self.base_url)
        if status.state in UNDETERMINED:
            raise ApiError(
                f"cannot tell whether the {what} works: {status.summary()}; nothing was changed, "
                "run again later",
                status=status.http_status, error_type=status.error_type, request_id=status.request_id,
            )
        return status

    def find(self, secret: Secret, workspace_id: str | None) -> ApiKeyInfo | None:
        """The key's Admin API record; None when no key has its hint."""
        if self.admin is None:
            return None
        from keyvault.errors import KeyMatchError

        try:
            return self.admin.find_key(secret, workspace_id)
        except KeyMatchError as exc:
            if exc.candidates:
                raise
            return None

    def find_by_hint(self, hint: str, workspace_id: str | None) -> ApiKeyInfo | None:
        """Like `find` when only the hint is known (a scan finding, a resumed run)."""
        if self.admin is None:
            return None
        matches = [k for k in self.admin.list_keys(workspace_id=workspace_id, limit=1000) if k.partial_key_hint == hint]
        if len(matches) > 1:
            ids = ", ".join(f"{k.id} ({k.status})" for k in matches)
            raise KeyvaultError(f"{len(matches)} keys share the hint {hint}: {ids}; name the one meant with --id")
        return matches[0] if matches else None

    def get(self, key_id: str) -> ApiKeyInfo:
        assert self.admin is not None
        return self.admin.get_key(key_id)

    def set_status(self, key_id: str, status: Any) -> ApiKeyInfo:
        assert self.admin is not None
        return self.admin.set_status(key_id, status)

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()
