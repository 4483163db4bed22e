"""Notifications: the stable stderr line and the signed webhook, against a real HTTP server on
loopback, including a receiver that fails, hangs or is not listening."""

from __future__ import annotations

import io
import json
import socket
import time
from datetime import datetime, timezone

import pytest

from keyvault.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Notifier,
    NotifyConfigError,
    make_event,
    notify,
    sign,
    verify_signature,
)
from keyvault.testing.keygen import make_key
from keyvault.testing.webhook import WebhookReceiver

NOW = datetime(2026, 11, 22, 10, 30, 0, tzinfo=timezone.utc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stderr_line_is_stable_and_holds_no_value() -> None:
    key = make_key()
    err = io.StringIO()
    Notifier(stream=err).notify(
        "rotated", env="prod", target="aws-sm://prod/anthropic#api_key", secret=key, now=NOW
    )
    assert err.getvalue() == (
        f"keyvault: event=rotated env=prod target=aws-sm://prod/anthropic#api_key hint={key.hint} "
        f"fp={key.fingerprint[:12]} time=2026-11-22T10:30:00Z\n"
    )
    assert key.reveal() not in err.getvalue()


def test_free_text_is_quoted_and_scrubbed_of_key_values() -> None:
    key = make_key()
    event = make_event("failed", env="staging", detail=f'verify said 401 for "{key.reveal()}"\nstop', now=NOW)
    line = event.log_line()
    assert key.reveal() not in line and key.reveal() not in json.dumps(event.as_dict())
    assert f'detail="verify said 401 for \\"{key.hint}\\"\\nstop"' in line
    assert "\n" not in line


def test_unknown_event_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown notification event 'done'"):
        make_event("done")


def test_webhook_delivery_is_signed_and_structured() -> None:
    key = make_key()
    err = io.StringIO()
    with WebhookReceiver(secret="whsec-test") as hook:
        d = Notifier(hook.url, "whsec-test", stream=err).notify(
            "due", env="prod", target="vault://secret/apps/chat#api_key", secret=key, age_days=91, due="2026-11-20"
        )
    assert d.delivered is True and d.attempts == 1 and d.status == 200
    (req,) = hook.requests
    assert req.signature_ok is True
    assert req.headers["Content-Type"] == "application/json"
    body = req.json
    assert body["event"] == "due" and body["env"] == "prod"
    assert body["target"] == "vault://secret/apps/chat#api_key"
    assert body["hint"] == key.hint and body["fingerprint"] == key.fingerprint[:12]
    assert body["age_days"] == "91" and body["due"] == "2026-11-20"
    assert body["text"].startswith("keyvault: key is due for rotation [prod] vault://secret/apps/chat#api_key")
    assert key.reveal() not in req.body.decode()
    # the body is what was signed: any change breaks the signature
    ts = req.headers[TIMESTAMP_HEADER]
    assert verify_signature(req.body, ts, req.headers[SIGNATURE_HEADER], "whsec-test")
    assert not verify_signature(req.body + b" ", ts, req.headers[SIGNATURE_HEADER], "whsec-test")
    assert not verify_signature(req.body, ts, req.headers[SIGNATURE_HEADER], "other-secret")
    assert "warning" not in err.getvalue()


def test_replayed_delivery_is_rejected_by_age() -> None:
    body = b'{"event":"rotated"}'
    old = int(time.time()) - 3600
    signature = sign(body, "k", old)
    assert verify_signature(body, str(old), signature, "k", now=old + 10)
    assert not verify_signature(body, str(old), signature, "k")  # an hour later: replay
    assert not verify_signature(body, "not-a-number", signature, "k")
    # moving the timestamp forward breaks the signature (it covers the timestamp)
    assert not verify_signature(body, str(int(time.time())), signature, "k")


def test_no_secret_means_no_signature_header() -> None:
    with WebhookReceiver() as hook:
        d = Notifier(hook.url, stream=io.StringIO()).notify("revoked", env="dev")
    assert d.delivered
    assert SIGNATURE_HEADER not in hook.requests[0].headers


def test_server_error_is_retried_once_then_reported_without_raising() -> None:
    err = io.StringIO()
    with WebhookReceiver(responses=[500, 500]) as hook:
        d = Notifier(hook.url, stream=err, retry_delay=0.01).notify("rotated", env="prod")
    assert d.delivered is False and d.attempts == 2 and d.status == 500
    assert len(hook.requests) == 2
    # the retry is the same delivery: receivers can de-duplicate on it
    assert hook.requests[0].headers[DELIVERY_HEADER] == hook.requests[1].headers[DELIVERY_HEADER]
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("keyvault: event=rotated env=prod")
    assert "not delivered" in lines[1] and "HTTP 500" in lines[1] and "2 attempt(s)" in lines[1]
    # the webhook path is a credential for Slack-style hooks: never printed
    assert "not-a-real-token" not in err.getvalue()


def test_retry_succeeds_after_one_failure() -> None:
    with WebhookReceiver(responses=[503]) as hook:
        d = Notifier(hook.url, stream=io.StringIO(), retry_delay=0.01).notify("failed", detail="boom")
    assert d.delivered is True and d.attempts == 2


def test_client_error_is_not_retried() -> None:
    with WebhookReceiver(responses=[400]) as hook:
        d = Notifier(hook.url, stream=io.StringIO(), retry_delay=0.01).notify("due")
    assert d.delivered is False and d.attempts == 1 and len(hook.requests) == 1


def test_redirect_is_not_followed() -> None:
    err = io.StringIO()
    with WebhookReceiver(responses=[302]) as hook:
        d = Notifier(hook.url, stream=err, retry_delay=0.01).notify("due")
    assert d.delivered is False and len(hook.requests) == 1
    assert "redirects are not followed" in err.getvalue()


def test_receiver_not_listening() -> None:
    err = io.StringIO()
    url = f"http://127.0.0.1:{_free_port()}/hook"
    started = time.monotonic()
    d = Notifier(url, stream=err, retry_delay=0.01).notify("waiting", env="prod")
    assert time.monotonic() - started < 3
    assert d.delivered is False and d.attempts == 2 and d.status is None
    assert "connection refused" in err.getvalue()


def test_hanging_receiver_times_out() -> None:
    err = io.StringIO()
    with WebhookReceiver(responses=[2.0, 2.0]) as hook:
        started = time.monotonic()
        d = Notifier(hook.url, stream=err, timeout=0.3, retry_delay=0.01).notify("rotated")
        elapsed = time.monotonic() - started
    assert d.delivered is False and d.attempts == 2
    assert elapsed < 1.8
    assert "timed out" in err.getvalue()


def test_settings_come_from_the_environment_first() -> None:
    with WebhookReceiver(secret="from-env") as hook:
        n = Notifier.from_env(
            "http://127.0.0.1:9/policy-url",
            environ={"KEYVAULT_WEBHOOK_URL": hook.url, "KEYVAULT_WEBHOOK_SECRET": "from-env"},
            stream=io.StringIO(),
        )
        assert n.notify("rotated").delivered
    assert hook.requests[0].signature_ok is True
    with WebhookReceiver() as hook:
        n = Notifier.from_env(hook.url, environ={}, stream=io.StringIO())
        assert n.notify("rotated").delivered  # the policy's URL when the environment has none


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.invalid/x", "must be http:// or https://"),
        ("https:///nohost", "must be http:// or https:// with a host"),
        ("https://user:pw@example.invalid/x", "must not carry credentials"),
        ("https://example.invalid:notaport/x", "malformed"),
    ],
)
def test_bad_webhook_url_is_a_clear_config_error(url: str, message: str) -> None:
    with pytest.raises(NotifyConfigError, match=message):
        Notifier(url)


