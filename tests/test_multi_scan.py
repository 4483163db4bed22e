"""`keyvault scan-repos`: several real git repositories scanned in one process run, reported
per repository; the pre-receive hook and the composite action's scan script run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keyvault.testing.keygen import make_key

ROOT = Path(__file__).resolve().parents[1]


def _scanner_available() -> bool:
    from keyvault.errors import UnsupportedOperation
    from keyvault.integrations.multi_scan import scanner_api

    try:
        scanner_api()
    except UnsupportedOperation:
        return False
    return True


def _scan_cli_available() -> bool:
    """`keyvault scan` answers --help (the command is built and wired into the CLI)."""
    probe = subprocess.run([sys.executable, "-m", "keyvault", "scan", "--help"], capture_output=True, text=True, timeout=60)
    return probe.returncode == 0 and "--pre-receive" in probe.stdout and "--range" in probe.stdout


needs_scanner = pytest.mark.skipif(not _scanner_available(), reason="the scanner's history API is not built yet")
needs_scan_cli = pytest.mark.skipif(not _scan_cli_available(), reason="keyvault scan is not built yet")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV, **(env or {})}, check=True,
                          capture_output=True, text=True)


def make_repo(path: Path, files: list[dict[str, str]]) -> Path:
    """A repository with one commit per dict of {path: content}."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for n, commit in enumerate(files):
        for name, content in commit.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(content)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {n}")
    return path


@needs_scanner
def test_several_repositories_in_one_run_report_each(tmp_path: Path) -> None:
    key = make_key()
    leaked = make_repo(tmp_path / "leaked", [
        {"app.py": "print('hello')\n"},
        {"config.env": f"ANTHROPIC_API_KEY={key.reveal()}\n"},
        {"config.env": "ANTHROPIC_API_KEY=\n"},  # removed, still in history
    ])
    clean = make_repo(tmp_path / "clean", [{"README.md": "nothing here\n"}, {"a.txt": "sk-ant-api03-your-key-here\n"}])
    bare = tmp_path / "leaked-bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(leaked), str(bare))
    not_a_repo = tmp_path / "plain"
    not_a_repo.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "keyvault", "scan-repos", "--format", "json", "--jobs", "2",
         str(leaked), str(clean), str(bare), str(not_a_repo)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    by_name = {r["repository"]: r for r in report["repositories"]}
    assert [r["repository"] for r in report["repositories"]] == [str(leaked), str(clean), str(bare), str(not_a_repo)]
    assert len(by_name[str(leaked)]["findings"]) >= 1 and by_name[str(leaked)]["error"] is None
    assert len(by_name[str(bare)]["findings"]) >= 1
    assert by_name[str(clean)]["findings"] == [] and by_name[str(clean)]["error"] is None
    assert by_name[str(not_a_repo)]["error"]
    assert report["with_findings"] == 2 and report["errors"] == 1
    assert key.reveal() not in run.stdout + run.stderr
    assert key.hint in run.stdout


@needs_scanner
def test_clean_repositories_exit_zero(tmp_path: Path) -> None:
    a = make_repo(tmp_path / "a", [{"x": "1\n"}])
    b = make_repo(tmp_path / "b", [{"y": "2\n"}])
    run = subprocess.run([sys.executable, "-m", "keyvault", "scan-repos", str(a), str(b)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 scanned, 0 with findings, 0 error(s)" in run.stdout


# --- the pre-receive hook, with a real `git push` --------------------------------------------


@needs_scan_cli
def test_pre_receive_hook_refuses_a_push_with_a_key(tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(server))
    hook = server / "hooks" / "pre-receive"
    shutil.copy(ROOT / "deploy" / "pre-receive" / "pre-receive", hook)
    hook.chmod(0o755)
    env = {**os.environ, "KEYVAULT_PYTHON": sys.executable}
    work = make_repo(tmp_path / "work", [{"app.py": "print('hi')\n"}])
    git(work, "remote", "add", "origin", str(server))
    git(work, "push", "-q", "origin", "main", env=env)  # clean push accepted
    key = make_key()
    (work / "settings.py").write_text(f'KEY = "{key.reveal()}"\n')
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "oops")
    push = subprocess.run(["git", "push", "origin", "main"], cwd=work, env={**env, **GIT_ENV},
                          capture_output=True, text=True, timeout=120)
    assert push.returncode != 0
    assert "push refused" in push.stderr and key.hint in push.stderr
    assert key.reveal() not in push.stderr
    # the server still has only the clean commit
    assert git(server, "log", "--oneline", "main").stdout.count("\n") == 1


def test_pre_receive_hook_fails_closed_or_open_when_the_scanner_breaks(tmp_path: Path) -> None:
    hook = ROOT / "deploy" / "pre-receive" / "pre-receive"
    line = "0" * 40 + " " + "1" * 40 + " refs/heads/main\n"
    broken = {**os.environ, "KEYVAULT_PYTHON": "/nonexistent/python"}
    closed = subprocess.run(["bash", str(hook)], input=line, env=broken, capture_output=True, text=True, cwd=tmp_path)
    assert closed.returncode == 1 and "push refused: the secret scan failed" in closed.stderr
    opened = subprocess.run(["bash", str(hook)], input=line, env={**broken, "KEYVAULT_FAIL_OPEN": "1"},
                            capture_output=True, text=True, cwd=tmp_path)
    assert opened.returncode == 0 and "push accepted because KEYVAULT_FAIL_OPEN=1" in opened.stderr


# --- the composite action's scan step, run by bash on a real repository ------------------------


def _action_step(step_id: str) -> dict[str, object]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    return next(s for s in action["runs"]["steps"] if s.get("id") == step_id)


def test_action_is_a_composite_that_uploads_sarif() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps = action["runs"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["with"]["sarif_file"] == "${{ steps.scan.outputs.sarif-file }}"
    assert "steps.scan.outcome == 'success'" in upload["if"]
    # inputs reach scripts through env, never spliced into the script text
    for step in steps:
        assert "${{" not in step.get("run", ""), step.get("name")
    assert set(action["outputs"]) == {"findings", "sarif-file"}


@needs_scan_cli
def test_action_scan_script_scans_the_pull_request_range(tmp_path: Path) -> None:
    key = make_key()
    repo = make_repo(tmp_path / "repo", [{"app.py": "print(1)\n"}])
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    (repo / "leak.py").write_text(f'key = "{key.reveal()}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "leak")
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    step = _action_step("scan")
    output = tmp_path / "github_output"
    env = {
        **os.environ, **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` = this venv
        "INPUT_BASE": "", "INPUT_HEAD": "", "EVENT_BASE": base, "EVENT_HEAD": head,
        "SARIF_FILE": "out.sarif", "GITHUB_OUTPUT": str(output),
    }
    run = subprocess.run(["bash", "-c", str(step["run"])], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs["findings"] == "1" and outputs["sarif-file"] == "out.sarif"
    sarif = json.loads((repo / "out.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert key.reveal() not in (repo / "out.sarif").read_text() + run.stderr
    # the same script on a clean range finds nothing
    env["EVENT_HEAD"] = base
    env["EVENT_BASE"] = git(repo, "rev-list", "--max-parents=0", "HEAD").stdout.strip()
    run = subprocess.run(["bash", "-c", str(step["run"])], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0
    assert "findings=0" in output.read_text().splitlines()[-1]
