"""Canary: every rotation command run with known keys (the old one served, the new one staged,
a replacement for the incident), then stdout, stderr, every child's argv, the journal, the
encrypted store and every other file in the sandbox are searched for any of them.

The harness is tests/canary.py (tested there against a deliberate leaker). The .env files and
the key file handed to --new-key-command hold keys by design and are the only files exempt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyvault.backends import open_backend
from tests.canary import assert_clean, leak_forms, run_cli
from tests.rotate_support import PASSPHRASE


def test_rotation_commands_never_show_a_key(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYVAULT_PASSPHRASE", PASSPHRASE)
    old = fake_anthropic.mint_key("old")
    new = fake_anthropic.mint_key("new")
    spare = fake_anthropic.mint_key("spare")
    forms = [f for k in (old, new, spare) for f in leak_forms(k.secret)]
    root = tmp_path
    dotenv = root / "app" / ".env"
    dotenv.parent.mkdir()
    dotenv.write_text(f"ANTHROPIC_API_KEY={old.secret.reveal()}\n")
    store = open_backend(f"file://{root / 'store'}#prod")
    store.stage(old.secret)
    store.promote("")
    keyfile = root / "spare.key"
    keyfile.write_text(spare.secret.reveal())
    policy = root / "rotation.toml"
    policy.write_text(
        '[rotation]\ngrace = "0"\narchive_delay = "0"\n[environments.prod]\n'
        f'[[environments.prod.targets]]\nsource = "dotenv://{dotenv}#ANTHROPIC_API_KEY"\n'
        f'[[environments.prod.targets]]\nsource = "file://{root / "store"}#prod"\n'
        # a check that uses the key the way an app does: from its environment
        'check = "test -n \\"$ANTHROPIC_API_KEY\\" && env | grep -c ANTHROPIC_API_KEY >/dev/null"\n'
    )
    env = {"ANTHROPIC_BASE_URL": fake_anthropic.base_url, "ANTHROPIC_ADMIN_KEY": fake_anthropic.admin_key.reveal(),
           "KEYVAULT_PASSPHRASE": PASSPHRASE}
    allow = [dotenv, keyfile]
    p = ["--policy", str(policy)]

    def run(args: list[str], stdin: str | None = None, code: int = 0) -> None:
        result = run_cli(root, args, via="none", stdin=stdin, env=env, allow=allow)
        assert_clean(result, forms)
        assert result.code == code, (args[0], result.code, result.stderr[-400:])

    run(["stage", *p], stdin=new.secret.reveal() + "\n")
    run(["rotate", *p, "--dry-run"])
    run(["rotate", *p, "--non-interactive", "--format", "json"])
    run(["status", *p, "--format", "json"])
    run(["status", *p])
    run(["stage", *p], stdin=new.secret.reveal(), code=2)  # error path: already served
    run(["revoke", *p], stdin=old.secret.reveal() + "\n")
    run(["revoke", *p, "--format", "json", "--id", old.id, "--archive"])
    run(["incident", *p, "--new-key-command", f"cat {keyfile}", "--format", "json"], stdin=new.secret.reveal())
    run(["rotate", *p, "--non-interactive"], stdin=spare.secret.reveal()[:60], code=2)  # truncated paste: a precise error
    # the journal is there and was searched
    state = json.loads((dotenv.parent / ".env.keyvault-state.json").read_text())
    assert state["state"]["phase"] == "done" and state["state"]["new_hint"] == spare.secret.hint
    assert fake_anthropic.key(new.id).status == "inactive" or fake_anthropic.key(new.id).status == "archived"
