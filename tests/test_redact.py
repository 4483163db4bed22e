"""redact.py: credential values in free text become hints; hints and fingerprints stay."""

from __future__ import annotations

from keyvault.keys import ADMIN
from keyvault.redact import credential_in, redact
from keyvault.testing.keygen import make_key


def test_values_become_hints_and_everything_else_stays() -> None:
    api, admin = make_key(), make_key(ADMIN)
    text = f"No such command '{api.reveal()}'. x-api-key={admin.reveal()};fp={api.fingerprint} {api.hint}"
    out = redact(text)
    assert out == f"No such command '{api.hint}'. x-api-key={admin.hint};fp={api.fingerprint} {api.hint}"
    assert credential_in(text) == "API key" and credential_in(out) is None


def test_truncated_and_future_families_are_values_too() -> None:
    body = make_key().reveal()[13:]
    assert credential_in("sk-ant-api03-" + body[:8]) == "API key"
    assert credential_in("sk-ant-api07-" + body) == "unknown Anthropic credential"
    assert credential_in("sk-ant-api03-" + body[:7]) is None  # too short to be more than a hint
    assert credential_in("sk-ant-api03-<5 chars redacted>") is None
