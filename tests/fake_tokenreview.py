"""A Kubernetes API that answers only TokenReview, on loopback: enough for Vault/OpenBao's
kubernetes auth method to log a pod in (it parses the service-account JWT, then asks the
cluster whether the token is genuine).

`FakeTokenReview().start()` serves `POST /apis/authentication.k8s.io/v1/tokenreviews`;
`service_account_jwt(ns, name)` makes a signed JWT the fake vouches for; any other token is
reported as not authenticated. `ca_pem` is the CA certificate the auth method's config needs.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeTokenReview:
    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyvault-fake-k8s-ca")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.valid: dict[str, tuple[str, str]] = {}  # token -> (namespace, service account)
        self.reviews = 0
        self._server: ThreadingHTTPServer | None = None

    def service_account_jwt(self, namespace: str, name: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        claims = {
            "iss": "kubernetes/serviceaccount", "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": f"uid-{namespace}-{name}",
            "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
        }
        head = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims).encode())
        r, s = decode_dss_signature(self._key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{head}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.valid[token] = (namespace, name)
        return token

    def _review(self, body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        found = self.valid.get(str(body.get("spec", {}).get("token", "")))
        if found is None:
            status: dict[str, Any] = {"authenticated": False, "error": "token is not valid"}
        else:
            ns, name = found
            status = {"authenticated": True,
                      "user": {"username": f"system:serviceaccount:{ns}:{name}", "uid": f"uid-{ns}-{name}", "groups": []}}
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeTokenReview:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                out = json.dumps(fake._review(body)).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
