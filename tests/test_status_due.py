"""Knowing when: `keyvault status --due` is what a scheduler (or a monitoring check) runs to
learn whether the key needs rotating. Age comes from the Admin API's created_at (or the
backend's version date), and a key's expires_at brings the due date forward."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytest.importorskip("keyvault.rotate.status")

from keyvault.testing.fake_anthropic import FakeAnthropic  # noqa: E402


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def _setup(tmp_path: Path, fake: FakeAnthropic, **mint: object) -> tuple[Path, dict[str, str], object]:
    key = fake.mint_key("prod-chat", **mint)  # type: ignore[arg-type]
    admin = fake.mint_key("admin", admin=True)
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={key.secret.reveal()}\n")
    policy = tmp_path / "rotation.toml"
    policy.write_text(
        "[rotation]\nmax_age_days = 90\nwarn_days = 14\nadmin_key = \"env://ANTHROPIC_ADMIN_KEY\"\n"
        f"[environments.prod]\ntargets = [\"dotenv://{tmp_path / '.env'}#ANTHROPIC_API_KEY\"]\n"
    )
    env = {**os.environ, **fake.env(admin)}
    env.pop("ANTHROPIC_API_KEY", None)
    return policy, env, key


def _status(policy: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyvault", "status", "--due", "--format", "json", "--policy", str(policy)],
        env=env, capture_output=True, text=True, timeout=60,
    )


def _due(run: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(run.stdout)["environments"][0]["due"]


def test_fresh_key_is_not_due(tmp_path: Path, fake: FakeAnthropic) -> None:
    policy, env, _ = _setup(tmp_path, fake)
    run = _status(policy, env)
    assert run.returncode == 0, run.stderr
    assert _due(run)["state"] == "ok"


def test_old_key_is_due_by_the_admin_api_created_at(tmp_path: Path, fake: FakeAnthropic) -> None:
    policy, env, key = _setup(tmp_path, fake)
    fake.key(key.id).created_at = datetime.now(timezone.utc) - timedelta(days=80)  # the Console made it 80 days ago
    run = _status(policy, env)
    assert run.returncode == 1, run.stderr
    due = _due(run)
    assert due["state"] == "warn" and 9 <= due["days_until_due"] <= 11 and due["reason"] == "max age 90 days"
    fake.key(key.id).created_at = datetime.now(timezone.utc) - timedelta(days=95)
    assert _due(_status(policy, env))["state"] == "overdue"


def test_expires_at_brings_the_due_date_forward(tmp_path: Path, fake: FakeAnthropic) -> None:
    policy, env, key = _setup(tmp_path, fake, expires_at=datetime.now(timezone.utc) + timedelta(days=5))
    run = _status(policy, env)
    assert run.returncode == 1, run.stderr
    due = _due(run)
    assert due["reason"] == "expires_at" and due["state"] == "warn"
    assert key.secret.reveal() not in run.stdout + run.stderr
