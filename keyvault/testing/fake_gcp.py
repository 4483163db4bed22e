"""A local Google Cloud Secret Manager that the official client talks to unchanged.

There is no Secret Manager emulator, so tests of code that uses `google-cloud-secret-manager`
usually replace the client with a mock, which exercises neither requests, transports nor
errors. `FakeSecretManager` is a server on 127.0.0.1 instead: one in-memory store behind a gRPC
front end (the client's default transport) and a REST front end (`transport="rest"`), both
speaking the real wire formats through the package's own message classes.

    from keyvault.testing import FakeSecretManager

    with FakeSecretManager() as fake:
        client = fake.client("grpc")        # or "rest": a configured SecretManagerServiceClient
        client.create_secret(parent="projects/p", secret_id="s",
                             secret={"replication": {"automatic": {}}})
        client.add_secret_version(parent="projects/p/secrets/s", payload={"data": b"v1"})
        fake.fail("AccessSecretVersion", "UNAVAILABLE", times=2)   # the next two accesses fail
        client.access_secret_version(name="projects/p/secrets/s/versions/latest")

Your own code points at it with `client_options={"api_endpoint": fake.rest_endpoint}` and
`AnonymousCredentials()` (REST), or a transport over `grpc.insecure_channel(fake.grpc_target)`;
keyvault's own backend takes `fake.source(project, secret)`. In pytest, the `fake_gcp` fixture
gives a clean instance per test.

What it models: secrets (global `projects/P/secrets/S` and regional
`projects/P/locations/L/secrets/S`), create/get/list/update/delete with etags, versions
(add/get/list/access/enable/disable/destroy) with version etags, `latest` and version aliases,
labels, annotations, topics and rotation (with the API's validation), payload CRC32C
(rejects a wrong `data_crc32c`, returns one on access), paging, errors with the real status
codes (FAILED_PRECONDITION for a stale etag or a disabled version, NOT_FOUND, ALREADY_EXISTS,
INVALID_ARGUMENT), and fault injection per method and count. It does not enforce IAM (every
caller may do everything), publish rotation notifications, or model CMEK and replication.
`calls` records each RPC (method, resource name) in order, e.g. to check which permissions a
piece of code needs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keyvault._crc32c import crc32c

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_PARENT = r"projects/[^/:]+(?:/locations/[^/:]+)?"
_SECRET = _PARENT + r"/secrets/[^/:]+"
_VERSION = _SECRET + r"/versions/[^/:]+"
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")
_UPDATABLE = {
    "labels", "annotations", "version_aliases", "rotation", "topics", "expire_time", "ttl",
    "version_destroy_ttl", "customer_managed_encryption", "tags",
}
_HTTP = {
    "OK": 200, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNKNOWN": 500, "INTERNAL": 500,
    "DATA_LOSS": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
# RPC -> the IAM permission Secret Manager checks for it
PERMISSIONS = {
    "ListSecrets": "secretmanager.secrets.list",
    "CreateSecret": "secretmanager.secrets.create",
    "GetSecret": "secretmanager.secrets.get",
    "UpdateSecret": "secretmanager.secrets.update",
    "DeleteSecret": "secretmanager.secrets.delete",
    "AddSecretVersion": "secretmanager.versions.add",
    "ListSecretVersions": "secretmanager.versions.list",
    "GetSecretVersion": "secretmanager.versions.get",
    "AccessSecretVersion": "secretmanager.versions.access",
    "DisableSecretVersion": "secretmanager.versions.disable",
    "EnableSecretVersion": "secretmanager.versions.enable",
    "DestroySecretVersion": "secretmanager.versions.destroy",
    "GetIamPolicy": "secretmanager.secrets.getIamPolicy",
    "SetIamPolicy": "secretmanager.secrets.setIamPolicy",
    "TestIamPermissions": "",
}


class FakeError(Exception):
    """An RPC failure: `status` is a gRPC status name ("NOT_FOUND")."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


@dataclass
class _Fault:
    status: str
    remaining: int
    message: str


