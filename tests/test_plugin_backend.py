"""Third-party backends: a distribution that declares `[keyvault.backends] mem = ...` is used for
mem:// URIs by open_backend and by get_api_key, without keyvault knowing it."""

from __future__ import annotations

from typing import Any

import pytest

import keyvault
from keyvault.backends import Backend, open_backend
from keyvault.errors import ConflictError, SourceError
from keyvault.testing.keygen import make_key


def test_entry_point_backend_is_opened_by_scheme(mem_backend: Any) -> None:
    key, new = make_key(), make_key()
    mem_backend.put("app", key)
    backend = open_backend("mem://app")
    assert type(backend).__name__ == "MemoryBackend"
    assert isinstance(backend, Backend)
    assert backend.read().secret == key
    backend.stage(new)
    with pytest.raises(ConflictError):
        backend.promote(new.fingerprint)
    assert backend.promote(key.fingerprint).secret == new
    assert keyvault.get_api_key("mem://app") == new


def test_unknown_scheme_names_the_entry_point_group() -> None:
    with pytest.raises(SourceError) as info:
        open_backend("nosuch://x")
    assert "keyvault.backends" in str(info.value)
    assert "nosuch" in str(info.value)
