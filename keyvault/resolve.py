"""The start-up call: `get_api_key()` finds the app's Anthropic API key and keeps it fresh.

Where the key comes from, first match wins:
1. the `source` argument (a URI such as `vault://secret/apps/chat#api_key`);
2. `KEYVAULT_SOURCE` in the environment;
3. the nearest config, walking up from the working directory to the project root (a directory
   with `pyproject.toml` or `.git`): `keyvault.toml` (top-level keys) or `[tool.keyvault]` in
   `pyproject.toml`, with keys `source`, `fallback` (list of URIs tried in order when the source
   fails), `ttl` and `max_stale` (seconds, or "90s", "5m", "2h", "1d"); relative paths in
   dotenv:// and file:// sources are relative to the config file;
4. the default: `env://ANTHROPIC_API_KEY`, then `dotenv://.env` (in the working directory) if
   the variable is not set. That pair is the only implicit fallback: production must fail
   loud, never quietly pick up a developer's key. Configured fallbacks are tried when a source
   fails for any backend reason; the default pair only when the variable is absent.

The value must be an API key (`sk-ant-api03-`): an Admin key, a placeholder or a truncated
paste fails with what is wrong, naming the source. Paste damage (newline, quotes) is trimmed
with a warning to fix the stored value.

Cache: per source, for `ttl` (default 300 s); concurrent first use makes one backend call
(per-source lock). `refresh()` re-reads now. When a re-read fails after a success, the cached
key is served (warning, hint only) until `max_stale` (default 3600 s) after the last success,
retrying at most every 30 s; after that the error is raised.

The environment path is kept cheap: with the key in the environment and no config, nothing
beyond the standard library's os/time is imported (no python-dotenv, tomllib, logging,
cryptography, no cloud SDK).
"""

from __future__ import annotations

import os
import re
from _thread import allocate_lock
from time import monotonic as _monotonic
from time import time as _time
from typing import TYPE_CHECKING, Any

from keyvault.errors import KeyFormatError, KeyvaultError, NotFoundError, SourceError
from keyvault.keys import Secret, parse_key

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime

    from keyvault.backends import Backend

DEFAULT_VAR = "ANTHROPIC_API_KEY"
DEFAULT_SOURCES = ("env://ANTHROPIC_API_KEY", "dotenv://.env")
DEFAULT_TTL = 300.0
DEFAULT_MAX_STALE = 3600.0
RETRY_AFTER_FAILURE = 30.0
CONFIG_KEYS = ("source", "fallback", "ttl", "max_stale")


class Config:
    """What to resolve and how long to trust it."""

    __slots__ = ("sources", "ttl", "max_stale", "origin", "implicit")

    def __init__(self, sources: tuple[str, ...], ttl: float, max_stale: float, origin: str, implicit: bool) -> None:
        self.sources = sources
        self.ttl = ttl
        self.max_stale = max_stale
        self.origin = origin  # "argument" | "KEYVAULT_SOURCE" | a config file path | "default"
        self.implicit = implicit


class Resolved:
    """A resolved key and where it came from (what `keyvault get` shows)."""

    __slots__ = ("secret", "source", "_version", "created", "origin", "fetched_at")

    def __init__(self, secret: Secret, source: str, version: str | None, created: datetime | None, origin: str,
                 fetched_at: float) -> None:
        self.secret = secret
        self.source = source  # the URI that served it
        self._version = version
        self.created = created
        self.origin = origin
        self.fetched_at = fetched_at  # time.time() of the backend read

    @property
    def version(self) -> str:
        """The storage's version id (for env://, derived from the value as EnvBackend does)."""
        return self._version or "sha256:" + self.secret.fingerprint[:12]

    def __repr__(self) -> str:
        return f"Resolved({self.source!r}, {self.secret.hint!r}, version={self.version!r})"


class _Entry:
    __slots__ = ("resolved", "secret", "fetched", "expires", "retry_at")

    def __init__(self, resolved: Resolved, fetched: float, expires: float) -> None:
        self.resolved = resolved
        self.secret = resolved.secret
        self.fetched = fetched  # monotonic time of the last successful read
        self.expires = expires  # monotonic time after which the backend is asked again
        self.retry_at = 0.0  # after a failed re-read: serve the cached key until then


_cache: dict[str | None, _Entry] = {}
_locks: dict[str | None, Any] = {}
_locks_guard = allocate_lock()
_backends: dict[str, Backend] = {}
_configs: dict[str | None, Config] = {}


