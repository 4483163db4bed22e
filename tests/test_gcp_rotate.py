"""The SECRET_ROTATE handler with real-shaped Pub/Sub messages, against FakeSecretManager (the
official client over REST on loopback) and FakeAnthropic."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.cloud.secretmanager")
pytest.importorskip("keyvault.backends.gcp")
pytest.importorskip("keyvault.rotate.engine")

from keyvault.errors import KeyvaultError  # noqa: E402
from keyvault.integrations.gcp_rotate import (  # noqa: E402
    MessageError,
    find_environment,
    handle_cloud_event,
    parse_notification,
)
from keyvault.notify import Notifier  # noqa: E402
from keyvault.testing.fake_anthropic import FakeAnthropic  # noqa: E402
from keyvault.testing.webhook import WebhookReceiver  # noqa: E402

PROJECT = "my-project"
SECRET = "anthropic-api-key"


class CloudEvent:
    """The shape functions-framework hands a Pub/Sub-triggered function (cloudevents'
    CloudEvent: attributes by item access, the Pub/Sub envelope in `.data`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self._attributes = {
            "specversion": "1.0",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/keyvault-secret-rotate",
            "id": data["message"]["messageId"],
        }

    def __getitem__(self, key: str) -> Any:
        return self._attributes[key]


def secret_message(event_type: str, secret_id: str, *, data: Any = None, message_id: str = "1234567890") -> CloudEvent:
    """A Secret Manager notification as Pub/Sub delivers it to a Cloud Run function."""
    body = data if data is not None else {
        "name": secret_id,
        "replication": {"automatic": {}},
        "createTime": "2026-08-24T06:00:00.000000Z",
        "topics": [{"name": f"projects/{PROJECT}/topics/keyvault-secret-rotate"}],
        "etag": '"16213c21b5c2a0"',
        "rotation": {"nextRotationTime": "2026-11-23T06:00:00Z", "rotationPeriod": "86400s"},
    }
    attributes = {"eventType": event_type, "dataFormat": "JSON_API_V1", "timestamp": "2026-11-22T06:00:00.123456Z"}
    if event_type != "TOPIC_CONFIGURED":
        attributes["secretId"] = secret_id
    message: dict[str, Any] = {
        "attributes": attributes,
        "messageId": message_id,
        "publishTime": "2026-11-22T06:00:00.456Z",
    }
    if event_type != "TOPIC_CONFIGURED":
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        message["data"] = base64.b64encode(raw).decode()
    return CloudEvent({"message": message, "subscription": f"projects/{PROJECT}/subscriptions/eventarc-sub"})


@dataclass
class Rig:
    gcp: Any
    fake: FakeAnthropic
    old: Any
    source: str
    policy: Path
    hook: WebhookReceiver
    err: io.StringIO

    def handle(self, event: Any) -> dict[str, Any]:
        notifier = Notifier(self.hook.url, stream=self.err, retry_delay=0.01)
        return handle_cloud_event(event, policy=str(self.policy), notifier=notifier,
                                  log=lambda line: self.err.write(line + "\n"))

    def current(self) -> str:
        from keyvault.backends import open_backend

        return open_backend(self.source).read().secret.reveal()

    def notified(self) -> list[str]:
        return [r.json["event"] for r in self.hook.requests]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    from keyvault.testing.fake_gcp import FakeSecretManager

    with FakeSecretManager() as gcp, FakeAnthropic() as fake, WebhookReceiver() as hook:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        admin = fake.mint_key("admin", admin=True)
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", admin.secret.reveal())
        old = fake.mint_key("prod-chat-old", expires_at=datetime.now(timezone.utc) + timedelta(days=200))
        gcp.create_secret(PROJECT, SECRET, old.secret.reveal())
        gcp.create_secret(PROJECT, SECRET + "-keyvault-state")
        source = gcp.source(PROJECT, SECRET)
        policy = tmp_path / "rotation.toml"
        policy.write_text(
            '[rotation]\napp = "chat"\ngrace = "1h"\nadmin_key = "env://ANTHROPIC_ADMIN_KEY"\n'
            f'[environments.prod]\ntargets = ["{source}"]\n'
            '[environments.staging]\ntargets = ["dotenv://staging.env#ANTHROPIC_API_KEY"]\n'
        )
        yield Rig(gcp, fake, old, source, policy, hook, io.StringIO())


def test_rotate_message_rotates_a_staged_key(rig: Rig) -> None:
    from keyvault.backends import open_backend

    new = rig.fake.mint_key("prod-chat-new")
    open_backend(rig.source).stage(new.secret)  # what `keyvault stage` does
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}"))
    assert outcome["action"] == "engine" and outcome["env"] == "prod", outcome
    assert outcome["phase"] == "parked"  # grace period: the old key still works for 1h
    assert rig.current() == new.secret.reveal()
    assert rig.notified() == ["rotated"]
    assert rig.fake.key(rig.old.id).status == "active"
    log = rig.err.getvalue()
    assert "SECRET_ROTATE for projects/my-project/secrets/anthropic-api-key" in log
    assert new.secret.reveal() not in log and rig.old.secret.reveal() not in log


