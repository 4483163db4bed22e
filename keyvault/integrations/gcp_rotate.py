"""Google Secret Manager rotation notifications (`SECRET_ROTATE`) as a Cloud Run function.

Secret Manager does not rotate anything itself: at each `next_rotation_time` it publishes a
Pub/Sub message to the secret's topics and advances the time by `rotation_period`. The message
has attributes `eventType=SECRET_ROTATE`, `secretId=projects/P/secrets/S` (plus `dataFormat`
and a `timestamp`), and `data` = base64 of the Secret resource as JSON. A Cloud Run function
with a Pub/Sub trigger receives it as a CloudEvent whose data is
`{"message": {"attributes": ..., "data": ..., "messageId": ...}, "subscription": ...}`.

`handle_cloud_event` finds the policy environment whose targets include that secret and runs
the rotation engine for it (`keyvault.integrations.scheduled`): with a key staged by
`keyvault stage` it rotates, inside the grace period it waits, after it revokes, and without a
staged key it notifies that the key is due. Set `rotation_period` to a day: the schedule is the
daily tick, the policy (max age 90 days, warning window, expires_at) decides what is due.

Acknowledge or retry: returning acks the message; raising makes Pub/Sub redeliver it (with the
trigger's retry policy). Only undetermined failures raise (the Anthropic API or the backend
did not answer): a message that can never succeed (not ours, malformed, no matching policy
environment, a rotation another rotator holds) is logged and acknowledged.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from keyvault.errors import KeyvaultError

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.notify import Notifier
    from keyvault.policy import Policy

ROTATE = "SECRET_ROTATE"
TEST_MESSAGE = "TOPIC_CONFIGURED"
_SECRET_RE = re.compile(r"^projects/([^/]+)/(?:locations/([^/]+)/)?secrets/([^/]+)$")


class MessageError(KeyvaultError):
    """The Pub/Sub message is not a Secret Manager notification this handler can act on."""


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Notification:
    event_type: str
    secret_id: str  # projects/P/secrets/S
    message_id: str
    secret: dict[str, Any]  # the Secret resource (name, rotation, topics, ...), {} for test messages

    @property
    def next_rotation_time(self) -> str | None:
        return (self.secret.get("rotation") or {}).get("nextRotationTime")


def _message_of(cloud_event: Any) -> Mapping[str, Any]:
    """The Pub/Sub message inside a CloudEvent (object or dict), a push body, or a message."""
    data = getattr(cloud_event, "data", None)
    if data is None and isinstance(cloud_event, Mapping):
        data = cloud_event.get("data") if "message" not in cloud_event and "attributes" not in cloud_event else cloud_event
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise MessageError("the CloudEvent data is not JSON") from None
    if not isinstance(data, Mapping):
        raise MessageError("the event carries no Pub/Sub message (expected data.message)")
    message = data.get("message", data)
    if not isinstance(message, Mapping) or "attributes" not in message:
        raise MessageError("the Pub/Sub message has no attributes; is this a Secret Manager notification topic?")
    return message


def parse_notification(cloud_event: Any) -> Notification:
    message = _message_of(cloud_event)
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise MessageError("the Pub/Sub message attributes are not a map")
    event_type = str(attributes.get("eventType", ""))
    if not event_type:
        raise MessageError("the message has no eventType attribute: not a Secret Manager notification")
    secret_id = str(attributes.get("secretId", ""))
    if event_type != TEST_MESSAGE and not _SECRET_RE.match(secret_id):
        raise MessageError(f"secretId {secret_id!r} is not a secret name (projects/P/secrets/S)")
    body: dict[str, Any] = {}
    raw = message.get("data")
    if raw:
        try:
            decoded = base64.b64decode(raw, validate=True)
            body = json.loads(decoded.decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise MessageError(f"{secret_id}: the message data is not base64 of the Secret as JSON") from None
        if not isinstance(body, dict):
            raise MessageError(f"{secret_id}: the message data is not a Secret resource")
    return Notification(event_type, secret_id, str(message.get("messageId") or message.get("message_id") or ""), body)


def _parts(secret_id: str) -> tuple[str, str | None, str] | None:
    m = _SECRET_RE.match(secret_id)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def find_environment(policy: Policy, secret_id: str) -> tuple[str, str]:
    """(environment name, target URI) for the gcp-sm target naming this secret.

    Notifications may name the project by number where the policy names it by id: the secret
    name must match exactly, the project must match or be a number on one side only, and the
    match must be unique.
    """
    want = _parts(secret_id)
    assert want is not None
    hits: list[tuple[str, str, bool]] = []
    for env in policy.environments.values():
        for target in env.targets:
            scheme, _, rest = target.source.partition("://")
            if scheme.lower() != "gcp-sm":
                continue
            have = _parts(rest.split("#", 1)[0].split("?", 1)[0])
            if have is None or have[2] != want[2] or have[1] != want[1]:
                continue
            exact = have[0] == want[0]
            if exact or have[0].isdigit() != want[0].isdigit():
                hits.append((env.name, target.source, exact))
    exact_hits = [h for h in hits if h[2]]
    chosen = exact_hits or hits
    if not chosen:
        raise MessageError(f"{secret_id}: no gcp-sm:// target of the policy names this secret")
    if len({h[0] for h in chosen}) > 1:
        names = ", ".join(sorted({h[0] for h in chosen}))
        raise MessageError(f"{secret_id}: several policy environments name this secret ({names}); name the project the same way in each")
    return chosen[0][0], chosen[0][1]


def _undetermined(exc: KeyvaultError) -> bool:
    """Worth a Pub/Sub redelivery: the API or the backend did not give an answer."""
    from keyvault import errors

    transient = tuple(getattr(errors, name) for name in ("ApiError",) if hasattr(errors, name))
    if transient and isinstance(exc, transient):
        return True
    return type(exc) is errors.BackendError


def handle_cloud_event(
    cloud_event: Any,
    *,
    policy: Policy | str | None = None,
    notifier: Notifier | None = None,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Handle one Secret Manager notification; see the module docstring for ack/retry."""
    from keyvault.integrations.scheduled import load, notifier_for, run_scheduled
    from keyvault.errors import RotationInProgress

    try:
        note = parse_notification(cloud_event)
    except MessageError as exc:
        log(f"keyvault: ignoring message: {exc}")
        return {"action": "ignored", "reason": str(exc)}
    if note.event_type == TEST_MESSAGE:
        log("keyvault: topic configured (Secret Manager test message)")
        return {"action": "ignored", "reason": "test message"}
    if note.event_type != ROTATE:
        log(f"keyvault: ignoring {note.event_type} for {note.secret_id} (only {ROTATE} starts a rotation)")
        return {"action": "ignored", "reason": note.event_type}
    loaded = load(policy)
    notifier = notifier or notifier_for(loaded)
    try:
        env, target = find_environment(loaded, note.secret_id)
    except MessageError as exc:
        log(f"keyvault: error: {exc}")
        notifier.notify("failed", target=note.secret_id, detail=str(exc))
        return {"action": "ignored", "reason": str(exc)}
    log(f"keyvault: {ROTATE} for {note.secret_id} (message {note.message_id}, next "
        f"{note.next_rotation_time or 'unknown'}): rotating environment {env} ({target})")
    try:
        outcome = run_scheduled(loaded, env, notifier=notifier, log=log)
    except RotationInProgress as exc:
        log(f"keyvault: {exc}; this notification is acknowledged, the other rotator continues")
        return {"action": "in-progress", "env": env}
    except KeyvaultError as exc:
        if _undetermined(exc):
            raise  # Pub/Sub redelivers; the engine resumes where it stopped
        log(f"keyvault: error: {exc}")
        return {"action": "failed", "env": env, "reason": str(exc)}
    return {"action": "engine", **outcome.to_dict()}


def entry_point(cloud_event: Any) -> None:
    """For `functions-framework --target entry_point --signature-type cloudevent`."""
    handle_cloud_event(cloud_event)
