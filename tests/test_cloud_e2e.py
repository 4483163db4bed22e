"""End to end across processes: moto_server runs in its own process, the client in another,
configured only through the standard AWS environment (AWS_ENDPOINT_URL and credentials)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from keyvault.testing.keygen import make_key

pytestmark = pytest.mark.server

RESOLVE = """
import sys
from keyvault.backends import open_backend
version = open_backend(sys.argv[1]).read()
print(version.secret.hint, version.secret.fingerprint, version.version)
"""


def run(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def aws_env(moto_server, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(moto_server.env())
    env["AWS_CONFIG_FILE"] = str(tmp_path / "config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "credentials")
    return env


def test_resolve_in_a_separate_process(moto_server, aws_env, monkeypatch):
    key, new = make_key(), make_key()
    name = "e2e/" + uuid.uuid4().hex[:8]
    sm = moto_server.client()
    sm.create_secret(Name=name, SecretString=f'{{"api_key": "{key.reveal()}", "org": "acme"}}')
    done = run(RESOLVE, f"aws-sm://{name}#api_key", env=aws_env)
    assert done.returncode == 0, done.stderr
    hint, fp, _ = done.stdout.split()
    assert (hint, fp) == (key.hint, key.fingerprint)
    assert key.reveal() not in done.stdout + done.stderr
    # the test process rotates; the other process sees the new key
    from keyvault.backends import open_backend

    for variable, value in aws_env.items():
        monkeypatch.setenv(variable, value)
    backend = open_backend(f"aws-sm://{name}#api_key")
    backend.stage(new)
    backend.promote(key.fingerprint)
    after = run(RESOLVE, f"aws-sm://{name}#api_key", env=aws_env)
    assert after.stdout.split()[1] == new.fingerprint


def test_missing_secret_error_in_a_separate_process(moto_server, aws_env):
    done = run(RESOLVE, "aws-sm://e2e/absent", env=aws_env)
    assert done.returncode == 1
    assert "NotFoundError" in done.stderr and "'e2e/absent' in us-east-1" in done.stderr


def keyvault(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyvault", *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_cli_get_and_exec_from_moto_server(moto_server, aws_env):
    """`keyvault get --source aws-sm://...` in a fresh process, configured by AWS_ENDPOINT_URL."""
    import json

    key = make_key()
    name = "cli/" + uuid.uuid4().hex[:8]
    moto_server.client().create_secret(Name=name, SecretString=json.dumps({"api_key": key.reveal()}))
    source = f"aws-sm://{name}#api_key"
    shown = keyvault("get", "--source", source, env=aws_env)
    assert shown.returncode == 0, shown.stderr
    assert key.hint in shown.stdout and source in shown.stdout
    assert key.reveal() not in shown.stdout + shown.stderr
    as_json = json.loads(keyvault("get", "--source", source, "--format", "json", env=aws_env).stdout)
    assert as_json["fingerprint"] == key.fingerprint and as_json["version"]
    assert as_json["created"] is not None  # Secrets Manager records it
    piped = keyvault("get", "--source", source, "--reveal", env=aws_env)
    assert piped.stdout == key.reveal()
    child = keyvault("exec", "--source", source, "--", sys.executable, "-c",
                     "import os, hashlib; print(hashlib.sha256(os.environ['ANTHROPIC_API_KEY'].encode()).hexdigest())",
                     env=aws_env)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == key.fingerprint


def test_cli_get_reports_a_missing_secret(moto_server, aws_env):
    done = keyvault("get", "--source", "aws-sm://cli/absent", env=aws_env)
    assert done.returncode == 2
    assert done.stderr.startswith("keyvault: error: ") and "not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_moto_server_iam_enforcement_switch(moto_server, monkeypatch):
    """`set_auth(True)` makes moto_server check credentials: the test keys are then unknown."""
    from keyvault.backends import open_backend
    from keyvault.errors import PermissionDeniedError
    from keyvault.testing import start_moto_server  # the public entry point for users' own tests

    assert callable(start_moto_server)
    name = "auth/" + uuid.uuid4().hex[:8]
    moto_server.client().create_secret(Name=name, SecretString=make_key().reveal())
    for variable, value in moto_server.env().items():
        monkeypatch.setenv(variable, value)
    moto_server.set_auth(True)
    try:
        with pytest.raises(PermissionDeniedError, match="rejected the credentials"):
            open_backend(f"aws-sm://{name}").read()
    finally:
        moto_server.set_auth(False)
    assert open_backend(f"aws-sm://{name}").read().secret.reveal().startswith("sk-ant-api03-")