def test_project_number_in_the_message_matches_the_policy_project_id(rig: Rig) -> None:
    new = rig.fake.mint_key("prod-chat-new")
    from keyvault.backends import open_backend

    open_backend(rig.source).stage(new.secret)
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/123456789012/secrets/{SECRET}"))
    assert outcome["env"] == "prod" and rig.current() == new.secret.reveal()


def test_expiring_key_without_a_staged_one_is_reported_due(rig: Rig) -> None:
    # expires_at brings the due date forward: 3 days left is inside the 14-day warning window
    soon = rig.fake.mint_key("prod-chat-expiring", expires_at=datetime.now(timezone.utc) + timedelta(days=3))
    from keyvault.backends import open_backend

    backend = open_backend(rig.source)
    backend.stage(soon.secret)
    backend.promote(backend.read().secret.fingerprint)
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}"))
    assert outcome["phase"] == "due", outcome
    assert rig.notified() == ["due"]
    assert "expires_at" in rig.hook.requests[0].json["detail"]
    assert rig.current() == soon.secret.reveal()  # nothing changed


def test_key_far_from_due_changes_nothing_and_notifies_nothing(rig: Rig) -> None:
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}"))
    assert outcome["phase"] == "not-due"
    assert rig.notified() == [] and rig.current() == rig.old.secret.reveal()


@pytest.mark.parametrize(
    "event, reason",
    [
        (lambda: secret_message("TOPIC_CONFIGURED", ""), "test message"),
        (lambda: secret_message("SECRET_VERSION_ADD", f"projects/{PROJECT}/secrets/{SECRET}"), "SECRET_VERSION_ADD"),
        (lambda: secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}", data=b"\xff not json"),
         "not base64 of the Secret as JSON"),
        (lambda: secret_message("SECRET_ROTATE", "anthropic-api-key"), "is not a secret name"),
        (lambda: {"message": {"data": "e30="}}, "no attributes"),
    ],
)
def test_messages_that_cannot_rotate_are_acknowledged(rig: Rig, event: Any, reason: str) -> None:
    outcome = rig.handle(event())
    assert outcome["action"] == "ignored" and reason in outcome["reason"]
    assert rig.current() == rig.old.secret.reveal()


def test_secret_not_in_the_policy_is_acknowledged_and_reported(rig: Rig) -> None:
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/someone-elses"))
    assert outcome["action"] == "ignored" and "no gcp-sm:// target" in outcome["reason"]
    assert rig.notified() == ["failed"]


def test_undetermined_api_answer_raises_for_redelivery(rig: Rig) -> None:
    from keyvault.backends import open_backend
    from keyvault.errors import ApiError

    new = rig.fake.mint_key("prod-chat-new")
    open_backend(rig.source).stage(new.secret)
    rig.fake.inject("/v1/models", 529, count=None)  # overloaded: no verdict on the new key
    with pytest.raises(ApiError):
        rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}"))
    assert rig.current() == rig.old.secret.reveal()
    rig.fake.clear_faults()  # Pub/Sub redelivers: the engine continues where it stopped
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}"))
    assert outcome["phase"] == "parked" and rig.current() == new.secret.reveal()


def test_message_while_another_rotator_holds_the_journal_is_acknowledged(rig: Rig) -> None:
    from keyvault.backends import open_backend

    backend = open_backend(rig.source)
    backend.write_state({"v": "1", "phase": "running", "owner": "elsewhere/1", "step": "update",
                         "lease_until": "2999-01-01T00:00:00Z", "rotation": "r1"}, None)
    outcome = rig.handle(secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}"))
    assert outcome["action"] == "in-progress"


def test_push_subscription_body_is_accepted_too() -> None:
    event = secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}")
    note = parse_notification(event.data)  # the JSON body of a push subscription
    assert note.event_type == "SECRET_ROTATE" and note.next_rotation_time == "2026-11-23T06:00:00Z"
    assert parse_notification(event).message_id == "1234567890"


def test_ambiguous_policy_is_refused() -> None:
    from keyvault.policy import parse_policy

    policy = parse_policy(
        f'[environments.a]\ntargets = ["gcp-sm://projects/{PROJECT}/secrets/{SECRET}"]\n'
        f'[environments.b]\ntargets = ["gcp-sm://projects/other/secrets/{SECRET}"]\n'
    )
    assert find_environment(policy, f"projects/{PROJECT}/secrets/{SECRET}") == (
        "a", f"gcp-sm://projects/{PROJECT}/secrets/{SECRET}")
    with pytest.raises(MessageError, match="several policy environments"):
        find_environment(policy, f"projects/42/secrets/{SECRET}")
