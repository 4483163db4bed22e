"""Allowlisting: inline `keyvault: allow`, the baseline (create/update/audit, no churn), path
globs in pyproject.toml / keyvault.toml; in every input mode that can hit them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyvault.scan.config import glob_regex
from tests.scan.helpers import Repo, key, run_scan


def test_inline_allow_in_tree_staged_and_history(repo: Repo) -> None:
    k = key()
    repo.write("test_fixture.py", f"REVOKED = '{k}'  # keyvault: allow (revoked 2026-01)\n")
    repo.git("add", ".")
    assert repo.scan().code == 0
    assert repo.scan("--staged").code == 0
    repo.commit("fixture")
    r = repo.scan("--history")
    assert r.code == 0 and "1 allowed inline" in r.out


def test_baseline_create_suppresses_and_new_keys_still_block(repo: Repo) -> None:
    accepted = key()
    repo.write("tests/data/revoked.env", f"K={accepted}\n")
    r = run_scan(["create"], repo.path, command="baseline")
    assert r.code == 0, r
    doc = json.loads((repo.path / ".keyvault-baseline.json").read_text())
    (entry,) = doc["credentials"]
    assert entry["paths"] == ["tests/data/revoked.env"] and len(entry["fingerprint"]) == 64
    assert accepted not in (repo.path / ".keyvault-baseline.json").read_text()
    r = repo.scan()
    assert r.code == 0 and "1 in the baseline" in r.out
    repo.write("src/new.py", f"K = '{key()}'\n")
    assert repo.scan().code == 1
    # the same accepted key in another file is a new occurrence: reported
    repo.write("src/copy.env", f"K={accepted}\n")
    r = repo.scan("-f", "json")
    assert sorted(f["path"] for f in r.findings()) == ["src/copy.env", "src/new.py"]
    assert len(repo.scan("-f", "json", "--no-baseline").findings()) == 3


def test_baseline_applies_to_staged_and_history_from_a_subdirectory(repo: Repo) -> None:
    accepted = key()
    repo.write("fixtures/k.env", f"K={accepted}\n")
    repo.commit("fixture")
    assert run_scan(["create", "--history"], repo.path, command="baseline").code == 0
    repo.write("fixtures/k.env", f"\n\nK={accepted}\n")
    repo.git("add", ".")
    assert repo.scan("--staged").code == 0
    assert repo.scan("--history").code == 0
    sub = repo.path / "fixtures"
    assert run_scan([], sub).code == 0


def test_baseline_has_no_churn_under_unrelated_edits(repo: Repo) -> None:
    accepted, other = key(), key()
    repo.write("a.env", f"K={accepted}\n")
    repo.write("b.env", f"K={other}\n")
    assert run_scan(["create"], repo.path, command="baseline").code == 0
    before = (repo.path / ".keyvault-baseline.json").read_bytes()
    repo.write("a.env", "# moved down\n" * 20 + f"K={accepted}\n")
    repo.write("unrelated.py", "x = 1\n")
    r = run_scan(["update"], repo.path, command="baseline")
    assert r.code == 0 and "up to date" in r.out
    assert (repo.path / ".keyvault-baseline.json").read_bytes() == before
    r = run_scan(["create"], repo.path, command="baseline")
    assert r.code != 0 and "already exists" in r.err
    assert run_scan(["create", "--force"], repo.path, command="baseline").code == 0
    assert (repo.path / ".keyvault-baseline.json").read_bytes() == before


def test_baseline_update_and_prune(repo: Repo) -> None:
    first, second = key(), key()
    repo.write("a.env", f"K={first}\n")
    run_scan(["create"], repo.path, command="baseline")
    repo.write("b.env", f"K={second}\n")
    run_scan(["update"], repo.path, command="baseline")
    doc = json.loads((repo.path / ".keyvault-baseline.json").read_text())
    assert len(doc["credentials"]) == 2
    (repo.path / "a.env").unlink()
    r = run_scan(["audit"], repo.path, command="baseline")
    assert r.code == 1 and "no longer found in a.env" in r.out
    run_scan(["update", "--prune"], repo.path, command="baseline")
    doc = json.loads((repo.path / ".keyvault-baseline.json").read_text())
    assert [c["paths"] for c in doc["credentials"]] == [["b.env"]]
    r = run_scan(["audit", "-f", "json"], repo.path, command="baseline")
    assert r.code == 0 and json.loads(r.out)["credentials"][0]["stale_paths"] == []


@pytest.mark.parametrize("content, message", [
    ("not json", "invalid JSON"),
    ('{"version": 2, "credentials": []}', "not a keyvault baseline"),
    ('{"version": 1, "credentials": [{"fingerprint": "abc"}]}', "credentials[0]: 'fingerprint' must be 64"),
])
def test_malformed_baseline_is_a_clear_error(repo: Repo, content: str, message: str) -> None:
    repo.write(".keyvault-baseline.json", content)
    repo.write("a.env", f"K={key()}\n")
    r = repo.scan()
    assert r.code == 2 and message in r.err and ".keyvault-baseline.json" in r.err


def test_explicit_baseline_must_exist(repo: Repo) -> None:
    r = repo.scan("--baseline", "nope.json")
    assert r.code == 2 and "nope.json: baseline file not found" in r.err


def test_pyproject_excludes_and_baseline_path(repo: Repo) -> None:
    repo.write("pyproject.toml", '[project]\nname = "x"\n\n[tool.keyvault.scan]\n'
                                 'exclude = ["tests/fixtures/**", "*.min.js"]\nbaseline = "security/baseline.json"\n')
    repo.write("tests/fixtures/deep/k.env", key())
    repo.write("web/app.min.js", key())
    repo.write("src/real.py", key())
    r = repo.scan("-f", "json")
    assert [f["path"] for f in r.findings()] == ["src/real.py"]
    assert run_scan(["create"], repo.path, command="baseline").code == 0
    assert (repo.path / "security" / "baseline.json").exists()
    assert repo.scan().code == 0
    repo.git("add", ".")
    assert repo.scan("--staged").code == 0  # excluded paths and baseline hold for staged scans
    repo.commit("all")
    assert repo.scan("--history").code == 0


def test_keyvault_toml_and_cli_exclude(repo: Repo) -> None:
    repo.write("keyvault.toml", '[scan]\nexclude = ["vendor/"]\n')
    repo.write("vendor/x.txt", key())
    repo.write("docs/y.txt", key())
    assert [f["path"] for f in repo.scan("-f", "json").findings()] == ["docs/y.txt"]
    assert repo.scan("--exclude", "docs/*").code == 0


@pytest.mark.parametrize("content, message", [
    ("[tool.keyvault.scan]\nexclude = 'x'\n", "'exclude' must be a list of path globs"),
    ("[tool.keyvault.scan]\nexlude = ['x']\n", "unknown setting 'exlude'"),
    ("[tool.keyvault.scan\n", "invalid TOML"),
    ("[tool.keyvault.scan]\nverify = 'yes'\n", "'verify' must be true or false"),
])
def test_malformed_config_is_a_clear_error(repo: Repo, content: str, message: str) -> None:
    repo.write("pyproject.toml", content)
    r = repo.scan()
    assert r.code == 2 and message in r.err and "pyproject.toml" in r.err, r


def test_pyproject_without_keyvault_table_is_not_parsed(repo: Repo) -> None:
    repo.write("pyproject.toml", "this is [not toml\n")  # would be an error if parsed
    repo.write("a.py", "x = 1\n")
    assert repo.scan().code == 0


@pytest.mark.parametrize("glob, path, hit", [
    ("*.env", "a/b/c.env", True),
    ("*.env", "c.env", True),
    ("/c.env", "a/c.env", False),
    ("tests/**", "tests/a/b.py", True),
    ("tests/**", "src/tests/a.py", False),
    ("**/fixtures/*", "a/b/fixtures/x", True),
    ("**/fixtures/*", "fixtures/x", True),
    ("vendor/", "vendor/x/y", True),
    ("docs/*.md", "docs/a/b.md", False),
    ("data[0-9].csv", "data7.csv", True),
])
def test_glob_semantics(glob: str, path: str, hit: bool) -> None:
    assert bool(glob_regex(glob).match(path)) is hit


def test_config_on_python_without_tomllib_is_a_clear_error(repo: Repo, tmp_path: Path) -> None:
    """Python 3.10 without tomli: a config file that configures keyvault is an error, not ignored."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "tomllib.py").write_text("raise ImportError('simulated 3.10')\n")
    (shim / "tomli.py").write_text("raise ImportError('simulated: not installed')\n")
    repo.write("keyvault.toml", "[scan]\nexclude = []\n")
    r = repo.scan(env={"PYTHONPATH": str(shim)})
    assert r.code == 2 and "tomli" in r.err
