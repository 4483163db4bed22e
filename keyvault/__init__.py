"""keyvault: resolve, rotate and guard Anthropic API keys.

`import keyvault` stays cheap (no cloud SDK, no HTTP client): the start-up API is loaded on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyvault.errors import KeyFormatError, KeyvaultError
from keyvault.keys import Secret, parse_key

__version__ = "0.1.0"

_LAZY = {
    "get_api_key": "keyvault.resolve",
    "refresh": "keyvault.resolve",
    "anthropic_client": "keyvault.resolve",
    "async_anthropic_client": "keyvault.resolve",
    "load_env": "keyvault.resolve",
    "verify_key": "keyvault.anthropic_api",
    "open_backend": "keyvault.backends",
}

__all__ = ["KeyFormatError", "KeyvaultError", "Secret", "parse_key", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.anthropic_api import verify_key
    from keyvault.backends import open_backend
    from keyvault.resolve import anthropic_client, async_anthropic_client, get_api_key, load_env, refresh


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keyvault' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
