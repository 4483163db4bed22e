"""anthropic_client(): the official SDK, pointed at the fake Anthropic API, survives a rotation
under it: the old key is deactivated, the next call gets one 401, re-reads the key, succeeds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import keyvault
from keyvault import resolve
from keyvault.backends import open_backend

anthropic = pytest.importorskip("anthropic")


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Any:
    try:
        return request.getfixturevalue("fake_anthropic")
    except pytest.FixtureLookupError:
        pytest.skip("the fake_anthropic fixture (keyvault.testing.FakeAnthropic) is not available here yet")


@pytest.fixture(autouse=True)
def _clean_cache() -> Any:
    resolve.clear_cache()
    yield
    resolve.clear_cache()


def rotate(env_file: Path, fake: Any, old: Any) -> Any:
    """What `keyvault rotate` does to this target: stage, promote (CAS), then revoke the old key."""
    new = fake.mint_key("prod-rotated")
    backend = open_backend(f"dotenv://{env_file}")
    backend.stage(new.secret)
    backend.promote(old.secret.fingerprint)
    fake.set_status(old.id, "inactive")
    return new


def statuses(fake: Any) -> list[tuple[int | None, str | None]]:
    return [(r.status, r.key_id) for r in fake.requests if r.path.startswith("/v1/messages")]


def ask(client: Any) -> str:
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    return message.content[0].text


def test_client_renews_the_key_once_after_a_rotation(fake: Any, tmp_path: Path) -> None:
    old = fake.mint_key("prod")
    env_file = tmp_path / ".env"
    env_file.write_text(f"ANTHROPIC_API_KEY={old.secret.reveal()}\n")
    client = keyvault.anthropic_client(f"dotenv://{env_file}", base_url=fake.base_url, max_retries=0)
    assert isinstance(client, anthropic.Anthropic)
    ask(client)
    new = rotate(env_file, fake, old)
    ask(client)  # the cached key is now inactive: one 401, re-read, retried with the new key
    assert statuses(fake) == [(200, old.id), (401, old.id), (200, new.id)]
    ask(client.with_options(timeout=30))  # a derived client keeps the binding
    assert statuses(fake)[-1] == (200, new.id)
    assert client.api_key == new.secret.reveal()


def test_a_401_without_a_rotation_is_raised_without_a_retry(fake: Any, tmp_path: Path) -> None:
    key = fake.mint_key("prod")
    env_file = tmp_path / ".env"
    env_file.write_text(f"ANTHROPIC_API_KEY={key.secret.reveal()}\n")
    client = keyvault.anthropic_client(f"dotenv://{env_file}", base_url=fake.base_url, max_retries=0)
    fake.set_status(key.id, "inactive")
    with pytest.raises(anthropic.AuthenticationError):
        ask(client)
    assert statuses(fake) == [(401, key.id)]


def test_key_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="do not pass api_key"):
        keyvault.anthropic_client(api_key="x")


def test_async_client_renews_the_key_once_after_a_rotation(fake: Any, tmp_path: Path) -> None:
    old = fake.mint_key("prod")
    env_file = tmp_path / ".env"
    env_file.write_text(f"ANTHROPIC_API_KEY={old.secret.reveal()}\n")

    async def main() -> None:
        client = keyvault.async_anthropic_client(f"dotenv://{env_file}", base_url=fake.base_url, max_retries=0)
        assert isinstance(client, anthropic.AsyncAnthropic)
        try:
            await client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                                         messages=[{"role": "user", "content": "hi"}])
            new = rotate(env_file, fake, old)
            await client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                                         messages=[{"role": "user", "content": "hi"}])
            assert statuses(fake) == [(200, old.id), (401, old.id), (200, new.id)]
        finally:
            await client.close()

    asyncio.run(main())
