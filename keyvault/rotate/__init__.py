"""The rotation engine: create -> update -> verify -> revoke, journaled and resumable.

`rotate(policy, Options(...))` runs one environment's rotation; see keyvault.rotate.engine
for the loop, keyvault.rotate.steps for each step and keyvault.rotate.journal for the state
kept beside the secret. Nothing here imports an HTTP client or a cloud SDK at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "rotate": "keyvault.rotate.engine",
    "Options": "keyvault.rotate.engine",
    "Result": "keyvault.rotate.engine",
    "Event": "keyvault.rotate.engine",
    "KeyInput": "keyvault.rotate.newkey",
    "Journal": "keyvault.rotate.journal",
    "STEPS": "keyvault.rotate.journal",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.rotate.engine import Event, Options, Result, rotate
    from keyvault.rotate.journal import STEPS, Journal
    from keyvault.rotate.newkey import KeyInput


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keyvault.rotate' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
