"""Well-formed, random, never-real Anthropic credentials for tests."""

from __future__ import annotations

import secrets

from keyvault.keys import ADMIN, API, Family, Secret

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def make_key(family: Family = API, rng: secrets.SystemRandom | None = None) -> Secret:
    """A random key of the family's exact shape (API keys and Admin keys: 93 chars + 'AA')."""
    choice = (rng or secrets.SystemRandom()).choice
    if family.body_length is not None:
        body = "".join(choice(_ALPHABET) for _ in range(family.body_length - len(family.suffix)))
        body += family.suffix
    else:
        body = "".join(choice(_ALPHABET) for _ in range(95))
    return Secret(family.prefix + body, family)


def make_admin_key() -> Secret:
    return make_key(ADMIN)