def test_notify_with_bad_environment_url_still_logs_the_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEYVAULT_WEBHOOK_URL", "gopher://example.invalid/")
    d = notify("failed", env="prod", detail="verify failed")
    err = capsys.readouterr().err
    assert "must be http:// or https://" in err
    assert "keyvault: event=failed env=prod" in err
    assert d.delivered is None


def test_engine_run_notifications_never_raise_and_name_the_events(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("keyvault.rotate.engine")
    from keyvault.errors import KeyvaultError
    from keyvault.integrations.scheduled import notify_run
    from keyvault.policy import parse_policy
    from keyvault.rotate.engine import Event, Result

    policy = parse_policy('[environments.prod]\ntargets = ["dotenv://.env#ANTHROPIC_API_KEY"]\n')
    with WebhookReceiver() as hook:
        monkeypatch.setenv("KEYVAULT_WEBHOOK_URL", hook.url)
        deployed = Result(env="prod", phase="parked", step="grace", summary="awaiting revoke", new_hint="sk-ant-api03-AAA...AAAA",
                          events=[Event("update", "promoted"), Event("verify-deploy", "reads back the new key")])
        assert notify_run(policy, "prod", result=deployed) == ["rotated"]
        revoked = Result(env="prod", phase="parked", step="archive", summary="revoked",
                         events=[Event("revoke", "apikey_1 set inactive")])
        assert notify_run(policy, "prod", result=revoked) == ["revoked"]
        assert notify_run(policy, "prod", result=Result(env="prod", phase="due", step="plan", summary="due in 3 days")) == ["due"]
        assert notify_run(policy, "prod", result=Result(env="prod", phase="not-due", step="plan", summary="ok")) == []
        assert notify_run(policy, "prod", error=KeyvaultError("boom")) == ["failed"]
        assert notify_run(policy, "nope", error=KeyvaultError("boom")) == []  # unknown env: swallowed
    assert [r.json["event"] for r in hook.requests] == ["rotated", "revoked", "due", "failed"]
    assert hook.requests[0].json["target"] == "dotenv://.env#ANTHROPIC_API_KEY"
