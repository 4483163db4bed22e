"""file backend: the encrypted store's passphrase handling, tamper detection, layout and modes."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from keyvault.backends import open_backend
from keyvault.errors import BackendError, PermissionDeniedError
from keyvault.testing.keygen import make_key


@pytest.fixture
def store(tmp_path: Path, store_passphrase: str, _store_template: Path) -> Path:
    import shutil

    path = tmp_path / "store"
    shutil.copyfile(_store_template, path)
    return path


def put(path: Path, entry: str, key: Any) -> Any:
    backend = open_backend(f"file://{path}#{entry}")
    backend.stage(key)
    backend.promote("")
    return backend


def test_values_are_encrypted_and_versions_recorded(store: Path) -> None:
    k1, k2 = make_key(), make_key()
    backend = put(store, "prod", k1)
    backend.stage(k2)
    backend.promote(k1.fingerprint)
    raw = store.read_bytes()
    for key in (k1, k2):
        assert key.reveal().encode() not in raw
        assert key.reveal()[13:40].encode() not in raw
    assert b"prod" in raw  # entry names are not secret
    current = backend.read()
    assert current.secret == k2 and current.version == "2"
    assert current.created is not None and current.created.tzinfo is not None
    stages = {i.stages[0]: (i.version, i.fingerprint) for i in backend.versions()}
    assert stages == {"current": ("2", k2.fingerprint), "previous": ("1", k1.fingerprint)}
    assert (store.stat().st_mode & 0o777) == 0o600


def test_wrong_passphrase_is_a_clear_error(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key()
    put(store, "prod", key)
    monkeypatch.setenv("KEYVAULT_PASSPHRASE", "not the passphrase")
    with pytest.raises(PermissionDeniedError) as info:
        open_backend(f"file://{store}#prod").read()
    message = str(info.value)
    assert "wrong passphrase" in message and "KEYVAULT_PASSPHRASE" in message and str(store) in message
    assert key.reveal() not in message


def test_no_passphrase_names_both_options(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYVAULT_PASSPHRASE")
    monkeypatch.setitem(sys.modules, "keyring", None)  # as on a machine without the keyring package
    with pytest.raises(PermissionDeniedError) as info:
        open_backend(f"file://{store}#prod").read()
    assert "KEYVAULT_PASSPHRASE" in str(info.value) and "keyring" in str(info.value)


def _tamper(path: Path, edit: Any) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_tampered_ciphertext_fails_authentication(store: Path) -> None:
    key = make_key()
    put(store, "prod", key)

    def flip(doc: dict[str, Any]) -> None:
        blob = bytearray(base64.b64decode(doc["entries"]["prod"]["ciphertext"]))
        blob[10] ^= 1
        doc["entries"]["prod"]["ciphertext"] = base64.b64encode(bytes(blob)).decode()

    _tamper(store, flip)
    with pytest.raises(BackendError) as info:
        open_backend(f"file://{store}#prod").read()
    assert "failed authentication" in str(info.value) and "'prod'" in str(info.value)
    assert key.reveal() not in str(info.value)


def test_an_entry_copied_under_another_name_is_rejected(store: Path) -> None:
    put(store, "dev", make_key())
    put(store, "prod", make_key())
    _tamper(store, lambda doc: doc["entries"].__setitem__("prod", doc["entries"]["dev"]))
    with pytest.raises(BackendError, match="failed authentication"):
        open_backend(f"file://{store}#prod").read()


def test_altered_kdf_parameters_are_detected(store: Path) -> None:
    put(store, "prod", make_key())
    _tamper(store, lambda doc: doc["kdf"].__setitem__("n", 2**14))
    with pytest.raises(PermissionDeniedError, match="header was altered"):
        open_backend(f"file://{store}#prod").read()


def test_not_a_store(tmp_path: Path, store_passphrase: str) -> None:
    path = tmp_path / "store"
    path.write_text('{"format": "keyvault-store/1",\n "entries": [}')
    with pytest.raises(BackendError, match="line 2 column"):
        open_backend(f"file://{path}#prod").read()
    path.write_text('{"hello": 1}')
    with pytest.raises(BackendError, match="not a keyvault store"):
        open_backend(f"file://{path}#prod").read()


def test_missing_store_and_entry(store: Path, tmp_path: Path) -> None:
    put(store, "prod", make_key())
    with pytest.raises(BackendError, match=r"no entry 'staging' .*entries: prod"):
        open_backend(f"file://{store}#staging").read()
    with pytest.raises(BackendError, match="does not exist"):
        open_backend(f"file://{tmp_path / 'nope'}#prod").read()


def test_writing_one_entry_leaves_the_others_byte_identical(store: Path) -> None:
    put(store, "dev", make_key())
    prod_key = make_key()
    put(store, "prod", prod_key)
    before = json.loads(store.read_text())["entries"]["dev"]
    backend = open_backend(f"file://{store}#prod")
    backend.stage(make_key())
    backend.promote(prod_key.fingerprint)
    assert json.loads(store.read_text())["entries"]["dev"] == before


def test_default_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_passphrase: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    key = make_key()
    backend = open_backend("file://#prod")
    backend.stage(key)
    backend.promote("")
    path = tmp_path / ".config" / "keyvault" / "store"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert open_backend(f"file://{path}#prod").read().secret == key


FAKE_KEYRING = textwrap.dedent(
    '''
    """A stand-in for the keyring package with an in-memory backend."""
    from keyring.backends import fail
    PASSWORDS = {}
    class MemoryKeyring:
        pass
    def get_keyring():
        return MemoryKeyring()
    def get_password(service, user):
        return PASSWORDS.get((service, user))
    def set_password(service, user, value):
        PASSWORDS[(service, user)] = value
    '''
)


def test_passphrase_from_the_os_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fake-site" / "keyring"
    (package / "backends").mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_KEYRING)
    (package / "backends" / "__init__.py").write_text("")
    (package / "backends" / "fail.py").write_text("class Keyring:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fake-site"))
    for name in [m for m in sys.modules if m == "keyring" or m.startswith("keyring.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delenv("KEYVAULT_PASSPHRASE", raising=False)
    key = make_key()
    path = tmp_path / "store"
    put(path, "prod", key)  # a new store: a random passphrase is created in the keyring
    import keyring

    saved = keyring.PASSWORDS[("keyvault", str(path.resolve()))]
    assert len(saved) >= 32
    assert open_backend(f"file://{path}#prod").read().secret == key
    keyring.PASSWORDS.clear()
    with pytest.raises(PermissionDeniedError, match="keyring has no entry"):
        open_backend(f"file://{path}#prod").read()
    for name in [m for m in sys.modules if m == "keyring" or m.startswith("keyring.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize("kind", ["dotenv", "file"])
def test_rotation_state_refuses_key_values(kind: str, tmp_path: Path, store: Path) -> None:
    key = make_key()
    if kind == "dotenv":
        (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={key.reveal()}\n")
        backend = open_backend(f"dotenv://{tmp_path / '.env'}")
    else:
        backend = put(store, "prod", key)
    with pytest.raises(BackendError) as info:
        backend.write_state({"new": key.reveal()}, None)
    assert key.reveal() not in str(info.value)
    token = backend.write_state({"new_hint": key.hint, "new_fp": key.fingerprint}, None)  # hints are fine
    assert backend.read_state() == ({"new_hint": key.hint, "new_fp": key.fingerprint}, token)