class _Store:
    """The state and semantics, on raw protobuf messages; both front ends call `dispatch`."""

    def __init__(self) -> None:
        from google.cloud.secretmanager_v1.types import resources

        self._Secret = resources.Secret.pb()
        self._Version = resources.SecretVersion.pb()
        self.lock = threading.RLock()
        self.secrets: dict[str, Any] = {}  # name -> Secret pb
        self.versions: dict[str, dict[int, Any]] = {}  # secret name -> number -> SecretVersion pb
        self.payloads: dict[str, bytes] = {}  # version name -> data
        self.faults: dict[str, list[_Fault]] = {}
        self.calls: list[tuple[str, str]] = []
        self.corrupt = 0  # how many coming accesses return a wrong data_crc32c
        self._etag = 0

    def reset(self) -> None:
        with self.lock:
            self.secrets.clear()
            self.versions.clear()
            self.payloads.clear()
            self.faults.clear()
            self.calls.clear()
            self.corrupt = 0

    def etag(self) -> str:
        self._etag += 1
        return f'"{self._etag:016x}"'

    # -- lookups ----------------------------------------------------------------------------

    def secret(self, name: str) -> Any:
        if not re.fullmatch(_SECRET, name):
            raise FakeError("INVALID_ARGUMENT", f"Invalid resource field value in the request: {name}")
        found = self.secrets.get(name)
        if found is None:
            raise FakeError("NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        return found

    def version(self, name: str) -> Any:
        if not re.fullmatch(_VERSION, name):
            raise FakeError("INVALID_ARGUMENT", f"Invalid resource field value in the request: {name}")
        parent, _, ident = name.rpartition("/versions/")
        secret = self.secret(parent)
        versions = self.versions[parent]
        if ident == "latest":
            if not versions:
                raise FakeError("NOT_FOUND", f"Secret [{parent}] not found or has no versions.")
            number = max(versions)
        elif ident.isdigit():
            number = int(ident)
        elif ident in secret.version_aliases:
            number = int(secret.version_aliases[ident])
        else:
            raise FakeError("NOT_FOUND", f"Secret Version [{name}] not found.")
        if number not in versions:
            raise FakeError("NOT_FOUND", f"Secret Version [{parent}/versions/{ident}] not found.")
        return versions[number]

    @staticmethod
    def copy(message: Any) -> Any:
        clone = type(message)()
        clone.CopyFrom(message)
        return clone

    # -- validation -------------------------------------------------------------------------

    def _check_metadata(self, secret: Any, paths: set[str] | None = None) -> None:
        def wants(field: str) -> bool:
            return paths is None or field in paths

        if wants("labels"):
            for key, value in secret.labels.items():
                if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
                    raise FakeError("INVALID_ARGUMENT", f"Invalid label {key!r}: keys and values are lowercase letters, digits, _ and -")
        if wants("annotations"):
            size = 0
            for key, value in secret.annotations.items():
                if not _ANNOTATION_KEY.fullmatch(key):
                    raise FakeError("INVALID_ARGUMENT", f"Invalid annotation key {key!r}")
                size += len(key.encode()) + len(value.encode())
            if size > 16 * 1024:
                raise FakeError("INVALID_ARGUMENT", "Annotations exceed the total size limit of 16 KiB")
        if wants("topics"):
            for topic in secret.topics:
                if not _TOPIC.fullmatch(topic.name):
                    raise FakeError("INVALID_ARGUMENT", f"Invalid topic name {topic.name!r}: expected projects/*/topics/*")
        if wants("rotation") and (secret.HasField("rotation")):
            rotation = secret.rotation
            if not secret.topics:
                raise FakeError("INVALID_ARGUMENT", "A secret with a rotation policy must have at least one topic")
            has_next = rotation.HasField("next_rotation_time")
            if rotation.HasField("rotation_period"):
                if not has_next:
                    raise FakeError("INVALID_ARGUMENT", "rotation_period requires next_rotation_time")
                if rotation.rotation_period.seconds < 3600:
                    raise FakeError("INVALID_ARGUMENT", "rotation_period must be at least 3600s")
            if has_next and rotation.next_rotation_time.ToDatetime(timezone.utc) < _now() + timedelta(minutes=5):
                raise FakeError("INVALID_ARGUMENT", "next_rotation_time must be at least 5 minutes in the future")

    def _check_aliases(self, name: str, aliases: Any) -> None:
        if len(aliases) > 50:
            raise FakeError("INVALID_ARGUMENT", "A secret can have at most 50 version aliases")
        versions = self.versions.get(name, {})
        for alias, number in aliases.items():
            if not _ALIAS.fullmatch(alias) or alias in ("latest", "NEW"):
                raise FakeError("INVALID_ARGUMENT", f"Invalid version alias {alias!r}")
            if int(number) not in versions:
                raise FakeError("INVALID_ARGUMENT", f"Version alias {alias!r} points to version {number}, which does not exist")
            if versions[int(number)].state == self._Version.State.DESTROYED:
                raise FakeError("FAILED_PRECONDITION", f"Version alias {alias!r} cannot point to destroyed version {number}")

    @staticmethod
    def _etag_matches(given: str, current: str) -> None:
        if given and given != current:
            raise FakeError("FAILED_PRECONDITION", f"The etag provided ({given}) does not match the current etag")

    # -- RPCs -------------------------------------------------------------------------------

    def dispatch(self, method: str, request: Any) -> Any:
        with self.lock:
            self.calls.append((method, _resource(request)))
            queue = self.faults.get(method)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
                raise FakeError(fault.status, fault.message)
            handler: Callable[[Any], Any] | None = getattr(self, f"_{method}", None)
            if handler is None:
                raise FakeError("UNIMPLEMENTED", f"{method} is not implemented by the fake")
            return handler(request)

    def _ListSecrets(self, request: Any) -> Any:
        from google.cloud.secretmanager_v1.types import service

        if request.filter:
            raise FakeError("INVALID_ARGUMENT", "the fake does not implement list filters for secrets")
        items = [s for n, s in sorted(self.secrets.items()) if n.rsplit("/secrets/", 1)[0] == request.parent]
        page, token = _page(items, request.page_size, request.page_token)
        return service.ListSecretsResponse.pb()(
            secrets=[self.copy(s) for s in page], next_page_token=token, total_size=len(items))

    def _CreateSecret(self, request: Any) -> Any:
        if not re.fullmatch(_PARENT, request.parent):
            raise FakeError("INVALID_ARGUMENT", f"Invalid parent {request.parent!r}")
        if not _SECRET_ID.fullmatch(request.secret_id):
            raise FakeError("INVALID_ARGUMENT", f"Invalid secret_id {request.secret_id!r}: 1-255 of [A-Za-z0-9_-]")
        name = f"{request.parent}/secrets/{request.secret_id}"
        if name in self.secrets:
            raise FakeError("ALREADY_EXISTS", f"Secret [{name}] already exists.")
        secret = self.copy(request.secret)
        regional = "/locations/" in request.parent
        if not regional and not secret.HasField("replication"):
            raise FakeError("INVALID_ARGUMENT", "Secret.replication is required")
        if secret.version_aliases:
            raise FakeError("INVALID_ARGUMENT", "A new secret has no versions for aliases to point to")
        self._check_metadata(secret)
        secret.name = name
        secret.create_time.FromDatetime(_now())
        secret.etag = self.etag()
        self.secrets[name] = secret
        self.versions[name] = {}
        return self.copy(secret)

    def _GetSecret(self, request: Any) -> Any:
        return self.copy(self.secret(request.name))

    def _UpdateSecret(self, request: Any) -> Any:
        stored = self.secret(request.secret.name)
        paths = set(request.update_mask.paths)
        if not paths:
            raise FakeError("INVALID_ARGUMENT", "update_mask is required")
        unknown = paths - _UPDATABLE
        if unknown:
            raise FakeError("INVALID_ARGUMENT", f"update_mask contains fields that cannot be updated: {', '.join(sorted(unknown))}")
        self._etag_matches(request.secret.etag, stored.etag)
        updated = self.copy(stored)
        request.update_mask.MergeMessage(request.secret, updated, replace_message_field=True, replace_repeated_field=True)
        self._check_metadata(updated, paths)
        if "version_aliases" in paths:
            self._check_aliases(updated.name, updated.version_aliases)
        updated.etag = self.etag()
        self.secrets[updated.name] = updated
        return self.copy(updated)

    def _DeleteSecret(self, request: Any) -> Any:
        from google.protobuf import empty_pb2

        stored = self.secret(request.name)
        self._etag_matches(request.etag, stored.etag)
        for number in self.versions.pop(request.name, {}):
            self.payloads.pop(f"{request.name}/versions/{number}", None)
        del self.secrets[request.name]
        return empty_pb2.Empty()

    def _AddSecretVersion(self, request: Any) -> Any:
        self.secret(request.parent)
        payload = request.payload
        if len(payload.data) > 64 * 1024:
            raise FakeError("INVALID_ARGUMENT", "Secret payload data exceeds the limit of 65536 bytes")
        checked = payload.HasField("data_crc32c")
        if checked and payload.data_crc32c != crc32c(payload.data):
            raise FakeError("INVALID_ARGUMENT", "Checksum mismatch: data_crc32c does not match payload data.")
        versions = self.versions[request.parent]
        number = max(versions, default=0) + 1
        version = self._Version(
            name=f"{request.parent}/versions/{number}", state=self._Version.State.ENABLED,
            etag=self.etag(), client_specified_payload_checksum=checked,
        )
        version.create_time.FromDatetime(_now())
        versions[number] = version
        self.payloads[version.name] = bytes(payload.data)
        return self.copy(version)

    def _ListSecretVersions(self, request: Any) -> Any:
        from google.cloud.secretmanager_v1.types import service

        self.secret(request.parent)
        items = [self.versions[request.parent][n] for n in sorted(self.versions[request.parent], reverse=True)]
        if request.filter:
            match = re.fullmatch(r"state\s*[:=]\s*(ENABLED|DISABLED|DESTROYED)", request.filter.strip())
            if not match:
                raise FakeError("INVALID_ARGUMENT", "the fake implements only the filter state:ENABLED|DISABLED|DESTROYED")
            wanted = self._Version.State.Value(match.group(1))
            items = [v for v in items if v.state == wanted]
        page, token = _page(items, request.page_size, request.page_token)
        return service.ListSecretVersionsResponse.pb()(
            versions=[self.copy(v) for v in page], next_page_token=token, total_size=len(items))

    def _GetSecretVersion(self, request: Any) -> Any:
        return self.copy(self.version(request.name))

    def _AccessSecretVersion(self, request: Any) -> Any:
        from google.cloud.secretmanager_v1.types import service

        version = self.version(request.name)
        if version.state != self._Version.State.ENABLED:
            state = self._Version.State.Name(version.state)
            raise FakeError("FAILED_PRECONDITION", f"Secret Version [{version.name}] is in {state} state.")
        data = self.payloads[version.name]
        response = service.AccessSecretVersionResponse.pb()(name=version.name)
        response.payload.data = data
        response.payload.data_crc32c = crc32c(data)
        if self.corrupt > 0:
            self.corrupt -= 1
            response.payload.data_crc32c ^= 0x5A5A5A5A
        return response

    def _set_state(self, request: Any, state: str) -> Any:
        version = self.version(request.name)
        self._etag_matches(request.etag, version.etag)
        destroyed = self._Version.State.DESTROYED
        if version.state == destroyed:
            raise FakeError("FAILED_PRECONDITION", f"Secret Version [{version.name}] is in DESTROYED state.")
        version.state = self._Version.State.Value(state)
        if version.state == destroyed:
            version.destroy_time.FromDatetime(_now())
            self.payloads[version.name] = b""
        version.etag = self.etag()
        return self.copy(version)

    def _DisableSecretVersion(self, request: Any) -> Any:
        return self._set_state(request, "DISABLED")

    def _EnableSecretVersion(self, request: Any) -> Any:
        return self._set_state(request, "ENABLED")

    def _DestroySecretVersion(self, request: Any) -> Any:
        return self._set_state(request, "DESTROYED")


def _resource(request: Any) -> str:
    for field in ("name", "parent", "resource"):
        value = getattr(request, field, "")
        if isinstance(value, str) and value:
            return value
    secret = getattr(request, "secret", None)
    return str(getattr(secret, "name", "") or "")


def _page(items: list[Any], size: int, token: str) -> tuple[list[Any], str]:
    try:
        start = int(token) if token else 0
    except ValueError:
        raise FakeError("INVALID_ARGUMENT", f"Invalid page token {token!r}") from None
    size = size if size > 0 else 25000
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


# -- the gRPC front end ---------------------------------------------------------------------

def _grpc_methods() -> dict[str, tuple[Any, Any]]:
    """RPC -> (request class, response class): the package's own proto-plus types."""
    from google.cloud.secretmanager_v1.types import resources, service
    from google.iam.v1 import iam_policy_pb2, policy_pb2
    from google.protobuf import empty_pb2

    return {
        "ListSecrets": (service.ListSecretsRequest, service.ListSecretsResponse),
        "CreateSecret": (service.CreateSecretRequest, resources.Secret),
        "AddSecretVersion": (service.AddSecretVersionRequest, resources.SecretVersion),
        "GetSecret": (service.GetSecretRequest, resources.Secret),
        "UpdateSecret": (service.UpdateSecretRequest, resources.Secret),
        "DeleteSecret": (service.DeleteSecretRequest, empty_pb2.Empty),
        "ListSecretVersions": (service.ListSecretVersionsRequest, service.ListSecretVersionsResponse),
        "GetSecretVersion": (service.GetSecretVersionRequest, resources.SecretVersion),
        "AccessSecretVersion": (service.AccessSecretVersionRequest, service.AccessSecretVersionResponse),
        "DisableSecretVersion": (service.DisableSecretVersionRequest, resources.SecretVersion),
        "EnableSecretVersion": (service.EnableSecretVersionRequest, resources.SecretVersion),
        "DestroySecretVersion": (service.DestroySecretVersionRequest, resources.SecretVersion),
        "SetIamPolicy": (iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy),
        "GetIamPolicy": (iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy),
        "TestIamPermissions": (iam_policy_pb2.TestIamPermissionsRequest, iam_policy_pb2.TestIamPermissionsResponse),
    }


def _codec(cls: Any) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """(bytes -> raw pb, raw pb -> bytes) through proto-plus classes when the type is one."""
    if hasattr(cls, "deserialize"):  # proto-plus
        return (lambda data: cls.pb(cls.deserialize(data))), (lambda pb: cls.serialize(cls.wrap(pb)))
    return cls.FromString, (lambda pb: pb.SerializeToString())


def _grpc_handler(store: _Store) -> Any:
    import grpc

    handlers = {}
    for method, (request_cls, response_cls) in _grpc_methods().items():
        decode, _ = _codec(request_cls)
        _, encode = _codec(response_cls)

        def unary(request: Any, context: Any, method: str = method) -> Any:
            try:
                return store.dispatch(method, request)
            except FakeError as exc:
                context.abort(getattr(grpc.StatusCode, exc.status), exc.message)

        handlers[method] = grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=decode, response_serializer=encode)
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


