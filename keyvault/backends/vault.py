"""Vault / OpenBao KV v2: `vault://MOUNT/PATH#field`.

`vault://secret/apps/chat#api_key` reads field `api_key` of the KV v2 secret `apps/chat` on the
mount `secret`. A mount whose name has slashes is given as `?mount=team/kv`. Without `#field`
the secret must hold exactly one field.

Connection: `VAULT_ADDR` (or `?addr=`), `VAULT_NAMESPACE` (or `?namespace=`), `VAULT_CACERT`,
`VAULT_SKIP_VERIFY`. Authentication (`?auth=`):
- `token` (default): `VAULT_TOKEN`, else the token file the vault/bao CLI writes
  (`~/.vault-token`), read by this module only when `VAULT_TOKEN` is unset;
- `approle`: `VAULT_ROLE_ID` and `VAULT_SECRET_ID` (`?auth_mount=` when not `approle`);
- `kubernetes`: `?role=R`, the pod's service-account token
  (`/var/run/secrets/kubernetes.io/serviceaccount/token`, or `?jwt_path=`).
A login token that expires is renewed by logging in again once.

Rotation on KV v2, which has versions and `cas` but no labels:
- current = the latest version of PATH;
- stage = write `{field: new}` to the sibling `PATH__pending` with `cas` (0 when it does not
  exist), so two stagers cannot silently overwrite each other; a different staged key is
  refused (clear it first). KV v2 numbers a version when it is written, so a staged key's
  version is the number it gets when promoted (current + 1), as long as nobody else writes
  PATH in between; promote returns the number actually written;
- promote = write PATH with the pending value, every other field kept, `cas=<version read>`
  after the fingerprint check: Vault refuses the write if anyone wrote PATH since;
  then delete `PATH__pending`;
- previous = the newest older version whose key differs from the current one (edits of other
  fields make versions too); rollback writes it back with `cas`;
- rotation state = the fields of `PATH__keyvault-state`, its version number is the token, `cas`
  is the compare-and-swap.

hvac is imported on first use, never by `import keyvault`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from keyvault.backends import Source, Version, VersionInfo, check_params
from keyvault.backends.localfs import check_state
from keyvault.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SourceError,
)
from keyvault.keys import Secret

PENDING_SUFFIX = "__pending"
STATE_SUFFIX = "__keyvault-state"
K8S_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_PARAMS = {"addr", "namespace", "mount", "auth", "auth_mount", "role", "jwt_path"}
_AUTHS = {"token", "approle", "kubernetes"}
T = TypeVar("T")


def _created(metadata: dict[str, Any] | None) -> datetime | None:
    text = (metadata or {}).get("created_time") or ""
    if not text:
        return None
    # RFC 3339 with nanoseconds: keep microseconds so fromisoformat accepts it on 3.10
    head, _, tail = text.rstrip("Z").partition(".")
    digits = "".join(c for c in tail if c.isdigit())[:6]
    try:
        return datetime.fromisoformat(head + (f".{digits}" if digits else "")).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


class VaultBackend:
    writable = True

    def __init__(self, source: Source) -> None:
        self.source = source
        check_params(source, _PARAMS)
        location = source.location.strip("/")
        mount = source.params.get("mount", "").strip("/")
        if mount:
            if not location.startswith(mount + "/"):
                raise SourceError(f"source {source}: the path does not start with the mount {mount!r}")
            path = location[len(mount) + 1:]
        else:
            mount, _, path = location.partition("/")
        if not mount or not path:
            raise SourceError(
                f"source {source}: expected vault://MOUNT/PATH#field, e.g. vault://secret/apps/chat#api_key"
            )
        self.mount, self.path, self.field = mount, path, source.field
        self.pending_path = path + PENDING_SUFFIX
        self.state_path = path + STATE_SUFFIX
        self.auth = source.params.get("auth", "token")
        if self.auth not in _AUTHS:
            raise SourceError(f"source {source}: auth={self.auth} is not one of {', '.join(sorted(_AUTHS))}")
        if self.auth == "kubernetes" and not source.params.get("role"):
            raise SourceError(f"source {source}: auth=kubernetes needs role=<Vault role>")
        self.addr = source.params.get("addr") or os.environ.get("VAULT_ADDR") or ""
        self.namespace = source.params.get("namespace") or os.environ.get("VAULT_NAMESPACE") or None
        self._client: Any = None

    # -- connection -------------------------------------------------------------------------

    def _where(self, path: str | None = None) -> str:
        ns = f" namespace {self.namespace}," if self.namespace else ""
        return f"{self.source} (Vault{ns} {self.mount}/{path or self.path} at {self.addr or 'VAULT_ADDR unset'})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        try:
            import hvac
        except ImportError:
            raise SourceError(f"source {self.source}: hvac is not installed; pip install 'keyvault-anthropic[vault]'") from None
        if not self.addr:
            raise SourceError(f"source {self.source}: no Vault address; set VAULT_ADDR (or ?addr=https://vault:8200)")
        verify: bool | str = True
        if os.environ.get("VAULT_CACERT"):
            verify = os.environ["VAULT_CACERT"]
        elif os.environ.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "true", "yes"):
            verify = False
        # token="" (never None): hvac would read ~/.vault-token and VAULT_TOKEN on its own
        client = hvac.Client(url=self.addr, token="", namespace=self.namespace, verify=verify, timeout=15)
        if self.auth == "token":
            client.token = self._token()
        else:
            self._login(client)
        return client

    def _token(self) -> str:
        token = os.environ.get("VAULT_TOKEN", "").strip()
        if token:
            return token
        file = Path.home() / ".vault-token"
        if file.is_file():
            return file.read_text().strip()
        raise PermissionDeniedError(
            f"{self._where()}: no Vault token; set VAULT_TOKEN, run `vault login`, or use "
            "?auth=approle (VAULT_ROLE_ID, VAULT_SECRET_ID) or ?auth=kubernetes&role=R"
        )

    def _login(self, client: Any) -> None:
        mount = self.source.params.get("auth_mount") or self.auth
        if self.auth == "approle":
            role_id, secret_id = os.environ.get("VAULT_ROLE_ID"), os.environ.get("VAULT_SECRET_ID")
            if not role_id or not secret_id:
                raise PermissionDeniedError(f"{self._where()}: auth=approle needs VAULT_ROLE_ID and VAULT_SECRET_ID set")
            self._guard(lambda: client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mount),
                        "log in with AppRole", None)
        else:
            jwt_path = Path(self.source.params.get("jwt_path") or K8S_TOKEN)
            try:
                jwt = jwt_path.read_text().strip()
            except OSError as exc:
                raise PermissionDeniedError(
                    f"{self._where()}: cannot read the service-account token {jwt_path} ({exc.strerror}); "
                    "is this running in a pod with a mounted service account?"
                ) from None
            role = self.source.params["role"]
            self._guard(lambda: client.auth.kubernetes.login(role=role, jwt=jwt, mount_point=mount),
                        f"log in with Kubernetes role {role!r}", None)

    def _guard(self, call: Callable[[], T], doing: str, path: str | None) -> T:
        """Run one hvac call; translate its failure into a keyvault error that names the fix."""
        import hvac.exceptions as hx
        import requests

        where = self._where(path)
        try:
            return call()
        except hx.Forbidden:
            raise PermissionDeniedError(
                f"{where}: permission denied to {doing}; the token is invalid or expired, or its policies do not "
                "allow it (policies/vault/reader.hcl to read, policies/vault/rotator.hcl to rotate)"
            ) from None
        except hx.Unauthorized:
            raise PermissionDeniedError(f"{where}: Vault rejected the credentials to {doing}") from None
        except hx.InvalidPath:
            raise NotFoundError(
                f"{where}: not found ({doing}); check the path, that {self.mount}/ is a KV v2 mount, "
                "and the namespace"
            ) from None
        except hx.InvalidRequest as exc:
            text = str(exc)
            if "check-and-set" in text:
                raise ConflictError(f"{where}: cannot {doing}: it changed since it was read (check-and-set failed)") from None
            if "invalid role" in text or "secret id" in text.lower():
                raise PermissionDeniedError(f"{where}: cannot {doing}: invalid role or secret ID") from None
            raise BackendError(f"{where}: cannot {doing}: {text.split(', on ')[0][:300]}") from None
        except hx.VaultDown:
            raise BackendError(f"{where}: Vault is sealed or down; unseal it or try another node") from None
        except hx.VaultError as exc:
            raise BackendError(f"{where}: cannot {doing}: {type(exc).__name__}: {str(exc).split(', on ')[0][:300]}") from None
        except requests.exceptions.RequestException as exc:
            raise BackendError(f"{where}: cannot reach Vault ({type(exc).__name__}); check VAULT_ADDR") from None

    def _do(self, call: Callable[[Any], T], doing: str, path: str | None = None) -> T:
        """`_guard` with one re-login when a login token (AppRole, Kubernetes) has expired."""
        try:
            return self._guard(lambda: call(self.client), doing, path)
        except PermissionDeniedError:
            if self.auth == "token" or self._client is None:
                raise
            self._client = None
            return self._guard(lambda: call(self.client), doing, path)

    # -- KV v2 ------------------------------------------------------------------------------

    def _read(self, path: str, version: int | None = None) -> tuple[dict[str, Any], int, datetime | None]:
        response = self._do(
            lambda c: c.secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=self.mount, raise_on_deleted_version=True
            ),
            f"read version {version}" if version else "read", path,
        )
        data = response["data"]
        return dict(data.get("data") or {}), int(data["metadata"]["version"]), _created(data["metadata"])

    def _read_optional(self, path: str) -> tuple[dict[str, Any], int, datetime | None] | None:
        try:
            return self._read(path)
        except NotFoundError:
            return None

    def _metadata(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self._do(lambda c: c.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount),
                                 "read metadata", path)["data"])
        except NotFoundError:
            return None

    def _write(self, path: str, data: dict[str, Any], cas: int, doing: str) -> tuple[int, datetime | None]:
        response = self._do(
            lambda c: c.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas, mount_point=self.mount),
            doing, path,
        )
        meta = response["data"]
        return int(meta["version"]), _created(meta)

    def _delete_all(self, path: str) -> None:
        self._do(lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount),
                 "delete", path)

    def _field_of(self, data: dict[str, Any], path: str) -> str:
        if self.field is not None:
            return self.field
        if len(data) == 1:
            return next(iter(data))
        names = ", ".join(sorted(data)) or "none"
        raise BackendError(
            f"{self._where(path)}: the secret has fields {names}; name the one holding the key, "
            "e.g. '#api_key' at the end of the source"
        )

    def _value(self, data: dict[str, Any], path: str, field: str | None = None) -> str:
        field = field or self._field_of(data, path)
        if field not in data:
            names = ", ".join(sorted(data)) or "none"
            raise NotFoundError(f"{self._where(path)}: no field {field!r} (fields: {names})")
        value = data[field]
        if not isinstance(value, str):
            raise BackendError(f"{self._where(path)}: field {field!r} holds a {type(value).__name__}, not a string")
        return value

    # -- the protocol -----------------------------------------------------------------------

    def read(self) -> Version:
        data, version, created = self._read(self.path)
        return Version(Secret(self._value(data, self.path)), str(version), created, "current")

    def read_pending(self) -> Version | None:
        found = self._read_optional(self.pending_path)
        if found is None:
            return None
        data, _, created = found
        _, current_version, _ = self._read(self.path)
        return Version(Secret(self._value(data, self.pending_path)), str(current_version + 1), created, "pending")

    def stage(self, secret: Secret) -> Version:
        current, version, _ = self._read(self.path)
        field = self._field_of(current, self.path)
        meta = self._metadata(self.pending_path)
        cas = int(meta["current_version"]) if meta else 0
        if meta:
            found = self._read_optional(self.pending_path)
            if found is not None:
                staged = self._value(found[0], self.pending_path, field)
                if staged == secret.reveal():
                    return Version(secret, str(version + 1), found[2], "pending")
                raise ConflictError(
                    f"{self._where(self.pending_path)}: another key ({Secret(staged).hint}) is already staged; "
                    "promote it, or clear it first if it is abandoned (it may be the only copy of a key shown once)"
                )
        _, created = self._write(self.pending_path, {field: secret.reveal()}, cas, "stage the new key")
        return Version(secret, str(version + 1), created, "pending")

    def clear_pending(self) -> None:
        self._delete_all(self.pending_path)

    def promote(self, expected_current: str) -> Version:
        data, version, created = self._read(self.path)
        field = self._field_of(data, self.path)
        pending = self._read_optional(self.pending_path)
        if pending is None:
            raise NotFoundError(f"{self._where(self.pending_path)}: no pending key to promote; stage one first")
        new = self._value(pending[0], self.pending_path, field)
        current = self._value(data, self.path, field)
        if current == new:  # an earlier promote wrote PATH, then stopped
            self._delete_all(self.pending_path)
            return Version(Secret(new), str(version), created, "current")
        self._check(current, expected_current, "promote")
        written, when = self._write(self.path, {**data, field: new}, version, "promote the pending key")
        self._delete_all(self.pending_path)
        return Version(Secret(new), str(written), when, "current")

    def _previous(self, data: dict[str, Any], version: int, field: str) -> Version | None:
        """The newest older version whose key differs from the current key."""
        current = data.get(field)
        meta = self._metadata(self.path) or {}
        versions = meta.get("versions") or {}
        oldest = int(meta.get("oldest_version") or 1)
        for number in range(version - 1, max(oldest, 1) - 1, -1):
            info = versions.get(str(number)) or {}
            if info.get("destroyed") or info.get("deletion_time"):
                continue
            try:
                old, _, created = self._read(self.path, number)
            except NotFoundError:
                continue
            value = old.get(field)
            if isinstance(value, str) and value != current:
                return Version(Secret(value), str(number), created, "previous")
        return None

    def read_previous(self) -> Version | None:
        """The key this secret held before the current one (what rollback restores)."""
        data, version, _ = self._read(self.path)
        return self._previous(data, version, self._field_of(data, self.path))

    def rollback(self, expected_current: str) -> Version:
        data, version, _ = self._read(self.path)
        field = self._field_of(data, self.path)
        self._check(self._value(data, self.path, field), expected_current, "roll back")
        previous = self._previous(data, version, field)
        if previous is None:
            raise NotFoundError(f"{self._where()}: no earlier version holds a different key to roll back to")
        written, when = self._write(self.path, {**data, field: previous.secret.reveal()}, version, "roll back")
        return Version(previous.secret, str(written), when, "current")

    def _check(self, current: str, expected: str, step: str) -> None:
        found = Secret(current).fingerprint
        if found != expected:
            raise ConflictError(
                f"{self._where()}: cannot {step}: the current key changed since it was read "
                f"(fingerprint {found[:12]}, expected {expected[:12]}); another rotation ran? re-plan"
            )

    def versions(self) -> list[VersionInfo]:
        meta = self._metadata(self.path)
        if meta is None:
            raise NotFoundError(f"{self._where()}: not found")
        current = int(meta["current_version"])
        infos: list[VersionInfo] = []
        field: str | None = None
        current_value: str | None = None
        previous_seen = False
        for number in sorted((int(n) for n in meta.get("versions") or {}), reverse=True):
            info = meta["versions"][str(number)]
            state = "destroyed" if info.get("destroyed") else "disabled" if info.get("deletion_time") else "enabled"
            fp: str | None = None
            stages: tuple[str, ...] = ()
            if state == "enabled":
                data, _, _ = self._read(self.path, number)
                field = field or self._field_of(data, self.path)
                value = data.get(field)
                if isinstance(value, str):
                    fp = Secret(value).fingerprint
                    if number == current:
                        current_value, stages = value, ("current",)
                    elif not previous_seen and current_value is not None and value != current_value:
                        previous_seen, stages = True, ("previous",)
            infos.append(VersionInfo(str(number), stages, _created(info), fp, state))
        pending = self._read_optional(self.pending_path)
        if pending is not None and field is not None and isinstance(pending[0].get(field), str):
            infos.insert(0, VersionInfo(str(current + 1), ("pending",), pending[2], Secret(pending[0][field]).fingerprint))
        return infos

    def read_state(self) -> tuple[dict[str, str] | None, str | None]:
        found = self._read_optional(self.state_path)
        if found is None:
            meta = self._metadata(self.state_path)
            # a deleted latest version: no state, but the next write must name that version
            return None, (str(meta["current_version"]) if meta else None)
        data, version, _ = found
        return {str(k): str(v) for k, v in data.items()}, str(version)

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str:
        check_state(state, self._where(self.state_path))
        try:
            cas = int(expected_token) if expected_token is not None else 0
        except ValueError:
            raise ConflictError(f"{self._where(self.state_path)}: state token {expected_token!r} is not a Vault version") from None
        data = {str(k): str(v) for k, v in state.items()}
        try:
            version, _ = self._write(self.state_path, data, cas, "write the rotation state")
        except ConflictError:
            raise ConflictError(
                f"{self._where(self.state_path)}: the rotation state changed since it was read "
                "(another rotator wrote it); re-read and retry"
            ) from None
        return str(version)

