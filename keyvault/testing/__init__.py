"""Test doubles that users run in their own tests: a fake Anthropic API on loopback, a fake
GCP Secret Manager the official client talks to unchanged, key generators, pytest fixtures.

Everything is imported on first use: `import keyvault.testing` costs nothing.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "make_key": "keyvault.testing.keygen",
    "FakeAnthropic": "keyvault.testing.fake_anthropic",
    "FakeSecretManager": "keyvault.testing.fake_gcp",
    "start_openbao": "keyvault.testing.servers",
    "start_moto_server": "keyvault.testing.servers",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keyvault.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
