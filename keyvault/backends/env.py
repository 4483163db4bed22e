"""`env://NAME`: the key in a process environment variable (default ANTHROPIC_API_KEY).

Read-only: the environment belongs to whoever started the process, and a change made here
would vanish with it. Rotate the place the variable is filled from (the deployment's secret
store, `.env`, a CI secret) and restart.

The environment records no versions or creation times, so the version id is the first 12 hex
digits of the value's sha256 fingerprint (stable for the same value, public-safe) and
`created` is None.
"""

from __future__ import annotations

import os
import re

from keyvault.backends import ReadOnlyBackend, Source, Version, VersionInfo
from keyvault.errors import NotFoundError, SourceError
from keyvault.keys import Secret
from keyvault.redact import redact

DEFAULT_VAR = "ANTHROPIC_API_KEY"


def value_version(secret: Secret) -> str:
    """A version id for storages that have none: derived from the value, never revealing it."""
    return "sha256:" + secret.fingerprint[:12]


class EnvBackend(ReadOnlyBackend):
    read_only_reason = (
        "the process environment cannot be written (it is set by whoever starts the process); "
        "update the place the variable comes from and restart"
    )

    def __init__(self, source: Source) -> None:
        name = source.location or source.field or DEFAULT_VAR
        if source.location and source.field and source.field != source.location:
            raise SourceError(f"source {source}: give the variable name once (env://NAME), not a '#field'")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SourceError(
                f"source {source}: {redact(name)!r} is not an environment variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
        self.source = source
        self.var = name

    def read(self) -> Version:
        value = os.environ.get(self.var)
        if value is None:
            raise NotFoundError(
                f"{self.source}: the environment variable {self.var} is not set; "
                f"fix: export {self.var}=<key> in the process's environment, or configure another source"
            )
        if not value.strip():
            raise NotFoundError(
                f"{self.source}: the environment variable {self.var} is set but empty; "
                f"fix: give {self.var} the key's value, or unset it"
            )
        secret = Secret(value)
        return Version(secret=secret, version=value_version(secret), created=None, stage="current")

    def versions(self) -> list[VersionInfo]:
        current = self.read()
        return [VersionInfo(current.version, ("current",), None, current.secret.fingerprint)]
