"""`keyvault rotate` tells people what it did: the scheduled jobs (CronJob, systemd, Actions)
run exactly this command, so its notifications are the only ones they send. Real subprocess
runs against FakeAnthropic and a loopback webhook receiver."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from keyvault.redact import credential_in
from keyvault.testing.webhook import WebhookReceiver
from tests.rotate_support import World, make_world, text

SECRET = "webhook signing secret (test)"


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    w.add_dotenv("web")
    return w


def _events(hook: WebhookReceiver) -> list[str]:
    return [r.json["event"] for r in hook.requests]


def test_a_rotation_sends_signed_events_without_key_values(world: World) -> None:
    new = world.fake.mint_key("prod-chat-new")
    world.stage(new.secret)
    with WebhookReceiver(secret=SECRET) as hook:
        proc = world.rotate(env=world.environ(KEYVAULT_WEBHOOK_URL=hook.url, KEYVAULT_WEBHOOK_SECRET=SECRET))
    assert proc.returncode == 0, text(proc)
    assert _events(hook) == ["rotated", "revoked"]
    rotated, revoked = hook.requests
    assert all(r.signature_ok for r in hook.requests)
    assert rotated.json["hint"] == new.secret.hint and rotated.json["env"] == "prod"
    assert revoked.json["hint"] == world.old.secret.hint
    for r in hook.requests:
        body = r.body.decode()
        assert credential_in(body) is None
        assert new.secret.reveal() not in body and world.old.secret.reveal() not in body
    assert "keyvault: event=rotated env=prod" in proc.stderr.decode()  # the log line for log-based alerting
    assert "not-a-real-token" not in text(proc)  # the webhook path is a credential


def test_a_failing_webhook_does_not_fail_the_rotation(world: World) -> None:
    new = world.fake.mint_key("prod-chat-new")
    world.stage(new.secret)
    with WebhookReceiver(responses=[500, 500]) as hook:  # "rotated": both attempts fail
        proc = world.rotate(env=world.environ(KEYVAULT_WEBHOOK_URL=hook.url))
    assert proc.returncode == 0, text(proc)
    assert "done: every target holds" in proc.stdout.decode()
    assert world.held() == [new.secret.fingerprint]
    assert "notification event=rotated not delivered" in proc.stderr.decode()
    assert "the rotation itself is not affected" in proc.stderr.decode()
    assert _events(hook) == ["rotated", "rotated", "revoked"]  # one retry, then the next event still goes


def test_a_rolled_back_rotation_notifies_failed(world: World) -> None:
    world.checks[0] = "exit 9"
    new = world.fake.mint_key("prod-chat-new")
    world.stage(new.secret)
    with WebhookReceiver() as hook:
        proc = world.rotate("--format", "json", env=world.environ(KEYVAULT_WEBHOOK_URL=hook.url))
    assert proc.returncode == 4, text(proc)
    assert json.loads(proc.stdout)["phase"] == "error"  # stdout stays one JSON document
    assert _events(hook) == ["failed"]
    assert "rolled back" in hook.requests[0].json["detail"] and credential_in(hook.requests[0].body.decode()) is None


def test_the_policy_webhook_url_and_the_environment_override(world: World) -> None:
    with WebhookReceiver() as from_policy, WebhookReceiver() as from_env:
        world.settings["webhook_url"] = from_policy.url
        world.fake.key(world.old.id).expires_at = datetime.now(timezone.utc) + timedelta(days=3)
        assert world.rotate("--dry-run").returncode == 0  # a dry run tells nobody
        assert world.rotate().returncode == 1  # due, nothing staged
        assert _events(from_policy) == ["due"]
        assert world.rotate(env=world.environ(KEYVAULT_WEBHOOK_URL=from_env.url)).returncode == 1
        assert _events(from_env) == ["due"] and _events(from_policy) == ["due"]