def get_api_key(source: str | None = None, *, ttl: float | None = None) -> Secret:
    """The app's Anthropic API key (a `Secret`: call `.reveal()` where the value is used)."""
    entry = _cache.get(source)
    if entry is not None and _monotonic() < (entry.expires if ttl is None else min(entry.expires, entry.fetched + ttl)):
        return entry.secret
    return _resolve(source, ttl, force=False).secret


def lookup(source: str | None = None, *, ttl: float | None = None) -> Resolved:
    """Like get_api_key, with where the key came from, its version and creation time."""
    entry = _cache.get(source)
    if entry is not None and _monotonic() < (entry.expires if ttl is None else min(entry.expires, entry.fetched + ttl)):
        return entry.resolved
    return _resolve(source, ttl, force=False)


def refresh(source: str | None = None) -> Secret:
    """Re-read the key now (after a rotation, or a 401). Callers that ask at the same moment
    share one backend read. A failure is raised, and the cached key stays cached."""
    return _resolve(source, None, force=True).secret


def clear_cache() -> None:
    """Forget every cached key, opened backend and config (tests; after chdir)."""
    with _locks_guard:
        _cache.clear()
        _backends.clear()
        _configs.clear()


def _lock_for(source: str | None) -> Any:
    lock = _locks.get(source)
    if lock is None:
        with _locks_guard:
            lock = _locks.setdefault(source, allocate_lock())
    return lock


def _resolve(source: str | None, ttl: float | None, *, force: bool) -> Resolved:
    asked = _monotonic()
    with _lock_for(source):
        entry = _cache.get(source)
        now = _monotonic()
        if entry is not None:
            if force:
                if entry.fetched >= asked:  # another caller re-read it while we waited
                    return entry.resolved
            elif now < (entry.expires if ttl is None else min(entry.expires, entry.fetched + ttl)):
                return entry.resolved
            elif now < entry.retry_at and now - entry.fetched < _config(source).max_stale:
                return entry.resolved  # the backend failed moments ago: do not hammer it
        config = _config(source)
        try:
            resolved = _read(config)
        except KeyvaultError as exc:
            if force or entry is None or now - entry.fetched >= config.max_stale:
                if entry is not None and not force:
                    raise type(exc)(
                        f"{exc} (the cached key from {entry.resolved.source} is older than max_stale="
                        f"{config.max_stale:g}s, so it is no longer served)"
                    ) from None
                raise
            entry.expires = entry.retry_at = now + min(RETRY_AFTER_FAILURE, ttl if ttl is not None else config.ttl)
            _warn(
                "keyvault: cannot re-read the Anthropic key (%s); serving the cached key %s from %s, "
                "read %.0f s ago (served until max_stale=%gs)",
                exc, entry.secret.hint, entry.resolved.source, now - entry.fetched, config.max_stale,
            )
            return entry.resolved
        now = _monotonic()
        _cache[source] = _Entry(resolved, now, now + (ttl if ttl is not None else config.ttl))
        return resolved


def _backend(uri: str) -> Backend:
    backend = _backends.get(uri)
    if backend is None:
        from keyvault.backends import open_backend

        backend = _backends[uri] = open_backend(uri)
    return backend


_ENV_NAME = re.compile(r"env://([A-Za-z_][A-Za-z0-9_]*)")


def _read_one(uri: str) -> tuple[Secret, str | None, datetime | None]:
    """(value, version id, created) from one source.

    A plain env://NAME is read here, by the same rules and messages as EnvBackend, so the
    most common start-up path does not load the backend layer (its dataclasses and datetime
    cost a few ms of every app's start-up)."""
    m = _ENV_NAME.fullmatch(uri)
    if m is None:
        version = _backend(uri).read()
        return version.secret, version.version, version.created
    var = m.group(1)
    value = os.environ.get(var)
    if value is None:
        raise NotFoundError(
            f"{uri}: the environment variable {var} is not set; "
            f"fix: export {var}=<key> in the process's environment, or configure another source"
        )
    if not value.strip():
        raise NotFoundError(f"{uri}: the environment variable {var} is set but empty; fix: give {var} the key's value, or unset it")
    return Secret(value), None, None


