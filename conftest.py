"""Root conftest: the project's own test fixtures. Product fixtures (fake Anthropic API, OpenBao,
moto, fake GCP Secret Manager) come from keyvault.testing.pytest_plugin via the pytest11 entry point."""

pytest_plugins = ["tests.fixtures.local", "tests.fixtures.cloud"]
