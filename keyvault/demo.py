"""`keyvault demo`: the whole life of a key, offline, on the embedded defaults.

Starts the fake Anthropic API on loopback (it plays the Console too), mints a key, stores it
in a `.env` file and in the encrypted local store, resolves it as an app would, refuses a
commit that holds a key, rotates through every step, shows the old key now gets 401 while the
app keeps working, and removes everything it made. Only hints and fingerprints are printed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from keyvault.keys import Secret

Say = Callable[[str], None]

_DEMO_VARIABLES = ("ANTHROPIC_BASE_URL", "ANTHROPIC_ADMIN_KEY", "ANTHROPIC_API_KEY", "KEYVAULT_PASSPHRASE",
                   "KEYVAULT_SOURCE", "KEYVAULT_POLICY")


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The demo's variables for its duration, the caller's restored afterwards."""
    saved = {name: os.environ.get(name) for name in _DEMO_VARIABLES}
    for name in _DEMO_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Clock:
    def __init__(self, say: Say) -> None:
        self.say = say
        self.start = time.perf_counter()
        self.number = 0

    def section(self, title: str) -> None:
        self.number += 1
        self.say(f"\n{self.number}. {title}  [{time.perf_counter() - self.start:.2f}s]")


def _write_env_file(path: Path, secret: Secret) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# chat service settings\nLOG_LEVEL=info\n")
        handle.write(f'ANTHROPIC_API_KEY="{secret.reveal()}"\n')


def _scan_a_commit(work: Path, leaked: Secret, say: Say) -> bool:
    """A developer stages a file holding a key: the pre-commit gate refuses it."""
    from keyvault.scan.api import scan_staged

    repo = work / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "client.py").write_text(
        "import anthropic\n\n"
        f'client = anthropic.Anthropic(api_key="{leaked.reveal()}")\n'
    )
    subprocess.run([*git, "add", "client.py"], check=True)
    report = scan_staged(repo)
    for finding in report.findings:
        say(f"   refused: client.py:{finding.line}:{finding.column} {finding.rule} {finding.hint}")
    say(f"   scanned {report.scanned.files} staged file(s), {report.scanned.bytes} bytes: "
        f"{'commit refused' if report.findings else 'clean'}")
    return bool(report.findings)


def run_demo(say: Say = print) -> int:
    from keyvault.anthropic_api import verify_key
    from keyvault.backends import open_backend
    from keyvault.policy import parse_policy
    from keyvault.resolve import clear_cache, get_api_key
    from keyvault.rotate.engine import Options, rotate
    from keyvault.testing.fake_anthropic import FakeAnthropic

    clock = _Clock(say)
    work = Path(tempfile.mkdtemp(prefix="keyvault-demo-"))
    try:
        with FakeAnthropic() as fake, _environment({
            "ANTHROPIC_BASE_URL": fake.base_url,
            "ANTHROPIC_ADMIN_KEY": fake.admin_key.reveal(),
            "KEYVAULT_PASSPHRASE": secrets.token_urlsafe(24),
        }):
            clear_cache()
            clock.section(f"The Anthropic API (a faithful fake) listens on {fake.base_url}")
            old = fake.mint_key("dev-chat-2026-08")
            say(f"   the Console minted {old.name} ({old.id}): {old.hint}")

            clock.section("Store it where the app and the rotator find it")
            env_file = work / "app" / ".env"
            env_file.parent.mkdir()
            _write_env_file(env_file, old.secret)
            dotenv_uri = f"dotenv://{env_file}#ANTHROPIC_API_KEY"
            store_uri = f"file://{work / 'store'}#dev"
            store = open_backend(store_uri)
            store.stage(old.secret)
            store.promote("")
            for uri in (store_uri, dotenv_uri):
                version = open_backend(uri).read()
                say(f"   {uri.replace(str(work), '$DEMO')}: {version.secret.hint} (version {version.version})")

            clock.section("The app resolves its key at start-up")
            key = get_api_key(dotenv_uri)
            status = verify_key(key)
            say(f"   keyvault.get_api_key() -> {key.hint}: {status.state}")
            client = _app_client(dotenv_uri, say)

            clock.section("A developer tries to commit a key")
            _scan_a_commit(work, fake.mint_key("dev-laptop").secret, say)

            clock.section("Rotate: the Console mints the new key, the operator stages it")
            new = fake.mint_key("dev-chat-2026-11")
            say(f"   the Console minted {new.name} ({new.id}): {new.hint}")
            store.stage(new.secret)
            say(f"   keyvault stage -> pending slot of {store_uri.replace(str(work), '$DEMO')}")
            policy = parse_policy(
                '[rotation]\napp = "chat"\ngrace = "0s"\narchive_delay = "0s"\n'
                'admin_key = "env://ANTHROPIC_ADMIN_KEY"\n'
                "[environments.dev]\n"
                f'targets = ["{store_uri}", "{dotenv_uri}"]\n'
            )
            result = rotate(policy, Options(env="dev", report=lambda e: say("   " + e.text().replace(str(work), "$DEMO"))))
            say(f"   => {result.summary}")
            if result.phase != "done":
                return 1

            clock.section("After the rotation")
            say(f"   old key {old.hint}: {verify_key(old.secret).state} (status {fake.key(old.id).status})")
            say(f"   new key {new.hint}: {verify_key(new.secret).state}")
            if client is not None:
                reply = client.models.list()
                say(f"   the running app's client re-resolved after a 401 and still works "
                    f"({len(reply.data)} models), now with {get_api_key(dotenv_uri).hint}")
            clock.section("Clean up")
            clear_cache()
        say(f"   removed {work}; the fake API is stopped")
        say(f"\ndone in {time.perf_counter() - clock.start:.1f}s; no key value was printed.")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _app_client(source: str, say: Say) -> object | None:
    """The official SDK's client, if installed: it survives the rotation by re-resolving on 401."""
    try:
        from keyvault.resolve import anthropic_client

        client = anthropic_client(source, max_retries=0)
    except ImportError:
        say("   (the anthropic SDK is not installed: pip install 'keyvault-anthropic[sdk]')")
        return None
    models = client.models.list()
    say(f"   keyvault.anthropic_client() lists {len(models.data)} models")
    return client