def _read(config: Config) -> Resolved:
    failures: list[KeyvaultError] = []
    for i, uri in enumerate(config.sources):
        try:
            value, version, created = _read_one(uri)
        except KeyvaultError as exc:
            failures.append(exc)
            last = i == len(config.sources) - 1
            if not last and (not config.implicit or isinstance(exc, NotFoundError)):
                continue
            if len(failures) == 1:
                raise
            break
        else:
            secret = _validate(uri, value)
            return Resolved(secret, uri, version, created, config.origin, _time())
    tried = "; ".join(str(e).split("; fix:")[0] for e in failures)
    if config.implicit and all(isinstance(e, NotFoundError) for e in failures):
        raise NotFoundError(
            f"no Anthropic API key found: {tried}. Fix: export {DEFAULT_VAR}=<key>, put "
            f"{DEFAULT_VAR}=<key> in .env, or name where it lives (KEYVAULT_SOURCE=vault://..., "
            "or source = \"...\" under [tool.keyvault] in pyproject.toml)"
        )
    raise type(failures[-1])(f"every source failed ({config.origin}): {tried}")


def _validate(uri: str, secret: Secret) -> Secret:
    try:
        parsed = parse_key(secret.reveal(), expect="api")
    except KeyFormatError as exc:
        raise KeyFormatError(
            f"{_shown(uri)}: the stored value is not a usable API key: {exc}; fix: store the API key "
            "(sk-ant-api03-..., as the Console shows it) there"
        ) from None
    if parsed.trimmed:
        _warn(
            "keyvault: %s: the stored key has %s; it was trimmed, but fix the stored value",
            _shown(uri), " and ".join(parsed.trimmed),
        )
    return parsed


def _warn(message: str, *args: object) -> None:
    import logging

    logging.getLogger("keyvault").warning(message, *args)


# configuration ---------------------------------------------------------------------------


def _config(source: str | None) -> Config:
    config = _configs.get(source)
    if config is None:
        config = _configs[source] = _load_config(source)
    return config


def _load_config(source: str | None) -> Config:
    found = _find_config_file()
    settings: dict[str, Any] = {}
    origin = "default"
    if found is not None:
        settings = _read_config_file(found)
        origin = str(found)
    ttl = _duration(settings.get("ttl", DEFAULT_TTL), "ttl", origin)
    max_stale = _duration(settings.get("max_stale", DEFAULT_MAX_STALE), "max_stale", origin)
    if source is not None:
        _check_uri(source, "the source argument")
        return Config((source,), ttl, max_stale, "argument", False)
    from_env = os.environ.get("KEYVAULT_SOURCE")
    if from_env:
        _check_uri(from_env, "KEYVAULT_SOURCE")
        return Config((from_env,), ttl, max_stale, "KEYVAULT_SOURCE", False)
    if "source" in settings and found is not None:
        base = os.path.dirname(found)
        chain = [settings["source"], *settings.get("fallback", [])]
        return Config(tuple(_anchor(uri, base) for uri in chain), ttl, max_stale, origin, False)
    return Config(DEFAULT_SOURCES, ttl, max_stale, origin, True)


def _shown(uri: str) -> str:
    """A URI as messages show it: a key pasted into it appears as its hint."""
    from keyvault.redact import redact

    return redact(uri)


def _check_uri(uri: str, where: str) -> None:
    if not isinstance(uri, str) or "://" not in uri:
        raise SourceError(
            f"{where}: {_shown(uri) if isinstance(uri, str) else uri!r} is not a source URI; expected scheme://location, e.g. "
            "env://ANTHROPIC_API_KEY, dotenv://.env#ANTHROPIC_API_KEY, vault://secret/apps/chat#api_key"
        )


def _anchor(uri: str, base: str) -> str:
    """Make a relative dotenv:// or file:// path relative to the config file's directory."""
    scheme, _, rest = uri.partition("://")
    if scheme.lower() in ("dotenv", "file") and rest and not rest.startswith(("/", "~", "#", "?")):
        return f"{scheme}://{os.path.join(base, rest)}"
    return uri


