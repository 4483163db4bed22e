"""Google Cloud Secret Manager: `gcp-sm://projects/P/secrets/S[?alias=A][#field]`.

Regional secrets are `gcp-sm://projects/P/locations/L/secrets/S` (the regional endpoint is
chosen for them). Credentials are Application Default Credentials. `endpoint=` (or
`KEYVAULT_GCP_ENDPOINT`) overrides the API endpoint; an `http://` endpoint means a local fake
or emulator on plain text with anonymous credentials, e.g. `keyvault.testing.FakeSecretManager`.
`transport=grpc|rest` picks the client transport (default gRPC, the client's own default);
`timeout=` the seconds per call (default 10).

How rotation maps onto Secret Manager's versions, aliases and etags:
- current = version alias A (default `current`); with no such alias, the newest enabled
  version. `stage` creates the alias first, so a new version is never served as "latest";
- stage = a new version plus the alias `pending` (`A-pending` for another A); a stage that
  died between adding the version and moving the alias reuses that version;
- promote = one secrets.patch of `version_aliases` (A -> pending's version, `previous` -> the
  old one, `pending` removed) carrying the etag read with the aliases: the compare-and-swap.
  The server answers FAILED_PRECONDITION (ABORTED in some paths) when anything changed;
- rollback = the same patch towards `previous`;
- rotation state = an annotation on the sibling secret `S-keyvault-state`; its etag is the token.

Payload checksums: the client does not check `data_crc32c`; this module does, on every access,
and sends one on every write.

Errors are classified by the gRPC status name, which both transports expose (gRPC on the
exception, REST in the JSON error body), falling back to the HTTP `.code`: REST alone maps
FAILED_PRECONDITION and INVALID_ARGUMENT both to `BadRequest`.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from typing import Any

from keyvault._crc32c import crc32c
from keyvault.backends import Source, Version, VersionInfo, check_params
from keyvault.backends import _fields
from keyvault.backends.localfs import check_state
from keyvault.errors import (
    BackendError,
    ConflictError,
    KeyvaultError,
    NotFoundError,
    PermissionDeniedError,
    SourceError,
)
from keyvault.keys import Secret

STATE_SUFFIX = "-keyvault-state"
STATE_ANNOTATION = "keyvault-state"
_NAME = re.compile(r"projects/([^/]+)(?:/locations/([^/]+))?/secrets/([A-Za-z0-9_-]{1,255})")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_PARAMS = {"alias", "endpoint", "transport", "timeout"}
_HTTP_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_PERMISSION = {
    "get_secret": "secretmanager.secrets.get", "update_secret": "secretmanager.secrets.update",
    "create_secret": "secretmanager.secrets.create", "add_secret_version": "secretmanager.versions.add",
    "access_secret_version": "secretmanager.versions.access", "list_secret_versions": "secretmanager.versions.list",
    "get_secret_version": "secretmanager.versions.get", "disable_secret_version": "secretmanager.versions.disable",
}
_READS = {"get_secret", "access_secret_version", "list_secret_versions", "get_secret_version"}


def status_of(exc: Any) -> str:
    """The canonical status name of a GoogleAPICallError, the same for both transports."""
    code = getattr(exc, "grpc_status_code", None)
    if code is not None and getattr(code, "name", None):
        return str(code.name)
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            status = response.json()["error"]["status"]
            if isinstance(status, str) and status:
                return status
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return _HTTP_STATUS.get(int(getattr(exc, "code", 0) or 0), "UNKNOWN")


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime) and value.year > 1970:
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


class GcpSecretManagerBackend:
    writable = True

    def __init__(self, source: Source) -> None:
        self.source = source
        check_params(source, _PARAMS)
        match = _NAME.fullmatch(source.location.strip("/"))
        if not match:
            raise SourceError(
                f"source {source}: expected gcp-sm://projects/PROJECT/secrets/SECRET "
                "(or projects/PROJECT/locations/LOCATION/secrets/SECRET)"
            )
        self.project, self.location, self.secret_id = match.groups()
        self.name = match.group(0)
        self.parent = self.name.rsplit("/secrets/", 1)[0]
        self.state_name = self.name + STATE_SUFFIX
        self.field = source.field
        self.alias = source.params.get("alias") or "current"
        if not _ALIAS.fullmatch(self.alias) or self.alias in ("latest", "NEW"):
            raise SourceError(f"source {source}: alias {self.alias!r} is not a valid version alias")
        suffix = "" if self.alias == "current" else f"{self.alias}-"
        self.pending_alias = f"{suffix}pending"
        self.previous_alias = f"{suffix}previous"
        self.explicit_alias = "alias" in source.params
        self.endpoint = source.params.get("endpoint") or os.environ.get("KEYVAULT_GCP_ENDPOINT") or None
        self.transport = source.params.get("transport", "grpc")
        if self.transport not in ("grpc", "rest"):
            raise SourceError(f"source {source}: transport must be grpc or rest, not {self.transport!r}")
        try:
            self.timeout = float(source.params.get("timeout", "10"))
        except ValueError:
            raise SourceError(f"source {source}: timeout must be a number of seconds") from None
        self._client: Any = None

    # -- plumbing ---------------------------------------------------------------------------

    def _where(self, name: str | None = None) -> str:
        return f"{self.source} (GCP Secret Manager {name or self.name})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        try:
            from google.cloud import secretmanager
        except ImportError:
            raise SourceError(
                f"source {self.source}: google-cloud-secret-manager is not installed; "
                "pip install 'keyvault-anthropic[gcp]'"
            ) from None
        endpoint = self.endpoint
        if endpoint and endpoint.startswith("http://"):
            # a local fake or emulator: plain text, no Google credentials
            from google.auth.credentials import AnonymousCredentials

            if self.transport == "rest":
                return secretmanager.SecretManagerServiceClient(
                    credentials=AnonymousCredentials(), transport="rest",
                    client_options={"api_endpoint": endpoint},
                )
            import grpc
            from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
                SecretManagerServiceGrpcTransport,
            )

            channel = grpc.insecure_channel(endpoint[len("http://"):].rstrip("/"))
            return secretmanager.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
        if endpoint is None and self.location:
            endpoint = f"secretmanager.{self.location}.rep.googleapis.com"
        import google.auth.exceptions

        try:
            return secretmanager.SecretManagerServiceClient(
                transport=self.transport, client_options={"api_endpoint": endpoint} if endpoint else None,
            )
        except google.auth.exceptions.DefaultCredentialsError:
            raise PermissionDeniedError(
                f"{self._where()}: no Google credentials found; run `gcloud auth application-default login`, "
                "set GOOGLE_APPLICATION_CREDENTIALS, or run with a service account"
            ) from None

    def _call(self, method: str, doing: str, about: str | None = None, **request: Any) -> Any:
        from google.api_core import exceptions as gx
        from google.api_core import retry as retries
        import google.auth.exceptions

        kwargs: dict[str, Any] = {"request": request, "timeout": self.timeout}
        if method in _READS:
            kwargs["retry"] = retries.Retry(
                initial=0.1, maximum=2.0, multiplier=2.0, timeout=self.timeout,
                predicate=retries.if_exception_type(gx.ServiceUnavailable, gx.ResourceExhausted, gx.InternalServerError),
            )
        else:
            kwargs["retry"] = None  # writes are not idempotent; callers re-read instead
        where = self._where(about)
        try:
            return getattr(self.client, method)(**kwargs)
        except KeyvaultError:
            raise
        except gx.RetryError as exc:
            raise BackendError(f"{where}: cannot {doing}: still unavailable after retries ({exc.cause or exc})") from None
        except gx.GoogleAPICallError as exc:
            raise self._translate(exc, method, doing, where) from None
        except google.auth.exceptions.DefaultCredentialsError:
            raise PermissionDeniedError(
                f"{where}: no Google credentials found; run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise PermissionDeniedError(f"{where}: cannot {doing}: credentials failed ({type(exc).__name__})") from None
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise BackendError(f"{where}: cannot reach the Secret Manager API ({type(exc).__name__})") from None

    def _translate(self, exc: Any, method: str, doing: str, where: str) -> KeyvaultError:
        status = status_of(exc)
        message = str(getattr(exc, "message", "") or "").splitlines()[0][:300] if getattr(exc, "message", "") else ""
        if status == "NOT_FOUND":
            failed: KeyvaultError = NotFoundError(f"{where}: cannot {doing}: not found")
        elif status == "PERMISSION_DENIED":
            failed = PermissionDeniedError(
                f"{where}: permission denied to {doing} ({_PERMISSION.get(method, method)}); grant it to this "
                "identity (policies/gcp/reader.yaml to read, policies/gcp/rotator.yaml to rotate)"
            )
        elif status == "UNAUTHENTICATED":
            failed = PermissionDeniedError(
                f"{where}: Google rejected the credentials; run `gcloud auth application-default login`"
            )
        elif status in ("ABORTED", "ALREADY_EXISTS") or (status == "FAILED_PRECONDITION" and "etag" in message.lower()):
            failed = ConflictError(f"{where}: cannot {doing}: it changed since it was read (etag); re-read and retry")
        elif status == "FAILED_PRECONDITION":
            failed = BackendError(f"{where}: cannot {doing}: {message or status}")
        elif status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL"):
            failed = BackendError(f"{where}: cannot {doing}: Secret Manager is unavailable ({status}) after retries")
        else:
            failed = BackendError(f"{where}: cannot {doing}: {status}" + (f": {message}" if message else ""))
        failed.gcp_status = status  # type: ignore[attr-defined]
        return failed

    def _secret(self, name: str | None = None) -> Any:
        return self._call("get_secret", "read the secret's aliases", name, name=name or self.name)

    def _access(self, ref: str | int) -> tuple[str, int]:
        """(text, version number) of `versions/<ref>`, its checksum verified."""
        response = self._call(
            "access_secret_version", f"read version {ref}", name=f"{self.name}/versions/{ref}")
        data = bytes(response.payload.data)
        if "data_crc32c" in response.payload and int(response.payload.data_crc32c) != crc32c(data):
            raise BackendError(
                f"{self._where()}: version {ref} failed its CRC32C check (corrupted in transit); retry"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BackendError(f"{self._where()}: version {ref} is binary, not UTF-8 text") from None
        return text, int(str(response.name).rsplit("/", 1)[-1])

    def _value(self, text: str) -> Secret:
        return Secret(_fields.extract(text, self.field, str(self.source)))

    def _latest_enabled(self) -> int:
        response = self._call(
            "list_secret_versions", "list versions", parent=self.name, filter="state:ENABLED", page_size=1)
        for version in response.versions:
            return int(str(version.name).rsplit("/", 1)[-1])
        raise NotFoundError(f"{self._where()}: the secret has no enabled version")

    def _current_number(self, aliases: dict[str, int]) -> int:
        if self.alias in aliases:
            return aliases[self.alias]
        if self.explicit_alias:
            raise NotFoundError(f"{self._where()}: the secret has no version alias {self.alias!r}")
        return self._latest_enabled()

    def _add(self, text: str) -> Any:
        data = text.encode("utf-8")
        return self._call(
            "add_secret_version", "add a version", parent=self.name,
            payload={"data": data, "data_crc32c": crc32c(data)},
        )

    def _set_aliases(self, secret: Any, aliases: dict[str, int], doing: str) -> Any:
        return self._call(
            "update_secret", doing,
            secret={"name": self.name, "version_aliases": aliases, "etag": secret.etag},
            update_mask={"paths": ["version_aliases"]},
        )

    def _version_meta(self, number: int) -> datetime | None:
        try:
            meta = self._call("get_secret_version", "read version metadata", name=f"{self.name}/versions/{number}")
        except PermissionDeniedError:
            return None
        return _utc(meta.create_time)

    # -- the protocol -----------------------------------------------------------------------

    def read(self) -> Version:
        try:
            text, number = self._access(self.alias)
        except NotFoundError:
            if self.explicit_alias:
                raise NotFoundError(
                    f"{self._where()}: no version alias {self.alias!r} (or no such secret); "
                    "check the alias, or drop ?alias= to read the newest enabled version"
                ) from None
            try:
                text, number = self._access("latest")
            except BackendError as exc:
                if getattr(exc, "gcp_status", None) != "FAILED_PRECONDITION":
                    raise
                text, number = self._access(self._latest_enabled())
        # created time needs secretmanager.versions.get, which a reader does not hold
        return Version(self._value(text), str(number), None, "current")

    def read_pending(self) -> Version | None:
        aliases = dict(self._secret().version_aliases)
        if self.pending_alias not in aliases:
            return None
        text, number = self._access(aliases[self.pending_alias])
        return Version(self._value(text), str(number), self._version_meta(number), "pending")

    def read_previous(self) -> Version | None:
        """The version under the previous alias (what rollback restores), or None."""
        aliases = dict(self._secret().version_aliases)
        if self.previous_alias not in aliases:
            return None
        text, number = self._access(aliases[self.previous_alias])
        return Version(self._value(text), str(number), self._version_meta(number), "previous")

    def stage(self, secret: Secret) -> Version:
        meta = self._secret()
        aliases = {k: int(v) for k, v in meta.version_aliases.items()}
        if self.pending_alias in aliases:
            text, number = self._access(aliases[self.pending_alias])
            staged = self._value(text)
            if staged == secret:
                return Version(secret, str(number), self._version_meta(number), "pending")
            raise ConflictError(
                f"{self._where()}: another key ({staged.hint}) is already staged; promote it, or "
                "clear it first if it is abandoned (it may be the only copy of a key shown once)"
            )
        current = self._current_number(aliases)
        if self.alias not in aliases:
            # pin what is served now before a new version becomes "latest"
            aliases[self.alias] = current
            meta = self._set_aliases(meta, aliases, "pin the current version alias")
        current_text, _ = self._access(current)
        text = _fields.compose(current_text, self.field, secret.reveal(), str(self.source))
        number = self._reusable(text, aliases)
        if number is None:
            added = self._add(text)
            number = int(str(added.name).rsplit("/", 1)[-1])
        aliases[self.pending_alias] = number
        self._set_aliases(meta, aliases, "point the pending alias at the new version")
        return Version(secret, str(number), self._version_meta(number), "pending")

    def _reusable(self, text: str, aliases: dict[str, int]) -> int | None:
        """The newest version when an interrupted stage already added exactly this text."""
        response = self._call("list_secret_versions", "list versions", parent=self.name, page_size=1)
        for version in response.versions:
            number = int(str(version.name).rsplit("/", 1)[-1])
            if number in aliases.values() or version.state.name != "ENABLED":
                return None
            found, _ = self._access(number)
            return number if found == text else None
        return None

    def clear_pending(self) -> None:
        meta = self._secret()
        aliases = {k: int(v) for k, v in meta.version_aliases.items()}
        number = aliases.pop(self.pending_alias, None)
        if number is None:
            return
        self._set_aliases(meta, aliases, "remove the pending alias")
        if number not in aliases.values():
            # a key that was never served: disabled (reversible), not destroyed
            self._call("disable_secret_version", "disable the cleared version", name=f"{self.name}/versions/{number}")

    def promote(self, expected_current: str) -> Version:
        meta = self._secret()
        aliases = {k: int(v) for k, v in meta.version_aliases.items()}
        pending = aliases.get(self.pending_alias)
        if pending is None:
            raise NotFoundError(f"{self._where()}: no pending key (alias {self.pending_alias!r}) to promote; stage one first")
        current = self._current_number(aliases)
        current_text, _ = self._access(current)
        pending_text, _ = self._access(pending)
        if pending == current:  # an earlier promote moved the alias, then stopped
            del aliases[self.pending_alias]
            self._set_aliases(meta, aliases, "remove the pending alias")
            return Version(self._value(pending_text), str(pending), self._version_meta(pending), "current")
        self._check(current_text, expected_current, "promote")
        target = self._merged(pending, pending_text, current_text)
        aliases.update({self.alias: target, self.previous_alias: current})
        del aliases[self.pending_alias]
        self._set_aliases(meta, aliases, "promote the pending version")
        return Version(self._value(pending_text), str(target), self._version_meta(target), "current")

    def rollback(self, expected_current: str) -> Version:
        meta = self._secret()
        aliases = {k: int(v) for k, v in meta.version_aliases.items()}
        previous = aliases.get(self.previous_alias)
        if previous is None:
            raise NotFoundError(f"{self._where()}: no previous version (alias {self.previous_alias!r}) to roll back to")
        current = self._current_number(aliases)
        current_text, _ = self._access(current)
        self._check(current_text, expected_current, "roll back")
        previous_text, _ = self._access(previous)
        target = self._merged(previous, previous_text, current_text)
        aliases.update({self.alias: target, self.previous_alias: current})
        self._set_aliases(meta, aliases, "roll back")
        return Version(self._value(previous_text), str(target), self._version_meta(target), "current")

    def _merged(self, number: int, text: str, current_text: str) -> int:
        """`number`, or a new version carrying its key with the current other fields."""
        if _fields.others(text, self.field) == _fields.others(current_text, self.field):
            return number
        value = _fields.extract(text, self.field, str(self.source))
        added = self._add(_fields.compose(current_text, self.field, value, str(self.source)))
        return int(str(added.name).rsplit("/", 1)[-1])

    def _check(self, current_text: str, expected: str, step: str) -> None:
        found = self._value(current_text).fingerprint
        if found != expected:
            raise ConflictError(
                f"{self._where()}: cannot {step}: the current key changed since it was read "
                f"(fingerprint {found[:12]}, expected {expected[:12]}); another rotation ran? re-plan"
            )

    def versions(self) -> list[VersionInfo]:
        meta = self._secret()
        aliases = {k: int(v) for k, v in meta.version_aliases.items()}
        names = {self.alias: "current", self.pending_alias: "pending", self.previous_alias: "previous"}
        stages: dict[int, list[str]] = {}
        for alias, stage in names.items():
            if alias in aliases:
                stages.setdefault(aliases[alias], []).append(stage)
        infos: list[VersionInfo] = []
        page_token = ""
        while True:
            response = self._call("list_secret_versions", "list versions", parent=self.name,
                                  page_size=100, page_token=page_token)
            for version in response.versions:
                number = int(str(version.name).rsplit("/", 1)[-1])
                infos.append(VersionInfo(str(number), tuple(stages.get(number, ())), _utc(version.create_time),
                                         None, version.state.name.lower()))
            page_token = response.next_page_token
            if not page_token:
                break
        if self.alias not in aliases:  # no alias yet: the newest enabled version is served
            for i, info in enumerate(infos):
                if info.state == "enabled":
                    infos[i] = VersionInfo(info.version, ("current",) + info.stages, info.created, None, info.state)
                    break
        return infos

    def read_state(self) -> tuple[dict[str, str] | None, str | None]:
        try:
            meta = self._secret(self.state_name)
        except NotFoundError:
            return None, None
        raw = meta.annotations.get(STATE_ANNOTATION)
        if raw is None:
            return None, str(meta.etag)
        try:
            data = json.loads(raw)
        except ValueError:
            raise BackendError(f"{self._where(self.state_name)}: the rotation state annotation is not JSON") from None
        return {str(k): str(v) for k, v in data.items()}, str(meta.etag)

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str:
        check_state(state, self._where(self.state_name))
        body = json.dumps({str(k): str(v) for k, v in state.items()}, sort_keys=True)
        if len(body.encode()) > 15 * 1024:
            raise BackendError(f"{self._where(self.state_name)}: rotation state too large for an annotation (16 KiB)")
        try:
            meta = self._secret(self.state_name)
        except NotFoundError:
            if expected_token is not None:
                raise ConflictError(f"{self._where(self.state_name)}: the rotation state was deleted since it was read") from None
            try:
                return self._create_state(body)
            except ConflictError:  # another rotator created it between the read and the create
                meta = self._secret(self.state_name)
        if expected_token is None:
            if STATE_ANNOTATION in meta.annotations:
                raise ConflictError(
                    f"{self._where(self.state_name)}: rotation state already exists (another rotator wrote it first)"
                )
            # the secret exists without state: created empty by an administrator (the rotator
            # role cannot create secrets), so fill it
            expected_token = str(meta.etag)
        if str(meta.etag) != expected_token:
            raise ConflictError(
                f"{self._where(self.state_name)}: the rotation state changed since it was read "
                "(another rotator wrote it); re-read and retry"
            )
        annotations = dict(meta.annotations)
        annotations[STATE_ANNOTATION] = body
        try:
            updated = self._call(
                "update_secret", "write the rotation state", self.state_name,
                secret={"name": self.state_name, "annotations": annotations, "etag": expected_token},
                update_mask={"paths": ["annotations"]},
            )
        except ConflictError:
            raise ConflictError(
                f"{self._where(self.state_name)}: the rotation state changed since it was read "
                "(another rotator wrote it); re-read and retry"
            ) from None
        return str(updated.etag)

    def _create_state(self, body: str) -> str:
        replication: dict[str, Any] = {}
        if not self.location:
            main = self._secret()
            replication = {"replication": main.replication}
        created = self._call(
            "create_secret", "create the rotation state secret", self.state_name,
            parent=self.parent, secret_id=self.secret_id + STATE_SUFFIX,
            secret={**replication, "labels": {"keyvault": "rotation-state"}, "annotations": {STATE_ANNOTATION: body}},
        )
        return str(created.etag)
