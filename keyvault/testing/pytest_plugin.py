"""pytest fixtures shipped with keyvault (loaded through the `pytest11` entry point).

Module import stays cheap: servers and SDKs are imported inside the fixtures.

- `openbao` (session): a real OpenBao dev server (Vault API). `.url`, `.root_token`,
  `.client(token=None, namespace=None)` (hvac), `.token(policies)`, `.env(token=None)`.
- `moto_server` (session): `moto.server` in a separate process. `.url`, `.client()`, `.env()`
  (`AWS_ENDPOINT_URL` and test credentials, for a CLI subprocess), `.reset()`, `.set_auth()`.
- `aws_moto` (function): moto in process (`mock_aws`) with test credentials in the environment
  and no user AWS config; `.client()`, `.region`.
- `fake_anthropic` (function): a started `FakeAnthropic` on 127.0.0.1 (`.base_url`,
  `.mint_key(name)`, `.admin_key`, `.set_status(id, status)`, `.inject(...)`).
- `fake_gcp` (function): a clean `FakeSecretManager` (state and injected faults reset), on a
  server shared by the session; `.client(transport)`, `.source(secret_name, transport)`.

Session servers are shared so a suite pays their start-up once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.testing.fake_anthropic import FakeAnthropic
    from keyvault.testing.fake_gcp import FakeSecretManager
    from keyvault.testing.servers import MotoServer, OpenBaoServer


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    from keyvault.testing.servers import start_openbao

    server = start_openbao()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from keyvault.testing.servers import start_moto_server

    server = start_moto_server()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class MotoAws:
    """moto in process: every boto3 client made while the fixture is active talks to it."""

    region: str = "us-east-1"

    def client(self, service: str = "secretsmanager", **kwargs: Any) -> Any:
        import boto3

        kwargs.setdefault("region_name", self.region)
        return boto3.client(service, **kwargs)


_AWS_VARIABLES = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def aws_moto(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoAws]:
    from moto import mock_aws

    empty = tmp_path_factory.mktemp("aws-config")
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    with mock_aws():
        yield MotoAws()


@pytest.fixture(scope="session")
def _keyvault_fake_gcp_server() -> Iterator[FakeSecretManager]:
    from keyvault.testing.fake_gcp import FakeSecretManager

    with FakeSecretManager() as fake:
        yield fake


@pytest.fixture
def fake_gcp(_keyvault_fake_gcp_server: FakeSecretManager) -> Iterator[FakeSecretManager]:
    _keyvault_fake_gcp_server.reset()
    yield _keyvault_fake_gcp_server
    _keyvault_fake_gcp_server.reset()


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started FakeAnthropic on 127.0.0.1 (see keyvault.testing.fake_anthropic), stopped after
    the test. Point clients at `fake_anthropic.base_url`; mint keys with `.mint_key(name)`."""
    from keyvault.testing.fake_anthropic import FakeAnthropic

    with FakeAnthropic() as fake:
        yield fake
