"""`file://PATH#NAME`: a local store encrypted with AES-GCM (default `~/.config/keyvault/store`,
default NAME `default`). The embedded home of rotation state on a single machine.

Layout (JSON, mode 0600):

    {"format": "keyvault-store/1",
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": b64},
     "data_key": {"nonce": b64, "ciphertext": b64},      # 32-byte data key, wrapped
     "entries": {"prod": {"nonce": b64, "ciphertext": b64}, ...}}

- The data key is random and wrapped (AES-256-GCM) by a key derived from the passphrase with
  scrypt; the AAD of the wrap binds the format and the KDF parameters. The passphrase comes from
  `KEYVAULT_PASSPHRASE`, or else from the OS keyring when the `keyring` package is installed
  and has a working backend (service `keyvault`, user = the store's absolute path; a new store
  gets a random passphrase saved there).
- Each entry is one AES-256-GCM ciphertext of its whole record (current/pending/previous slots
  with value, version counter and created time; rotation state and its token), with the AAD
  `keyvault-store/1 entry\\0<name>`: an entry copied under another name, or any altered byte,
  fails authentication instead of being served. What it cannot detect: the whole file (or one
  entry) replaced by an older copy of itself; keep the store where only its owner can write.
- Version ids are a per-entry counter ("1", "2", ...) assigned when a value is staged; created
  is the time it was staged (UTC).
- Writes: exclusive flock on `<store>.keyvault-lock`, re-read and compare-and-swap, atomic
  replace (temp, fsync, rename, fsync dir), never a file owned by another user.

The first key of an entry is written with `stage(key)` then `promote("")` (empty expected
fingerprint = "this entry has no current key yet").
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from keyvault.backends import Source, Version, VersionInfo
from keyvault.backends.localfs import atomic_write, check_state, check_writable, exclusive_lock, follow_link_within
from keyvault.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError, SourceError
from keyvault.keys import Secret

FORMAT = "keyvault-store/1"
DEFAULT_PATH = "~/.config/keyvault/store"
DEFAULT_ENTRY = "default"
PASSPHRASE_ENV = "KEYVAULT_PASSPHRASE"
KEYRING_SERVICE = "keyvault"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}  # ~32 MiB, ~0.1 s: a store is opened once per process
STAGES = ("current", "pending", "previous")

_kek_cache: dict[tuple[bytes, int, int, int, str], bytes] = {}
_kek_lock = threading.Lock()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    import base64
    import binascii

    if not isinstance(text, str):
        raise ValueError("not base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64 text") from None


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt, cached per (salt, parameters, passphrase digest): every write re-opens the store."""
    cache_key = (salt, n, r, p, hashlib.sha256(passphrase.encode("utf-8")).hexdigest())
    with _kek_lock:
        kek = _kek_cache.get(cache_key)
    if kek is None:
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
        with _kek_lock:
            _kek_cache[cache_key] = kek
    return kek


def _kdf_aad(kdf: dict[str, Any]) -> bytes:
    return f"{FORMAT} data-key\0".encode() + json.dumps(kdf, sort_keys=True, separators=(",", ":")).encode()


