"""Tell people what the scheduled rotation did: one stderr line and an optional JSON webhook.

A rotation that runs unattended is only safe if someone hears about it: that a key is due,
that the job is waiting for an operator to stage a new key, that it rotated, revoked, or
failed. Notifications are best-effort by design: a webhook that is down, slow or answering
500 is reported on stderr and never fails the rotation it describes.

The stderr line is stable (`keyvault: event=rotated env=prod target=... hint=...`, logfmt
quoting) so log pipelines can alert on it without a webhook. The webhook body carries a
Slack-compatible `text` plus structured fields, and is signed so receivers can reject forged
and replayed deliveries:

    X-Keyvault-Timestamp: <unix seconds>
    X-Keyvault-Signature: v1=<hex HMAC-SHA256(secret, "v1:<timestamp>:<raw body>")>

`verify_signature()` is the receiver's side of that contract. Nothing here ever holds a key
value: callers pass a `Secret` (only its hint and a fingerprint prefix leave this module),
and any free text is scrubbed of anything shaped like an Anthropic credential.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Mapping
from urllib.parse import urlsplit

from keyvault.errors import KeyvaultError
from keyvault.keys import Secret, hint as _hint

EVENTS = ("due", "waiting", "rotated", "revoked", "failed")
# what each event means to the person reading a chat channel
_TITLES = {
    "due": "key is due for rotation",
    "waiting": "waiting for a new key: stage one with `keyvault stage`",
    "rotated": "key rotated",
    "revoked": "old key revoked",
    "failed": "rotation FAILED",
}
ENV_URL = "KEYVAULT_WEBHOOK_URL"
ENV_SECRET = "KEYVAULT_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Keyvault-Signature"
TIMESTAMP_HEADER = "X-Keyvault-Timestamp"
EVENT_HEADER = "X-Keyvault-Event"
DELIVERY_HEADER = "X-Keyvault-Delivery"
FINGERPRINT_CHARS = 12  # enough to match a journal entry, too little to brute-force anything
DEFAULT_TIMEOUT = 5.0
RETRY_DELAY = 1.0

# anything shaped like an Anthropic credential in free text is replaced by its hint
_CREDENTIAL_RE = re.compile(r"sk-ant-[a-z]{2,10}[0-9]{2}-[A-Za-z0-9_\-]{8,}")


class NotifyConfigError(KeyvaultError):
    """The webhook settings are unusable (wrong scheme, no host)."""


def scrub(text: str) -> str:
    """Replace every credential-shaped token with its hint (defence in depth for free text)."""
    return _CREDENTIAL_RE.sub(lambda m: _hint(m.group(0)), text)


@dataclass(frozen=True)
class Event:
    """One thing that happened to one key; holds a hint and a fingerprint prefix, never a value."""

    event: str
    env: str = ""
    target: str = ""
    hint: str = ""
    fingerprint: str = ""  # a prefix of the sha256 fingerprint
    time: str = ""  # RFC 3339 UTC
    detail: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "text": self.text(),
            "event": self.event,
            "env": self.env,
            "target": self.target,
            "hint": self.hint,
            "fingerprint": self.fingerprint,
            "time": self.time,
            "detail": self.detail,
        }
        body.update({k: v for k, v in self.fields.items() if k not in body})
        return body

    def text(self) -> str:
        """The one-line summary chat tools display (Slack reads `text`)."""
        where = " ".join(p for p in (self.env and f"[{self.env}]", self.target) if p)
        parts = [f"keyvault: {_TITLES.get(self.event, self.event)}"]
        if where:
            parts.append(where)
        if self.hint:
            parts.append(f"key {self.hint}")
        line = " ".join(parts)
        if self.detail:
            line += f": {self.detail}"
        return line

    def log_line(self) -> str:
        """The stable stderr form: `keyvault: event=... env=... target=... hint=... fp=... time=...`."""
        pairs = [
            ("event", self.event),
            ("env", self.env),
            ("target", self.target),
            ("hint", self.hint),
            ("fp", self.fingerprint),
            ("time", self.time),
        ]
        pairs += [(k, str(v)) for k, v in self.fields.items()]
        if self.detail:
            pairs.append(("detail", self.detail))
        return "keyvault: " + " ".join(f"{k}={_logfmt(v)}" for k, v in pairs if v != "")


def _logfmt(value: str) -> str:
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def make_event(
    event: str,
    *,
    env: str = "",
    target: str = "",
    secret: Secret | None = None,
    key_hint: str = "",
    fingerprint: str = "",
    detail: str = "",
    now: datetime | None = None,
    **fields: object,
) -> Event:
    """Build an event; a `Secret` contributes only its hint and fingerprint prefix."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}")
    if secret is not None:
        key_hint = key_hint or secret.hint
        fingerprint = fingerprint or secret.fingerprint
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return Event(
        event=event,
        env=scrub(env),
        target=scrub(target),
        hint=scrub(key_hint),
        fingerprint=fingerprint[:FINGERPRINT_CHARS],
        time=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        detail=scrub(detail),
        fields={k: scrub(str(v)) for k, v in fields.items() if v is not None},
    )


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """`v1=` + hex HMAC-SHA256 over `v1:<timestamp>:<body>` (the timestamp is signed, so a
    receiver that checks its age rejects a captured delivery replayed later)."""
    mac = hmac.new(secret.encode("utf-8"), f"v1:{timestamp}:".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    body: bytes,
    timestamp: str,
    signature: str,
    secret: str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """The receiver's check: a valid signature over this body, made within `tolerance` seconds."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(body, secret, ts), signature or "")


def redact_url(url: str) -> str:
    """scheme://host[:port] only: webhook paths often are credentials (Slack's are)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


def check_webhook_url(url: str) -> str:
    """Raise NotifyConfigError unless `url` is an http(s) URL with a host; return it stripped."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise NotifyConfigError(f"webhook URL ({ENV_URL}) is malformed: expected https://host/path") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyConfigError(
            f"webhook URL ({ENV_URL}) must be http:// or https:// with a host, got scheme {parts.scheme or 'none'!r}"
        )
    if parts.username or parts.password:
        raise NotifyConfigError(
            f"webhook URL ({ENV_URL}) must not carry credentials; set {ENV_SECRET} to sign deliveries instead"
        )
    return url


@dataclass
class Delivery:
    """What happened to one notification: the stderr line always, the webhook when configured."""

    event: Event
    webhook: str | None = None  # redacted URL
    delivered: bool | None = None  # None: no webhook configured
    attempts: int = 0
    status: int | None = None
    error: str = ""


class _NoRedirect:
    """A webhook that redirects is misconfigured; following it would re-send a signed body elsewhere."""

    @staticmethod
    def opener():  # type: ignore[no-untyped-def]
        import urllib.request

        class Refuse(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
                return None

        return urllib.request.build_opener(Refuse)


class Notifier:
    """Sends events to stderr and, when configured, a webhook. `send()` never raises."""

    def __init__(
        self,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        *,
        stream: IO[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 1,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.webhook_url = check_webhook_url(webhook_url) if webhook_url else None
        self.webhook_secret = webhook_secret or None
        self.stream = stream
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay

    @classmethod
    def from_env(
        cls,
        webhook_url: str | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> Notifier:
        """`KEYVAULT_WEBHOOK_URL` wins over the policy's URL; the signing secret comes only from
        `KEYVAULT_WEBHOOK_SECRET` (a secret does not belong in a policy file in git)."""
        env = os.environ if environ is None else environ
        url = env.get(ENV_URL) or webhook_url or None
        return cls(url, env.get(ENV_SECRET) or None, **kwargs)  # type: ignore[arg-type]

    def _err(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr

    def _print(self, line: str) -> None:
        try:
            stream = self._err()
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed stderr must not fail the rotation either
            pass

    def send(self, event: Event) -> Delivery:
        self._print(event.log_line())
        delivery = Delivery(event)
        if not self.webhook_url:
            return delivery
        delivery.webhook = redact_url(self.webhook_url)
        try:
            self._post(event, delivery)
        except Exception as exc:  # noqa: BLE001 - best effort by contract: report, never raise
            delivery.delivered = False
            delivery.error = f"{type(exc).__name__}"
        if not delivery.delivered:
            self._print(
                f"keyvault: warning: notification event={event.event} not delivered to "
                f"{delivery.webhook} after {delivery.attempts} attempt(s): {delivery.error}; "
                "the rotation itself is not affected"
            )
        return delivery

    def notify(self, event: str, **kwargs: object) -> Delivery:
        return self.send(make_event(event, **kwargs))  # type: ignore[arg-type]

    def _post(self, event: Event, delivery: Delivery) -> None:
        import urllib.error
        import urllib.request

        body = json.dumps(event.as_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        delivery_id = str(uuid.uuid4())  # the same id on the retry: receivers can de-duplicate
        opener = _NoRedirect.opener()
        assert self.webhook_url is not None
        for attempt in range(1 + max(0, self.retries)):
            if attempt:
                time.sleep(self.retry_delay)
            delivery.attempts = attempt + 1
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "keyvault-notify/1",
                EVENT_HEADER: event.event,
                DELIVERY_HEADER: delivery_id,
                TIMESTAMP_HEADER: str(ts),
            }
            if self.webhook_secret:
                headers[SIGNATURE_HEADER] = sign(body, self.webhook_secret, ts)
            request = urllib.request.Request(self.webhook_url, data=body, headers=headers, method="POST")
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    delivery.status = response.status
                    response.read(65536)
                if 200 <= (delivery.status or 0) < 300:
                    delivery.delivered = True
                    delivery.error = ""
                    return
                delivery.error = f"HTTP {delivery.status}"
            except urllib.error.HTTPError as exc:
                delivery.status = exc.code
                delivery.error = f"HTTP {exc.code}"
                exc.close()
                if 300 <= exc.code < 400:
                    delivery.error += " (redirects are not followed: point the URL at the final address)"
                    break
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver rejected this body: sending it again will not help
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                delivery.error = _describe_network_error(reason)
        delivery.delivered = False


def _describe_network_error(reason: object) -> str:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__


def notify(event: str, *, notifier: Notifier | None = None, **kwargs: object) -> Delivery:
    """Send one event with the environment's settings (or `notifier`); never raises.

    A misconfigured webhook URL is reported on stderr and the event still goes to stderr.
    """
    if notifier is None:
        try:
            notifier = Notifier.from_env()
        except NotifyConfigError as exc:
            notifier = Notifier()
            notifier._print(f"keyvault: warning: {exc}; notifications go to stderr only")
    return notifier.notify(event, **kwargs)
