"""`keyvault demo`, the README's first command: runs offline, exits 0, prints no key value."""

from __future__ import annotations

import os
import subprocess
import sys

from keyvault.redact import credential_in


def test_demo_runs_the_whole_life_offline_and_prints_no_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "KEYVAULT_"))}
    env["TMPDIR"] = str(tmp_path)  # where the demo makes (and must remove) its working directory
    proc = subprocess.run([sys.executable, "-m", "keyvault", "demo"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for step in ("commit refused", "[revoke]", "old key now refused (401)", "still works", "no key value was printed"):
        assert step in output
    assert credential_in(output) is None, "a key value was printed"
    assert "removed " + str(tmp_path) in output
    assert not any(p.name.startswith("keyvault-demo-") for p in tmp_path.iterdir())
