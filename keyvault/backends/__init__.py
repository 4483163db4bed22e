"""Where keys live: one protocol over env, .env, the encrypted local store, AWS, Vault and GCP.

A source is a URI (`vault://secret/apps/chat#api_key`). `open_backend(uri)` parses it and
returns the backend for its scheme; built-in backends are imported only when used (the cloud
SDKs are optional and slow to import), third-party ones come from the entry-point group
`keyvault.backends` (each entry point names a class taking a `Source`).

Every backend maps the same operations onto its storage's own mechanism:

- `read()` the current value (+ version id, created time)
- `stage(secret)` a pending value, not yet served; idempotent for the same value
- `promote(expected_current)` the pending value to current, compare-and-swap on the
  fingerprint of the current value the caller planned against; the old current becomes previous
- `rollback(expected_current)` make the previous value current again (also compare-and-swap)
- `versions()` what versions exist (never values)
- `read_state()` / `write_state(state, expected_token)` the rotation state kept beside the
  secret (fingerprints, ids, timestamps: never values), compare-and-swap on an opaque token so
  two rotators cannot both win.

A backend that cannot do a step raises `UnsupportedOperation` with the reason.

Writing a third-party backend
-----------------------------
A backend is a class whose constructor takes the parsed `Source` and which implements the
`Backend` protocol below (subclass `ReadOnlyBackend` for a storage you can only read). Declare
it in your package's metadata under the entry-point group `keyvault.backends`; the entry-point
name is the URI scheme:

    # pyproject.toml of keyvault-onepassword
    [project.entry-points."keyvault.backends"]
    op = "keyvault_onepassword:OnePasswordBackend"

    # keyvault_onepassword.py
    class OnePasswordBackend(ReadOnlyBackend):
        read_only_reason = "1Password items are edited in 1Password"
        def __init__(self, source: Source) -> None:     # op://vault/item#field
            self.source = source
        def read(self) -> Version: ...                    # Version(Secret(value), version_id, created)
        def versions(self) -> list[VersionInfo]: ...

Then `open_backend("op://Prod/anthropic#credential")`, `keyvault.get_api_key("op://...")` and
`keyvault get --source op://...` use it. Rules: raise `keyvault.errors` classes whose messages
name the source, the reason and the fix, never the value; wrap values in `Secret`; import your
SDK inside the class, not at module level; `write_state` refuses key values
(`keyvault.backends.localfs.check_state`). Run the shared contract suite against it: add a
`contract_<scheme>` fixture returning `make(initial) -> Backend`, as tests/fixtures/local.py does.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import datetime
from typing import Protocol, runtime_checkable

from keyvault.errors import SourceError, UnsupportedOperation
from keyvault.keys import Secret
from keyvault.redact import redact

BUILTIN: dict[str, str] = {
    "env": "keyvault.backends.env:EnvBackend",
    "dotenv": "keyvault.backends.dotenv:DotenvBackend",
    "file": "keyvault.backends.file:FileBackend",
    "aws-sm": "keyvault.backends.aws:AwsSecretsManagerBackend",
    "vault": "keyvault.backends.vault:VaultBackend",
    "gcp-sm": "keyvault.backends.gcp:GcpSecretManagerBackend",
}
ENTRY_POINT_GROUP = "keyvault.backends"


@dataclass(frozen=True)
class Source:
    """A parsed source URI: `scheme://location?params#field`."""

    uri: str
    scheme: str
    location: str
    field: str | None = None
    params: dict[str, str] = _field(default_factory=dict)

    def __str__(self) -> str:
        return redact(self.uri)


@dataclass(frozen=True)
class Version:
    """One stored value of the key, with what the storage says about it."""

    secret: Secret
    version: str  # the storage's own version id (AWS VersionId, Vault/GCP integer, ...)
    created: datetime | None = None  # timezone-aware UTC when the storage records it
    stage: str = "current"  # current | pending | previous


@dataclass(frozen=True)
class VersionInfo:
    """A version as listed: no value, only what identifies and describes it."""

    version: str
    stages: tuple[str, ...]  # ("current",), ("pending",), ("previous",), () when retired
    created: datetime | None = None
    fingerprint: str | None = None  # sha256 of the value when the listing can compute it
    state: str = "enabled"  # enabled | disabled | destroyed


@runtime_checkable
class Backend(Protocol):
    source: Source
    writable: bool

    def read(self) -> Version: ...

    def read_pending(self) -> Version | None: ...

    def stage(self, secret: Secret) -> Version: ...

    def clear_pending(self) -> None: ...

    def promote(self, expected_current: str) -> Version: ...

    def rollback(self, expected_current: str) -> Version: ...

    def versions(self) -> list[VersionInfo]: ...

    def read_state(self) -> tuple[dict[str, str] | None, str | None]: ...

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str: ...


class ReadOnlyBackend:
    """Mixin for backends that can only be read: each write says why it cannot."""

    source: Source
    writable = False
    read_only_reason = "this source cannot be written"

    def _refuse(self, step: str) -> UnsupportedOperation:
        return UnsupportedOperation(f"{self.source}: cannot {step}: {self.read_only_reason}")

    def read_pending(self) -> Version | None:
        return None

    def stage(self, secret: Secret) -> Version:
        raise self._refuse("stage a new key")

    def clear_pending(self) -> None:
        raise self._refuse("clear a pending key")

    def promote(self, expected_current: str) -> Version:
        raise self._refuse("promote a new key")

    def rollback(self, expected_current: str) -> Version:
        raise self._refuse("roll back")

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str:
        raise self._refuse("keep rotation state")

    def read_state(self) -> tuple[dict[str, str] | None, str | None]:
        return None, None


def check_params(source: Source, allowed: frozenset[str] | set[str]) -> None:
    """Refuse query parameters a backend does not know, naming the ones it takes."""
    unknown = set(source.params) - set(allowed)
    if unknown:
        takes = ", ".join(f"{p}=" for p in sorted(allowed))
        raise SourceError(
            f"source {source}: unknown parameter {', '.join(sorted(unknown))}; {source.scheme}:// takes {takes}"
        )


def parse_source(uri: str) -> Source:
    """Split `scheme://location?k=v&k2=v2#field`; errors say what was expected."""
    if not isinstance(uri, str) or "://" not in uri:
        shown = repr(redact(uri)) if isinstance(uri, str) else repr(type(uri).__name__)
        raise SourceError(
            f"source {shown} is not a URI; expected scheme://location, e.g. env://ANTHROPIC_API_KEY, "
            "dotenv://.env#ANTHROPIC_API_KEY, vault://secret/apps/chat#api_key"
        )
    if uri.lstrip().lower().startswith("sk-ant-"):
        raise SourceError(f"source {redact(uri.strip())!r} is a key value, not a source URI; "
                          "put the key in a backend and name that, e.g. env://ANTHROPIC_API_KEY")
    shown = repr(redact(uri))  # a key pasted where a source belongs must not be echoed
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if not scheme or not all(c.isalnum() or c in "-+." for c in scheme):
        raise SourceError(f"source {shown}: {redact(scheme)!r} is not a valid URI scheme")
    fragment: str | None = None
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
        if not fragment:
            raise SourceError(f"source {shown}: empty field after '#'")
    params: dict[str, str] = {}
    if "?" in rest:
        rest, query = rest.split("?", 1)
        from urllib.parse import parse_qsl

        try:
            params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        except ValueError:
            raise SourceError(f"source {shown}: malformed query {redact(query)!r}; expected key=value&key=value") from None
    for secret_like in ("token", "secret_id", "password"):
        if secret_like in params:
            raise SourceError(
                f"source {shown}: credentials do not belong in a source URI ({secret_like}=...); "
                "use the backend's standard environment (VAULT_TOKEN, AWS_PROFILE, ADC)"
            )
    return Source(uri=uri, scheme=scheme, location=rest, field=fragment, params=params)


def _load(target: str, what: str) -> type:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = {"aws-sm": "aws", "vault": "vault", "gcp-sm": "gcp"}.get(what)
        fix = f"; install it with: pip install 'keyvault-anthropic[{extra}]'" if extra else ""
        raise SourceError(f"backend for {what}:// cannot be loaded ({exc.name or exc} is missing){fix}") from None
    return getattr(module, attr)


def backend_class(scheme: str) -> type:
    if scheme in BUILTIN:
        return _load(BUILTIN[scheme], scheme)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.load()
    known = ", ".join(sorted(BUILTIN))
    raise SourceError(
        f"unknown source scheme {scheme!r}; known: {known} (third-party backends register "
        f"under the entry-point group {ENTRY_POINT_GROUP!r})"
    )


def open_backend(uri: str | Source) -> Backend:
    source = uri if isinstance(uri, Source) else parse_source(uri)
    return backend_class(source.scheme)(source)
