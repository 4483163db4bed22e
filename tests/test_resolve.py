"""get_api_key(): where the key comes from, validation, the cache, single-flight, stale serving,
refresh, load_env, and the cost of the start-up path."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import keyvault
from keyvault import resolve
from keyvault.errors import BackendError, KeyFormatError, NotFoundError, SourceError
from keyvault.keys import ADMIN
from keyvault.testing.keygen import make_key


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts in an empty project directory with no key in the environment."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".git").mkdir()  # the project root: config lookup stops here
    monkeypatch.chdir(project)
    for var in ("ANTHROPIC_API_KEY", "KEYVAULT_SOURCE"):
        monkeypatch.delenv(var, raising=False)
    resolve.clear_cache()
    yield project
    resolve.clear_cache()


def assert_no_value(text: str, *keys: Any) -> None:
    for key in keys:
        assert key.reveal() not in text


# where the key comes from ------------------------------------------------------------------


def test_default_reads_the_environment_first(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key, file_key = make_key(), make_key()
    monkeypatch.setenv("ANTHROPIC_API_KEY", env_key.reveal())
    (clean / ".env").write_text(f"ANTHROPIC_API_KEY={file_key.reveal()}\n")
    assert keyvault.get_api_key() == env_key
    assert resolve.lookup().source == "env://ANTHROPIC_API_KEY"


def test_default_falls_back_to_dotenv_only_when_the_variable_is_absent(clean: Path) -> None:
    file_key = make_key()
    (clean / ".env").write_text(f"# local dev\nexport ANTHROPIC_API_KEY='{file_key.reveal()}'\n")
    assert keyvault.get_api_key() == file_key
    resolved = resolve.lookup()
    assert resolved.source == "dotenv://.env" and resolved.origin == "default"


def test_an_invalid_environment_key_fails_loud_instead_of_falling_back(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, file_key = make_key(ADMIN), make_key()
    monkeypatch.setenv("ANTHROPIC_API_KEY", admin.reveal())
    (clean / ".env").write_text(f"ANTHROPIC_API_KEY={file_key.reveal()}\n")
    with pytest.raises(KeyFormatError) as info:
        keyvault.get_api_key()
    message = str(info.value)
    assert "env://ANTHROPIC_API_KEY" in message and "Admin API key" in message
    assert_no_value(message, admin, file_key)


def test_nothing_found_names_every_place_tried_and_the_fix(clean: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        keyvault.get_api_key()
    message = str(info.value)
    assert "env://ANTHROPIC_API_KEY" in message and "dotenv://.env" in message
    assert "export ANTHROPIC_API_KEY" in message and "KEYVAULT_SOURCE" in message


def test_placeholder_in_dotenv_is_rejected_with_the_source(clean: Path) -> None:
    (clean / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-api03-your-key-here\n")
    with pytest.raises(KeyFormatError) as info:
        keyvault.get_api_key()
    assert "dotenv://.env" in str(info.value) and "placeholder" in str(info.value)


def test_paste_damage_is_trimmed_with_a_warning(
    clean: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key()
    monkeypatch.setenv("ANTHROPIC_API_KEY", key.reveal() + "\n")
    with caplog.at_level(logging.WARNING, logger="keyvault"):
        assert keyvault.get_api_key() == key
    assert "newline" in caplog.text and "env://ANTHROPIC_API_KEY" in caplog.text
    assert_no_value(caplog.text, key)


def test_precedence_argument_then_env_then_config(
    clean: Path, monkeypatch: pytest.MonkeyPatch, mem_backend: Any
) -> None:
    a, b, c, d = make_key(), make_key(), make_key(), make_key()
    for name, key in (("arg", a), ("envsrc", b), ("config", c)):
        mem_backend.put(name, key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", d.reveal())
    (clean / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.keyvault]\nsource = "mem://config"\n')
    assert keyvault.get_api_key() == c
    resolve.clear_cache()
    monkeypatch.setenv("KEYVAULT_SOURCE", "mem://envsrc")
    assert keyvault.get_api_key() == b
    assert keyvault.get_api_key("mem://arg") == a
    assert resolve.lookup().origin == "KEYVAULT_SOURCE"


def test_pyproject_in_a_parent_directory_and_relative_paths(clean: Path) -> None:
    key = make_key()
    (clean / "pyproject.toml").write_text(
        '[tool.keyvault]\nsource = "dotenv://config/app.env#CLAUDE_KEY"\nttl = "5m"\nmax_stale = 7200\n'
    )
    (clean / "config").mkdir()
    (clean / "config" / "app.env").write_text(f"CLAUDE_KEY={key.reveal()}\n")
    sub = clean / "src" / "app"
    sub.mkdir(parents=True)
    os.chdir(sub)
    assert keyvault.get_api_key() == key
    resolved = resolve.lookup()
    assert resolved.source == f"dotenv://{clean}/config/app.env#CLAUDE_KEY"
    assert resolved.origin == str(clean / "pyproject.toml")
    config = resolve._config(None)
    assert (config.ttl, config.max_stale) == (300.0, 7200.0)


def test_nearest_pyproject_without_the_section_is_the_boundary(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key()
    (clean / "keyvault.toml").write_text('source = "env://NOT_USED"\n')
    inner = clean / "services" / "chat"
    inner.mkdir(parents=True)
    (inner / "pyproject.toml").write_text('[project]\nname = "chat"\n')
    os.chdir(inner)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key.reveal())
    assert keyvault.get_api_key() == key  # the default: the outer keyvault.toml is another project's


def test_configured_fallback_chain(clean: Path, mem_backend: Any) -> None:
    key = make_key()
    mem_backend.put("backup", key)
    (clean / "keyvault.toml").write_text('source = "mem://primary"\nfallback = ["mem://backup"]\n')
    assert keyvault.get_api_key() == key
    assert resolve.lookup().source == "mem://backup"


def test_configured_source_without_fallback_fails_loud(clean: Path, monkeypatch: pytest.MonkeyPatch, mem_backend: Any) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", make_key().reveal())  # a developer key must not be used
    (clean / "keyvault.toml").write_text('source = "mem://prod"\n')
    mem_backend.put("prod", make_key())
    mem_backend.FAIL["prod"] = "access denied for role app-reader; fix: grant secretsmanager:GetSecretValue"
    with pytest.raises(BackendError) as info:
        keyvault.get_api_key()
    assert "mem://prod" in str(info.value) and "access denied" in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('sorce = "env://X"\n', "unknown key 'sorce'"),
        ('source = "not a uri"\n', "not a source URI"),
        ('source = "env://X"\nttl = "soon"\n', "ttl = 'soon'"),
        ('fallback = ["env://X"]\n', "fallback is set but source is not"),
        ("source = \n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_problem(clean: Path, content: str, expected: str) -> None:
    (clean / "keyvault.toml").write_text(content)
    with pytest.raises(SourceError) as info:
        keyvault.get_api_key()
    assert "keyvault.toml" in str(info.value) and expected in str(info.value)


# the cache --------------------------------------------------------------------------------


def test_cached_until_ttl_then_read_again(mem_backend: Any) -> None:
    first, second = make_key(), make_key()
    mem_backend.put("app", first)
    assert keyvault.get_api_key("mem://app", ttl=0.2) == first
    mem_backend.put("app", second)
    assert keyvault.get_api_key("mem://app", ttl=0.2) == first
    assert mem_backend.READS["app"] == 1
    time.sleep(0.25)
    assert keyvault.get_api_key("mem://app", ttl=0.2) == second
    assert mem_backend.READS["app"] == 2


def test_eight_threads_at_first_use_make_one_backend_call(mem_backend: Any) -> None:
    key = make_key()
    mem_backend.put("app", key)
    mem_backend.DELAY["app"] = 0.2
    barrier = threading.Barrier(8)
    got: list[Any] = []

    def worker() -> None:
        barrier.wait()
        got.append(keyvault.get_api_key("mem://app"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got == [key] * 8
    assert mem_backend.READS["app"] == 1


def test_refresh_reads_now_and_concurrent_refreshes_share_one_read(mem_backend: Any) -> None:
    first, second = make_key(), make_key()
    mem_backend.put("app", first)
    assert keyvault.get_api_key("mem://app") == first
    mem_backend.put("app", second)
    mem_backend.DELAY["app"] = 0.2
    barrier = threading.Barrier(4)
    got: list[Any] = []

    def worker() -> None:
        barrier.wait()
        got.append(keyvault.refresh("mem://app"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got == [second] * 4
    assert mem_backend.READS["app"] == 2
    assert keyvault.get_api_key("mem://app") == second


def test_stale_key_served_until_max_stale_then_the_error(
    clean: Path, mem_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key()
    (clean / "keyvault.toml").write_text("max_stale = 0.6\n")
    mem_backend.put("app", key)
    assert keyvault.get_api_key("mem://app", ttl=0.1) == key
    mem_backend.FAIL["app"] = "connection refused"
    time.sleep(0.15)
    with caplog.at_level(logging.WARNING, logger="keyvault"):
        assert keyvault.get_api_key("mem://app", ttl=0.1) == key
        reads = mem_backend.READS["app"]
        assert keyvault.get_api_key("mem://app", ttl=0.1) == key
        assert mem_backend.READS["app"] == reads, "a failed backend is not asked again at once"
    assert "connection refused" in caplog.text and key.hint in caplog.text
    assert_no_value(caplog.text, key)
    time.sleep(0.6)
    with pytest.raises(BackendError) as info:
        keyvault.get_api_key("mem://app", ttl=0.1)
    assert "max_stale" in str(info.value) and "connection refused" in str(info.value)
    assert_no_value(str(info.value), key)


def test_refresh_raises_on_failure_and_keeps_the_cached_key(mem_backend: Any) -> None:
    key = make_key()
    mem_backend.put("app", key)
    keyvault.get_api_key("mem://app")
    mem_backend.FAIL["app"] = "throttled"
    with pytest.raises(BackendError, match="throttled"):
        keyvault.refresh("mem://app")
    assert keyvault.get_api_key("mem://app") == key


def test_cached_call_costs_under_5_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", make_key().reveal())
    keyvault.get_api_key()
    n = 50_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            keyvault.get_api_key()
        best = min(best, (time.perf_counter() - start) / n)
    assert best < 5e-6, f"{best * 1e6:.2f} us per cached call"


# load_env and the start-up cost --------------------------------------------------------------


def test_load_env_sets_the_variable_and_keeps_an_existing_one(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_key, env_key = make_key(), make_key()
    (clean / ".env").write_text(f"ANTHROPIC_API_KEY={file_key.reveal()}\n")
    assert keyvault.load_env() == file_key
    assert os.environ["ANTHROPIC_API_KEY"] == file_key.reveal()
    monkeypatch.setenv("ANTHROPIC_API_KEY", env_key.reveal())
    assert keyvault.load_env("dotenv://.env") == env_key
    assert keyvault.load_env("dotenv://.env", override=True) == file_key
    assert os.environ["ANTHROPIC_API_KEY"] == file_key.reveal()
    keyvault.load_env("dotenv://.env", var="CLAUDE_KEY")
    assert os.environ["CLAUDE_KEY"] == file_key.reveal()
    monkeypatch.delenv("CLAUDE_KEY")


def test_env_path_imports_nothing_heavy(clean: Path) -> None:
    code = (
        "import sys, keyvault; keyvault.get_api_key(); "
        "heavy = ('dotenv', 'tomllib', 'logging', 'cryptography', 'anthropic', 'httpx', 'boto3', 'hvac', "
        "'google', 'grpc', 'keyvault.backends', 'dataclasses', 'hashlib'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    env = {**os.environ, "ANTHROPIC_API_KEY": make_key().reveal()}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=clean, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