# -- the REST front end ---------------------------------------------------------------------

# (HTTP method, path regex, RPC, where the path goes, where the body goes)
_ROUTES: list[tuple[str, re.Pattern[str], str, str, str | None]] = [
    ("GET", re.compile(rf"/v1/({_VERSION}):access"), "AccessSecretVersion", "name", None),
    ("POST", re.compile(rf"/v1/({_SECRET}):addVersion"), "AddSecretVersion", "parent", "*"),
    ("POST", re.compile(rf"/v1/({_PARENT})/secrets"), "CreateSecret", "parent", "secret"),
    ("GET", re.compile(rf"/v1/({_PARENT})/secrets"), "ListSecrets", "parent", None),
    ("GET", re.compile(rf"/v1/({_SECRET})/versions"), "ListSecretVersions", "parent", None),
    ("POST", re.compile(rf"/v1/({_VERSION}):destroy"), "DestroySecretVersion", "name", "*"),
    ("POST", re.compile(rf"/v1/({_VERSION}):disable"), "DisableSecretVersion", "name", "*"),
    ("POST", re.compile(rf"/v1/({_VERSION}):enable"), "EnableSecretVersion", "name", "*"),
    ("GET", re.compile(rf"/v1/({_VERSION})"), "GetSecretVersion", "name", None),
    ("GET", re.compile(rf"/v1/({_SECRET})"), "GetSecret", "name", None),
    ("DELETE", re.compile(rf"/v1/({_SECRET})"), "DeleteSecret", "name", None),
    ("PATCH", re.compile(rf"/v1/({_SECRET})"), "UpdateSecret", "secret.name", "secret"),
    ("GET", re.compile(rf"/v1/({_SECRET}):getIamPolicy"), "GetIamPolicy", "resource", None),
    ("POST", re.compile(rf"/v1/({_SECRET}):setIamPolicy"), "SetIamPolicy", "resource", "*"),
    ("POST", re.compile(rf"/v1/({_SECRET}):testIamPermissions"), "TestIamPermissions", "resource", "*"),
]