def _entry_aad(name: str) -> bytes:
    return f"{FORMAT} entry\0{name}".encode("utf-8")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class FileBackend:
    writable = True

    def __init__(self, source: Source) -> None:
        self.source = source
        self.path = Path(os.path.expanduser(source.location or DEFAULT_PATH))
        self.entry = source.field or DEFAULT_ENTRY
        if not self.entry or any(c in self.entry for c in "\0\n\r"):
            raise SourceError(f"source {source}: {self.entry!r} is not a usable entry name")

    # the passphrase ----------------------------------------------------------------------

    def _passphrase(self, *, creating: bool) -> tuple[str, str]:
        """(passphrase, where it came from)."""
        value = os.environ.get(PASSPHRASE_ENV)
        if value:
            return value, PASSPHRASE_ENV
        account = str(self.path.resolve())
        try:
            import keyring
            from keyring.backends import fail
        except ImportError:
            keyring = None
        if keyring is not None and not isinstance(keyring.get_keyring(), fail.Keyring):
            try:
                value = keyring.get_password(KEYRING_SERVICE, account)
                if not value and creating:
                    value = secrets.token_urlsafe(32)
                    keyring.set_password(KEYRING_SERVICE, account, value)
            except Exception as exc:  # the keyring's own errors: locked, no D-Bus, denied...
                raise PermissionDeniedError(
                    f"{self.source}: the OS keyring failed ({type(exc).__name__}); "
                    f"set {PASSPHRASE_ENV} instead"
                ) from None
            if value:
                return value, "the OS keyring"
            raise PermissionDeniedError(
                f"{self.source}: no passphrase for the encrypted store {self.path}: the OS keyring has "
                f"no entry (service {KEYRING_SERVICE!r}, user {account!r}); set {PASSPHRASE_ENV}, or save it "
                f"with: keyring set {KEYRING_SERVICE} {account}"
            )
        raise PermissionDeniedError(
            f"{self.source}: no passphrase for the encrypted store {self.path}: set {PASSPHRASE_ENV}, "
            "or install the 'keyring' package with a working OS keyring backend "
            f"(the passphrase is then kept under service {KEYRING_SERVICE!r})"
        )

    # the store file ----------------------------------------------------------------------

    def _damaged(self, why: str) -> BackendError:
        return BackendError(
            f"{self.source}: the store {self.path} is damaged ({why}); restore it from a backup"
        )

    def _load(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise BackendError(f"{self.source}: {self.path} is a directory, not a keyvault store") from None
        except PermissionError:
            raise PermissionDeniedError(f"{self.source}: cannot read {self.path}: permission denied") from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise BackendError(f"{self.source}: {self.path} is not a keyvault store (not UTF-8 JSON)") from None
        except json.JSONDecodeError as exc:
            raise BackendError(
                f"{self.source}: {self.path} is not a keyvault store (line {exc.lineno} column {exc.colno}: {exc.msg})"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise BackendError(
                f"{self.source}: {self.path} is not a keyvault store (format {found!r}, expected {FORMAT!r})"
            )
        if not isinstance(doc.get("entries"), dict) or not isinstance(doc.get("kdf"), dict):
            raise self._damaged("missing 'entries' or 'kdf'")
        return doc

    def _data_key(self, doc: dict[str, Any]) -> bytes:
        from cryptography.exceptions import InvalidTag

        kdf = doc["kdf"]
        try:
            if kdf.get("name") != "scrypt":
                raise ValueError(f"unknown kdf {kdf.get('name')!r}")
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            salt = _unb64(kdf["salt"])
            wrapped = doc["data_key"]
            nonce, ciphertext = _unb64(wrapped["nonce"]), _unb64(wrapped["ciphertext"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._damaged(f"header: {exc}") from None
        passphrase, origin = self._passphrase(creating=False)
        try:
            kek = _derive(passphrase, salt, n, r, p)
        except ValueError as exc:  # scrypt parameters out of range
            raise self._damaged(f"kdf parameters: {exc}") from None
        try:
            return _aesgcm(kek).decrypt(nonce, ciphertext, _kdf_aad(kdf))
        except (InvalidTag, ValueError):
            raise PermissionDeniedError(
                f"{self.source}: cannot open the store {self.path}: wrong passphrase (from {origin}), "
                "or the store's header was altered"
            ) from None

    def _new_store(self) -> tuple[dict[str, Any], bytes]:
        passphrase, _ = self._passphrase(creating=True)
        kdf = {"name": "scrypt", **SCRYPT, "salt": _b64(os.urandom(16))}
        data_key = os.urandom(32)
        kek = _derive(passphrase, _unb64(kdf["salt"]), SCRYPT["n"], SCRYPT["r"], SCRYPT["p"])
        nonce = os.urandom(12)
        wrapped = {"nonce": _b64(nonce), "ciphertext": _b64(_aesgcm(kek).encrypt(nonce, data_key, _kdf_aad(kdf)))}
        return {"format": FORMAT, "kdf": kdf, "data_key": wrapped, "entries": {}}, data_key

    def _record(self, doc: dict[str, Any], data_key: bytes) -> dict[str, Any] | None:
        from cryptography.exceptions import InvalidTag

        blob = doc["entries"].get(self.entry)
        if blob is None:
            return None
        try:
            nonce, ciphertext = _unb64(blob["nonce"]), _unb64(blob["ciphertext"])
            plain = _aesgcm(data_key).decrypt(nonce, ciphertext, _entry_aad(self.entry))
        except (InvalidTag, KeyError, TypeError, ValueError):
            raise BackendError(
                f"{self.source}: entry {self.entry!r} in {self.path} failed authentication: it was altered "
                "or corrupted outside keyvault (or copied from another entry); restore the store from a backup"
            ) from None
        record = json.loads(plain.decode("utf-8"))
        record.setdefault("slots", {})
        return record

    def _seal(self, doc: dict[str, Any], data_key: bytes, record: dict[str, Any]) -> None:
        nonce = os.urandom(12)
        plain = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")
        ciphertext = _aesgcm(data_key).encrypt(nonce, plain, _entry_aad(self.entry))
        doc["entries"][self.entry] = {"nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}

    def _open(self) -> dict[str, Any]:
        """The entry's record for reading; NotFound names what is missing."""
        doc = self._load()
        if doc is None:
            raise NotFoundError(
                f"{self.source}: the store {self.path} does not exist; put a key in it first "
                "(stage the key, then promote it)"
            )
        record = self._record(doc, self._data_key(doc))
        if record is None:
            names = ", ".join(sorted(doc["entries"])) or "none"
            raise NotFoundError(f"{self.source}: no entry {self.entry!r} in the store {self.path} (entries: {names})")
        return record

    def _write(self, doc: dict[str, Any]) -> None:
        # a link to a store elsewhere in the store's own directory tree is followed; one out of it
        # (another user's home, a shared mount) is refused, as is a store owned by someone else
        target = follow_link_within(self.path, self.path.parent, what=str(self.source),
                                    tree="the store's directory",
                                    fix="keep the store in that directory, or name the real path in the source")
        target = Path(os.path.realpath(target))
        check_writable(target, what=str(self.source))
        body = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        atomic_write(target, body.encode("utf-8"), what=str(self.source))

    @contextmanager
    def _mutate(self) -> Iterator[tuple[dict[str, Any], bytes, dict[str, Any]]]:
        """(doc, data_key, record) under the lock, re-read; the caller seals and writes."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BackendError(f"{self.source}: cannot create {self.path.parent}: {exc.strerror or exc}") from None
        with exclusive_lock(self.path, what=str(self.source)):
            doc = self._load()
            if doc is None:
                doc, data_key = self._new_store()
            else:
                data_key = self._data_key(doc)
            record = self._record(doc, data_key) or {"counter": 0, "slots": {}}
            yield doc, data_key, record

    # the protocol --------------------------------------------------------------------------

    def _version(self, slot: dict[str, Any], stage: str) -> Version:
        created = slot.get("created")
        return Version(
            secret=Secret(slot["value"]),
            version=str(slot["version"]),
            created=datetime.fromisoformat(created) if created else None,
            stage=stage,
        )

    def read(self) -> Version:
        slot = self._open()["slots"].get("current")
        if slot is None:
            raise NotFoundError(
                f"{self.source}: entry {self.entry!r} has no current key yet (only a staged one?); promote it first"
            )
        return self._version(slot, "current")

    def read_pending(self) -> Version | None:
        try:
            record = self._open()
        except NotFoundError:
            return None
        slot = record["slots"].get("pending")
        return None if slot is None else self._version(slot, "pending")

    def read_previous(self) -> Version | None:
        """The key the last promote replaced, kept for rollback."""
        slot = self._open()["slots"].get("previous")
        return None if slot is None else self._version(slot, "previous")

    def versions(self) -> list[VersionInfo]:
        slots = self._open()["slots"]
        out = []
        for stage in STAGES:
            slot = slots.get(stage)
            if slot is not None:
                v = self._version(slot, stage)
                out.append(VersionInfo(v.version, (stage,), v.created, v.secret.fingerprint))
        return out

    def _expect(self, record: dict[str, Any], expected_current: str, step: str) -> dict[str, Any] | None:
        current = record["slots"].get("current")
        actual = Secret(current["value"]).fingerprint if current else ""
        if actual != expected_current:
            held = f"holds {Secret(current['value']).hint}" if current else "holds no key"
            raise ConflictError(
                f"{self.source}: cannot {step}: entry {self.entry!r} changed since it was read (it now {held}, "
                f"fingerprint {actual[:12] or '-'}; expected {expected_current[:12] or 'no key'}); nothing was written"
            )
        return current

    def stage(self, secret: Secret) -> Version:
        """Put a key in the pending slot with a new version number; the same key again is a
        no-op. Another key is refused while one is staged (it may be the only copy of a key
        the Console showed once): clear it first."""
        if not isinstance(secret, Secret):
            raise TypeError("stage takes a keyvault.keys.Secret")
        with self._mutate() as (doc, data_key, record):
            pending = record["slots"].get("pending")
            if pending is not None:
                if Secret(pending["value"]) == secret:
                    return self._version(pending, "pending")
                raise ConflictError(
                    f"{self.source}: another key ({Secret(pending['value']).hint}) is already staged in entry "
                    f"{self.entry!r}; promote it, or clear it first if it is abandoned (it may be the only copy "
                    "of a key shown once)"
                )
            record["counter"] = int(record.get("counter", 0)) + 1
            slot = {"value": secret.reveal(), "version": record["counter"], "created": _now().isoformat()}
            record["slots"]["pending"] = slot
            self._seal(doc, data_key, record)
            self._write(doc)
        return self._version(slot, "pending")

    def clear_pending(self) -> None:
        if not self.path.exists():
            return
        with self._mutate() as (doc, data_key, record):
            if record["slots"].pop("pending", None) is None:
                return
            self._seal(doc, data_key, record)
            self._write(doc)

    def promote(self, expected_current: str) -> Version:
        with self._mutate() as (doc, data_key, record):
            current = self._expect(record, expected_current, "promote the staged key")
            pending = record["slots"].pop("pending", None)
            if pending is None:
                raise NotFoundError(f"{self.source}: nothing to promote: entry {self.entry!r} has no staged key")
            record["slots"]["current"] = pending
            if current is not None:
                record["slots"]["previous"] = current
            self._seal(doc, data_key, record)
            self._write(doc)
        return self._version(pending, "current")

    def rollback(self, expected_current: str) -> Version:
        with self._mutate() as (doc, data_key, record):
            current = self._expect(record, expected_current, "roll back")
            previous = record["slots"].get("previous")
            if previous is None:
                raise NotFoundError(f"{self.source}: nothing to roll back to: entry {self.entry!r} has no previous key")
            record["slots"]["current"], record["slots"]["previous"] = previous, current
            self._seal(doc, data_key, record)
            self._write(doc)
        return self._version(previous, "current")

    def read_state(self) -> tuple[dict[str, str] | None, str | None]:
        doc = self._load()
        if doc is None:
            return None, None
        record = self._record(doc, self._data_key(doc))
        if record is None or record.get("state_token") is None:
            return None, None
        return dict(record.get("state") or {}), str(record["state_token"])

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str:
        check_state(state, str(self.source))
        with self._mutate() as (doc, data_key, record):
            if record.get("state_token") != expected_token:
                raise ConflictError(
                    f"{self.source}: the rotation state of entry {self.entry!r} changed since it was read "
                    "(another rotator?); nothing was written; read it again"
                )
            token = secrets.token_hex(8)
            record["state"], record["state_token"] = dict(state), token
            self._seal(doc, data_key, record)
            self._write(doc)
        return token
