"""A webhook receiver on loopback, for testing keyvault's notifications (and your own receiver).

    with WebhookReceiver(secret="s3cret", responses=[500, 200]) as hook:
        os.environ["KEYVAULT_WEBHOOK_URL"] = hook.url
        ...
        assert hook.requests[-1].json["event"] == "rotated"

`responses` scripts the status of each delivery (then 200 forever); a float entry sleeps that
many seconds before answering 200, to exercise client timeouts. Every request is recorded
with its headers, raw body, parsed JSON and whether its signature verified.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    signature_ok: bool | None  # None when the receiver has no secret


class WebhookReceiver:
    def __init__(self, secret: str | None = None, responses: list[int | float] | None = None) -> None:
        self.secret = secret
        self.responses = list(responses or [])
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._record(self.path, dict(self.headers.items()), body)
                with receiver._lock:
                    action = receiver.responses.pop(0) if receiver.responses else 200
                if isinstance(action, float):
                    time.sleep(action)
                    action = 200
                payload = b"ok" if action < 300 else b"error"
                self.send_response(int(action))
                if 300 <= action < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        from keyvault.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        ok = None
        if self.secret is not None:
            ok = verify_signature(
                body, headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, ""), self.secret
            )
        with self._lock:
            self.requests.append(Received(path, headers, body, parsed, ok))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/T000/B000/not-a-real-token"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