def _rest_request(method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[str, Any]:
    from google.protobuf import json_format

    for verb, pattern, rpc, path_field, body_field in _ROUTES:
        match = pattern.fullmatch(path)
        if verb != method or not match:
            continue
        message: dict[str, Any] = {k: v[-1] for k, v in query.items() if not k.startswith("$")}
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            raise FakeError("INVALID_ARGUMENT", "Invalid JSON payload received.") from None
        if body_field == "*":
            message.update(payload)
        elif body_field:
            message[_camel(body_field)] = payload
        head, _, tail = path_field.partition(".")
        if tail:
            message.setdefault(_camel(head), {})[_camel(tail)] = match.group(1)
        else:
            message[_camel(head)] = match.group(1)
        request_cls = _grpc_methods()[rpc][0]
        pb_cls = request_cls.pb() if hasattr(request_cls, "deserialize") else request_cls
        try:
            return rpc, json_format.ParseDict(message, pb_cls(), ignore_unknown_fields=False)
        except json_format.ParseError as exc:
            raise FakeError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None
    raise FakeError("NOT_FOUND", f"The fake has no route for {method} {path}")


def _rest_server(store: _Store) -> ThreadingHTTPServer:
    from google.protobuf import json_format

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one segment per answer: no 40 ms delayed-ACK stalls

        def _serve(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = parse_qs(url.query, keep_blank_values=True)
            ints = "enum-encoding=int" in "".join(query.get("$alt", []))
            try:
                rpc, request = _rest_request(self.command, url.path, query, body)
                response = store.dispatch(rpc, request)
                status, out = 200, json_format.MessageToJson(response, use_integers_for_enums=ints).encode()
            except FakeError as exc:
                status = _HTTP.get(exc.status, 500)
                out = json.dumps({"error": {"code": status, "message": exc.message, "status": exc.status}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


class FakeSecretManager:
    """The fake Secret Manager: gRPC on `grpc_target`, REST on `rest_endpoint`, one store."""

    def __init__(self) -> None:
        self._store = _Store()
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None
        self.grpc_target = ""
        self.rest_endpoint = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeSecretManager:
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        self._grpc = grpc.server(ThreadPoolExecutor(max_workers=8))
        self._grpc.add_generic_rpc_handlers((_grpc_handler(self._store),))
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_target = f"127.0.0.1:{port}"
        self._http = _rest_server(self._store)
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                         name="fake-gcp-rest", daemon=True).start()
        self.rest_endpoint = f"http://127.0.0.1:{self._http.server_port}"
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> FakeSecretManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every secret, fault and recorded call."""
        self._store.reset()

    # -- for tests --------------------------------------------------------------------------

    def client(self, transport: str = "grpc") -> Any:
        """A `SecretManagerServiceClient` pointed here with anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager

        if transport == "rest":
            return secretmanager.SecretManagerServiceClient(
                credentials=AnonymousCredentials(), transport="rest",
                client_options={"api_endpoint": self.rest_endpoint},
            )
        if transport != "grpc":
            raise ValueError(f"transport must be 'grpc' or 'rest', not {transport!r}")
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(self.grpc_target)
        return secretmanager.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))

    def source(self, project: str, secret: str, transport: str = "rest", alias: str | None = None,
               field: str | None = None) -> str:
        """A keyvault source URI for `secret`, reaching this fake over `transport`."""
        endpoint = self.rest_endpoint if transport == "rest" else "http://" + self.grpc_target
        uri = f"gcp-sm://projects/{project}/secrets/{secret}?endpoint={endpoint}&transport={transport}"
        if alias:
            uri += f"&alias={alias}"
        return uri + (f"#{field}" if field else "")

    def create_secret(self, project: str, secret_id: str, *values: str | bytes,
                      labels: dict[str, str] | None = None, aliases: dict[str, int] | None = None) -> str:
        """Create a secret holding `values` as versions 1, 2, ... (set-up without the API)."""
        from google.cloud.secretmanager_v1.types import resources, service

        store = self._store
        with store.lock:
            secret = resources.Secret.pb()(labels=labels or {})
            secret.replication.automatic.SetInParent()
            name = store._CreateSecret(service.CreateSecretRequest.pb()(
                parent=f"projects/{project}", secret_id=secret_id, secret=secret)).name
            for value in values:
                data = value.encode() if isinstance(value, str) else value
                request = service.AddSecretVersionRequest.pb()(parent=name)
                request.payload.data = data
                store._AddSecretVersion(request)
            if aliases:
                stored = store.secrets[name]
                store._check_aliases(name, aliases)
                stored.version_aliases.update(aliases)
                stored.etag = store.etag()
        return name

    def fail(self, method: str, status: str = "UNAVAILABLE", times: int = 1, message: str | None = None) -> None:
        """Make the next `times` calls of `method` ("AccessSecretVersion" or
        "access_secret_version") fail with gRPC status `status` ("UNAVAILABLE", "PERMISSION_DENIED", ...)."""
        rpc = method if method[:1].isupper() else "".join(p.capitalize() for p in method.split("_"))
        if rpc not in PERMISSIONS:
            raise ValueError(f"unknown Secret Manager method {method!r}")
        if status not in _HTTP:
            raise ValueError(f"unknown gRPC status {status!r}")
        text = message or (
            f"Permission '{PERMISSIONS[rpc]}' denied (injected)" if status == "PERMISSION_DENIED"
            else f"{status} (injected by FakeSecretManager)"
        )
        with self._store.lock:
            self._store.faults.setdefault(rpc, []).append(_Fault(status, times, text))

    def corrupt_checksums(self, times: int = 1) -> None:
        """Make the next `times` accesses return a wrong `data_crc32c`, as if the payload had
        been damaged in transit (the official client does not notice; callers must)."""
        with self._store.lock:
            self._store.corrupt += times

    @property
    def calls(self) -> list[tuple[str, str]]:
        """Every RPC so far, in order: (method, resource name)."""
        with self._store.lock:
            return list(self._store.calls)

    def payload(self, version_name: str) -> bytes:
        """The stored bytes of a version (to assert on what a test wrote)."""
        with self._store.lock:
            return self._store.payloads[self._store.version(version_name).name]
