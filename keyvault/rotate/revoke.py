"""Revoke one key outside a rotation (`keyvault revoke`, `keyvault incident`).

Revoking is `status: inactive` through the Admin API (reversible), confirmed by the key itself
getting 401 when its value is known; `archived` is final and only on request. Before revoking,
the key is compared with what the policy's targets serve: deactivating the key an app still
resolves is an outage, so that needs `--force` (an incident forces it on purpose).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyvault.errors import KeyvaultError
from keyvault.keys import Secret
from keyvault.policy import Policy
from keyvault.rotate.apikeys import KeyService
from keyvault.rotate.journal import iso, utcnow


@dataclass
class RevokeResult:
    key_id: str
    hint: str | None
    name: str | None
    before: str
    after: str
    refused: bool | None  # the API now refuses the key (None: value unknown, not probed)
    at: datetime
    created_at: datetime | None = None
    served_by: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key_id, "hint": self.hint, "name": self.name, "status_before": self.before,
            "status": self.after, "refused_by_api": self.refused, "at": iso(self.at),
            "created_at": iso(self.created_at) if self.created_at else None, "served_by": self.served_by,
        }


def served_by(policy: Policy | None, fingerprint: str | None, hint: str | None) -> list[str]:
    """The policy targets that currently serve this key (by fingerprint, else by hint)."""
    if policy is None:
        return []
    from keyvault.backends import open_backend

    found = []
    for env in policy.environments.values():
        for target in env.targets:
            try:
                secret = open_backend(target.source).read().secret
            except KeyvaultError:
                continue
            if (fingerprint and secret.fingerprint == fingerprint) or (not fingerprint and hint and secret.hint == hint):
                found.append(target.source)
    return found


def confirm_refused(keys: KeyService, secret: Secret, tries: int = 5, delay: float = 1.0) -> bool:
    for attempt in range(tries):
        status = keys.verify(secret, "revoked key")
        if status.live is False:
            return True
        if attempt + 1 < tries:
            time.sleep(delay)
    return False


def revoke_key(keys: KeyService, *, key_id: str | None = None, secret: Secret | None = None,
               archive: bool = False, policy: Policy | None = None, force: bool = False,
               workspace_id: str | None = None) -> RevokeResult:
    if keys.admin is None:
        raise KeyvaultError(
            f"revoking through the Admin API needs an Admin key ({keys.admin_note}); set "
            "ANTHROPIC_ADMIN_KEY or the policy's admin_key, or disable the key in the Console"
        )
    if secret is not None:
        info = keys.find(secret, workspace_id)
        if info is None:
            raise KeyvaultError(f"the Admin API lists no key with the hint {secret.hint}: it belongs to another organization or was deleted")
    elif key_id is not None:
        info = keys.get(key_id)
    else:
        raise KeyvaultError("name the key to revoke: --id ID, --key-fd N, or the key on stdin")
    holders = served_by(policy, secret.fingerprint if secret else None, None if secret else info.partial_key_hint)
    if holders and not force:
        raise KeyvaultError(
            f"{info.id} ({info.partial_key_hint}) is still served by: {', '.join(holders)}; revoking it "
            "now breaks those apps. Rotate them first (keyvault rotate), or pass --force (leaked key: "
            "keyvault incident)"
        )
    before = info.status
    if info.status == "active":
        info = keys.set_status(info.id, "inactive")
    if archive and info.status != "archived":
        info = keys.set_status(info.id, "archived")
    refused = confirm_refused(keys, secret) if secret is not None else None
    return RevokeResult(info.id, info.partial_key_hint, info.name, before, info.status, refused, utcnow(),
                        info.created_at, holders)