def _find_config_file() -> str | None:
    """The nearest keyvault.toml, or pyproject.toml with [tool.keyvault], up to the project root."""
    try:
        directory = os.getcwd()
    except OSError:
        return None
    while True:
        candidate = os.path.join(directory, "keyvault.toml")
        if os.path.isfile(candidate):
            return candidate
        pyproject = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(pyproject):
            try:
                with open(pyproject, "rb") as fh:
                    has_section = b"tool.keyvault" in fh.read()
            except OSError:
                has_section = False
            return pyproject if has_section else None
        if os.path.exists(os.path.join(directory, ".git")):
            return None
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise SourceError(
                f"{path}: reading a TOML config needs Python 3.11+ or the 'tomli' package (pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{path}: not valid TOML: {exc}") from None
    where = path
    if os.path.basename(path) == "pyproject.toml":
        section = data.get("tool", {}).get("keyvault")
        where = f"{path} [tool.keyvault]"
        if section is None:
            return {}
        if not isinstance(section, dict):
            raise SourceError(f"{where}: expected a table")
        data = section
    for key, value in data.items():
        if isinstance(value, dict):
            continue  # sub-tables belong to other commands ([tool.keyvault.rotate], ...)
        if key not in CONFIG_KEYS:
            raise SourceError(f"{where}: unknown key {key!r}; known keys: {', '.join(CONFIG_KEYS)}")
    if "source" in data:
        _check_uri(data["source"], f"{where} source")
    fallback = data.get("fallback", [])
    if not isinstance(fallback, list):
        raise SourceError(f"{where}: fallback must be a list of source URIs, e.g. fallback = [\"dotenv://.env\"]")
    for uri in fallback:
        _check_uri(uri, f"{where} fallback")
    if fallback and "source" not in data:
        raise SourceError(f"{where}: fallback is set but source is not; name the primary source first")
    return {k: v for k, v in data.items() if k in CONFIG_KEYS}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    if isinstance(value, str) and value[:-1].replace(".", "", 1).isdigit() and value[-1:] in _UNITS:
        return float(value[:-1]) * _UNITS[value[-1]]
    raise SourceError(
        f"{where}: {name} = {value!r}: expected seconds (e.g. 300) or a duration like '90s', '5m', '2h', '1d'"
    )


# the environment and the Anthropic SDK ----------------------------------------------------


def load_env(source: str | None = None, var: str = DEFAULT_VAR, override: bool = False) -> Secret:
    """Put the key into `os.environ[var]` for code that reads the variable itself.

    An existing value is kept unless `override` (it is then what the app uses, and is returned)."""
    existing = os.environ.get(var)
    if existing and not override:
        return _validate(f"env://{var}", Secret(existing))
    secret = get_api_key(source)
    os.environ[var] = secret.reveal()
    return secret


class _KeyRef:
    """The key a client sends: cached by get_api_key, renewed once when the API says 401."""

    __slots__ = ("source", "ttl")

    def __init__(self, source: str | None, ttl: float | None) -> None:
        self.source = source
        self.ttl = ttl

    def current(self) -> Secret:
        return get_api_key(self.source, ttl=self.ttl)

    def fresh(self) -> bool:
        entry = _cache.get(self.source)
        return entry is not None and _monotonic() < entry.expires

    def renew(self, rejected: Secret) -> Secret | None:
        """A newer key than the rejected one, or None (the 401 was not a rotation)."""
        try:
            current = self.current()
            if current != rejected:  # someone already renewed it
                return current
            renewed = refresh(self.source)
        except KeyvaultError as exc:
            _warn("keyvault: the API rejected key %s (401) and re-reading it failed: %s", rejected.hint, exc)
            return None
        if renewed == rejected:
            return None
        _warn("keyvault: the API rejected key %s (401); retrying once with %s", rejected.hint, renewed.hint)
        return renewed


def _sdk() -> Any:
    try:
        import anthropic
    except ImportError:
        raise KeyvaultError(
            "anthropic_client needs the Anthropic SDK: pip install 'keyvault-anthropic[sdk]'"
        ) from None
    if not hasattr(anthropic, "Middleware"):
        raise KeyvaultError(
            f"anthropic_client needs an Anthropic SDK with client middleware (installed: "
            f"{getattr(anthropic, '__version__', '?')}); upgrade it: pip install -U anthropic"
        )
    return anthropic


_classes: dict[str, type] = {}


