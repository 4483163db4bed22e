"""A directory the user names is scanned even when an enclosing repository ignores it: scanning
nothing and reporting clean would be a silent pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keyvault.testing.keygen import make_key


def test_named_directory_ignored_by_the_enclosing_repo_is_scanned(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("export/\n")
    export = tmp_path / "export"
    export.mkdir()
    (export / "settings.py").write_text(f'KEY = "{make_key().reveal()}"\n')
    proc = subprocess.run([sys.executable, "-m", "keyvault", "scan", "--format", "json", "export"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"anthropic-api-key"' in proc.stdout
    clean = subprocess.run([sys.executable, "-m", "keyvault", "scan", "."], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, "the work tree scan still honours .gitignore"