def _client_classes() -> tuple[type, type]:
    """Subclasses of the SDK's clients whose key is the one keyvault resolves.

    The SDK's public hooks do the work: `api_key` (read by the SDK's auth headers on every
    request) comes from the cache, and a client `Middleware` sees each attempt's response: on a
    401 it re-reads the key once and, when it changed (rotated under the running app), sends
    the same request again. `copy()`/`with_options()` keep the binding. The key never goes into
    per-request options (the SDK logs those at debug level)."""
    if _classes:
        return _classes["sync"], _classes["async"]
    anthropic = _sdk()

    class RotationMiddleware(anthropic.Middleware):  # type: ignore[misc, name-defined]
        def __init__(self, ref: _KeyRef) -> None:
            self.ref = ref

        def handle(self, request: Any, call_next: Any) -> Any:
            sent = self.ref.current()
            response = call_next(request)
            if response.status_code != 401:
                return response
            renewed = self.ref.renew(sent)
            if renewed is None:
                return response
            response.http_response.close()
            return call_next(request)

        async def handle_async(self, request: Any, call_next: Any) -> Any:
            import anyio.to_thread

            if not self.ref.fresh():  # a backend read must not block the event loop
                await anyio.to_thread.run_sync(self.ref.current)
            sent = self.ref.current()
            response = await call_next(request)
            if response.status_code != 401:
                return response
            renewed = await anyio.to_thread.run_sync(self.ref.renew, sent)
            if renewed is None:
                return response
            await response.http_response.aclose()
            return await call_next(request)

    def init(cls: Any, self: Any, keyvault_ref: _KeyRef, kwargs: dict[str, Any]) -> None:
        self._keyvault_ref = keyvault_ref
        kwargs.pop("api_key", None)  # copy() passes the current one: the key is keyvault's
        if kwargs.get("auth_token"):
            raise TypeError("a keyvault client authenticates with the resolved API key; do not pass auth_token")
        kwargs.pop("auth_token", None)
        middleware = list(kwargs.pop("middleware", None) or ())
        if not any(isinstance(m, RotationMiddleware) for m in middleware):
            middleware.insert(0, RotationMiddleware(keyvault_ref))
        super(cls, self).__init__(api_key=keyvault_ref.current().reveal(), middleware=middleware, **kwargs)

    def api_key_get(self: Any) -> str:
        return self._keyvault_ref.current().reveal()

    def api_key_set(self: Any, value: str | None) -> None:
        if value is not None and value != self._keyvault_ref.current().reveal():
            raise AttributeError("this client's key comes from its keyvault source; rotate the source instead")

    def copy(cls: Any, self: Any, kwargs: dict[str, Any]) -> Any:
        for name in ("api_key", "auth_token", "credentials", "config", "profile"):
            if kwargs.get(name) not in (None, anthropic.NOT_GIVEN):
                raise TypeError(f"a keyvault client keeps its key source; do not pass {name} to copy()")
        extra = dict(kwargs.pop("_extra_kwargs", None) or {})
        extra["keyvault_ref"] = self._keyvault_ref
        return super(cls, self).copy(_extra_kwargs=extra, **kwargs)

    class KeyvaultAnthropic(anthropic.Anthropic):  # type: ignore[misc, name-defined]
        """An `anthropic.Anthropic` whose key is resolved by keyvault and renewed on 401."""

        def __init__(self, *, keyvault_ref: _KeyRef, **kwargs: Any) -> None:
            init(KeyvaultAnthropic, self, keyvault_ref, kwargs)

        api_key = property(api_key_get, api_key_set)  # type: ignore[assignment]

        def copy(self, **kwargs: Any) -> Any:
            return copy(KeyvaultAnthropic, self, kwargs)

        with_options = copy

    class AsyncKeyvaultAnthropic(anthropic.AsyncAnthropic):  # type: ignore[misc, name-defined]
        """An `anthropic.AsyncAnthropic` whose key is resolved by keyvault and renewed on 401."""

        def __init__(self, *, keyvault_ref: _KeyRef, **kwargs: Any) -> None:
            init(AsyncKeyvaultAnthropic, self, keyvault_ref, kwargs)

        api_key = property(api_key_get, api_key_set)  # type: ignore[assignment]

        def copy(self, **kwargs: Any) -> Any:
            return copy(AsyncKeyvaultAnthropic, self, kwargs)

        with_options = copy

    _classes["sync"], _classes["async"] = KeyvaultAnthropic, AsyncKeyvaultAnthropic
    return KeyvaultAnthropic, AsyncKeyvaultAnthropic


def _client_kwargs(kwargs: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    for name in ("api_key", "auth_token", "credentials", "config", "profile"):
        if name in kwargs:
            raise TypeError(f"anthropic_client resolves the key itself; do not pass {name}= (pass source= instead)")
    ttl = kwargs.pop("ttl", None)
    return ttl, kwargs


def anthropic_client(source: str | None = None, **kwargs: Any) -> Any:
    """An `anthropic.Anthropic` using the resolved key; on a 401 it re-reads the key once and
    retries the call, so a running app survives a rotation. Other keyword arguments go to the
    SDK (base_url, max_retries, timeout, ...); `ttl=` sets how long the key is cached."""
    ttl, kwargs = _client_kwargs(kwargs)
    sync_cls, _ = _client_classes()
    return sync_cls(keyvault_ref=_KeyRef(source, ttl), **kwargs)


def async_anthropic_client(source: str | None = None, **kwargs: Any) -> Any:
    """`anthropic_client` for asyncio/trio: an `anthropic.AsyncAnthropic`; backend reads run in
    a worker thread, never on the event loop."""
    ttl, kwargs = _client_kwargs(kwargs)
    _, async_cls = _client_classes()
    ref = _KeyRef(source, ttl)
    return async_cls(keyvault_ref=ref, **kwargs)
