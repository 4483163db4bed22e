"""The rotation commands as a user runs them: `python -m keyvault stage | rotate | status |
revoke | incident`, over real dotenv/file targets and the fake Anthropic API."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from keyvault.testing.keygen import make_key
from tests.rotate_support import World, make_world, text


@pytest.fixture
def world(tmp_path: Path, fake_anthropic, monkeypatch: pytest.MonkeyPatch) -> World:
    w = make_world(tmp_path, fake_anthropic, monkeypatch)
    w.add_dotenv("web")
    w.add_file("prod")
    w.write_policy()
    return w


def stage(world: World, secret, *args: str):
    return world.cli("stage", "--policy", str(world.policy_path), *args, input=(secret.reveal() + "\n").encode())


def test_stage_then_rotate_json(world: World) -> None:
    new = world.fake.mint_key("new")
    proc = stage(world, new.secret)
    assert proc.returncode == 0, text(proc)
    assert f"staged {new.secret.hint}" in proc.stdout.decode()
    assert world.pending() == new.secret
    assert stage(world, new.secret).stdout.decode().endswith("is already staged\n")
    other = world.fake.mint_key("other")
    proc = stage(world, other.secret)
    assert proc.returncode == 2 and "already has a staged key" in proc.stderr.decode() and "--replace" in proc.stderr.decode()
    proc = world.rotate("--format", "json")
    assert proc.returncode == 0, text(proc)
    out = json.loads(proc.stdout)
    assert out["phase"] == "done" and out["new_hint"] == new.secret.hint and out["old_id"] == world.old.id
    assert {e["step"] for e in out["events"]} >= {"plan", "create", "verify-new", "update", "verify-deploy", "revoke", "archive", "done"}
    assert "[update]" in proc.stderr.decode()  # progress goes to stderr in json mode
    assert world.held() == [new.secret.fingerprint] * 2


def test_stage_refuses_terminal_argv_and_wrong_family(world: World) -> None:
    proc = world.cli("stage", "--policy", str(world.policy_path))  # stdin is /dev/null
    assert proc.returncode == 2 and "stdin is empty" in proc.stderr.decode()
    proc = world.cli("stage", "--policy", str(world.policy_path), input=world.fake.admin_key.reveal().encode())
    assert proc.returncode == 2 and "Admin API key" in proc.stderr.decode()
    proc = world.cli("stage", "--policy", str(world.policy_path), input=world.old.secret.reveal().encode())
    assert proc.returncode == 2 and "already serves" in proc.stderr.decode()
    proc = world.cli("stage", "--policy", str(world.policy_path), "--clear")
    assert proc.returncode == 0 and "no key was staged" in proc.stdout.decode()


def test_stage_refuses_while_a_rotation_uses_the_slot(world: World) -> None:
    new = world.fake.mint_key("new")
    stage(world, new.secret)
    crashed = world.rotate(env=world.environ(KEYVAULT_CRASH_AT="update:promote:2"))
    assert crashed.returncode == 137
    proc = stage(world, world.fake.mint_key("another").secret, "--replace")
    assert proc.returncode == 2 and "is using the pending slot (step update)" in proc.stderr.decode()
    proc = world.rotate("--resume")
    assert proc.returncode == 0, text(proc)
    assert "resuming rotation" in proc.stdout.decode()


def test_rotate_exit_codes(world: World, tmp_path: Path) -> None:
    # 0: not due, nothing to do
    proc = world.rotate()
    assert proc.returncode == 0 and "not due" in proc.stdout.decode()
    # --resume with nothing to resume: 2
    proc = world.rotate("--resume")
    assert proc.returncode == 2 and "no rotation to resume" in proc.stderr.decode()
    # 1: due (expires in 3 days) and no key given: the Console steps are printed
    world.fake.key(world.old.id).expires_at = datetime.now(timezone.utc) + timedelta(days=3)
    proc = world.rotate()
    assert proc.returncode == 1, text(proc)
    assert "platform.claude.com/settings/keys" in proc.stderr.decode() and "keyvault stage" in proc.stderr.decode()
    # 4: rolled back
    world.checks[1] = "exit 9"
    new = world.fake.mint_key("new")
    keyfile = tmp_path / "k"
    keyfile.write_text(new.secret.reveal())
    fd = os.open(keyfile, os.O_RDONLY)
    try:
        proc = world.rotate("--new-key-fd", str(fd), pass_fds=(fd,))
    finally:
        os.close(fd)
    assert proc.returncode == 4, text(proc)
    assert "rolled back" in proc.stderr.decode() and "check exited 9" in proc.stderr.decode()
    # usage error: two new-key sources
    proc = world.rotate("--new-key-fd", "0", "--new-key-command", "true")
    assert proc.returncode == 2 and "exclusive" in proc.stderr.decode()


def test_rotate_dry_run(world: World) -> None:
    new = world.fake.mint_key("new")
    stage(world, new.secret)
    proc = world.rotate("--dry-run")
    assert proc.returncode == 0 and "dry run: would rotate 2 target(s)" in proc.stdout.decode()
    assert world.journal() is None and world.held() == [world.old.secret.fingerprint] * 2


def test_status_text_json_and_due(world: World) -> None:
    proc = world.cli("status", "--policy", str(world.policy_path))
    assert proc.returncode == 0, text(proc)
    out = proc.stdout.decode()
    assert world.old.secret.hint in out and "targets agree: yes" in out and "API: active" in out
    proc = world.cli("status", "--policy", str(world.policy_path), "--format", "json", "--due")
    assert proc.returncode == 0
    env = json.loads(proc.stdout)["environments"][0]
    assert env["targets_agree"] is True and env["due"]["state"] == "ok"
    assert env["api"][world.old.secret.hint]["id"] == world.old.id
    assert env["targets"][1]["version"] == "1" and env["targets"][1]["fingerprint"] == world.old.secret.fingerprint[:12]
    # inside the warning window: --due exits 1
    world.fake.key(world.old.id).expires_at = datetime.now(timezone.utc) + timedelta(days=5)
    proc = world.cli("status", "--policy", str(world.policy_path), "--due", "--format", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["environments"][0]["due"]["reason"] == "expires_at"


def test_status_shows_a_rotation_in_progress_and_disagreement(world: World) -> None:
    new = world.fake.mint_key("new")
    stage(world, new.secret)
    assert world.rotate(env=world.environ(KEYVAULT_CRASH_AT="update:promote:2")).returncode == 137
    proc = world.cli("status", "--policy", str(world.policy_path), "--offline")
    out = proc.stdout.decode()
    assert "targets agree: NO" in out
    assert "rotation in progress by " in out and "at step update" in out
    assert f"{world.old.secret.hint} -> {new.secret.hint}" in out


def test_revoke_refuses_a_served_key_then_revokes_and_archives(world: World) -> None:
    proc = world.cli("revoke", "--policy", str(world.policy_path), "--id", world.old.id)
    assert proc.returncode == 2 and "still served by" in proc.stderr.decode()
    assert world.status_of(world.old) == "active"
    spare = world.fake.mint_key("spare")
    proc = world.cli("revoke", "--policy", str(world.policy_path), "--format", "json", input=spare.secret.reveal().encode())
    assert proc.returncode == 0, text(proc)
    out = json.loads(proc.stdout)
    assert (out["id"], out["status"], out["refused_by_api"]) == (spare.id, "inactive", True)
    proc = world.cli("revoke", "--policy", str(world.policy_path), "--id", spare.id, "--archive")
    assert proc.returncode == 0 and "inactive -> archived" in proc.stdout.decode()
    proc = world.cli("revoke", "--policy", str(world.policy_path), "--id", "not an id")
    assert proc.returncode == 2 and "is not an API key id" in proc.stderr.decode()


def test_revoke_without_admin_key_says_how(world: World) -> None:
    env = world.environ()
    env.pop("ANTHROPIC_ADMIN_KEY")
    proc = world.cli("revoke", "--id", world.old.id, env=env)
    assert proc.returncode == 2 and "needs an Admin key" in proc.stderr.decode()


def test_incident_from_stdin_deactivates_rotates_and_reports_the_window(world: World, tmp_path: Path) -> None:
    new = world.fake.mint_key("replacement")
    keyfile = tmp_path / "replacement"
    keyfile.write_text(new.secret.reveal())
    proc = world.cli("incident", "--policy", str(world.policy_path), "--new-key-command", f"cat {keyfile}",
                     "--format", "json", input=world.old.secret.reveal().encode())
    assert proc.returncode == 0, text(proc)
    out = json.loads(proc.stdout)
    assert out["key_id"] == world.old.id and out["deactivated"] and out["refused_by_api"] is True
    assert out["held_by"] == {"prod": world.targets}
    assert out["rotations"]["prod"]["phase"] == "done"
    assert out["review_usage"]["from"] and out["review_usage"]["to"]
    assert world.held() == [new.secret.fingerprint] * 2
    assert world.status_of(world.old) == "archived"
    # deactivation happened before any target changed
    posts = [r for r in world.fake.requests if r.method == "POST" and world.old.id in r.path]
    assert posts[0].at < max(r.at for r in world.fake.requests if r.path.startswith("/v1/models"))


def test_incident_from_a_scan_finding(world: World, tmp_path: Path) -> None:
    finding = tmp_path / "findings.json"
    finding.write_text(json.dumps({"findings": [
        {"rule": "anthropic-api-key", "file": "app/settings.py", "line": 12, "hint": world.old.secret.hint,
         "fingerprint": world.old.secret.fingerprint, "commit_date": "2026-01-02T03:04:05Z"},
    ]}))
    new = world.fake.mint_key("replacement")
    stage(world, new.secret)
    proc = world.cli("incident", "--policy", str(world.policy_path), "--finding", str(finding), "--non-interactive")
    assert proc.returncode == 0, text(proc)
    out = proc.stdout.decode()
    assert "found at app/settings.py:12" in out and "deactivated at" in out
    assert "review usage from 2026-01-02T03:04:05Z" in out
    assert world.held() == [new.secret.fingerprint] * 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = world.cli("incident", "--policy", str(world.policy_path), "--finding", str(bad))
    assert proc.returncode == 2 and "not JSON (line 1" in proc.stderr.decode()


def test_incident_with_a_key_nobody_serves(world: World) -> None:
    stray = world.fake.mint_key("stray")
    proc = world.cli("incident", "--policy", str(world.policy_path), input=stray.secret.reveal().encode())
    assert proc.returncode == 0, text(proc)
    assert "no policy target serves it" in proc.stdout.decode()
    assert world.status_of(stray) == "inactive"
    foreign = make_key()
    proc = world.cli("incident", "--policy", str(world.policy_path), input=foreign.reveal().encode())
    assert proc.returncode == 1 and "lists no key with the hint" in proc.stdout.decode()


def test_interactive_run_prints_console_steps_and_reads_the_key_without_echo(world: World) -> None:
    """In a real terminal (a pty as controlling tty): Console steps with the suggested name,
    a hidden prompt, the key typed is not echoed, the rotation completes."""
    import pty
    import select
    import sys
    import time
    from datetime import date

    new = world.fake.mint_key("typed")
    env = world.environ()
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.chdir(world.tmp)
        os.execve(sys.executable, [sys.executable, "-m", "keyvault", "rotate", "--policy", str(world.policy_path)], env)
    prompt = b"Paste the new key (input is hidden): "  # getpass prints it after turning echo off
    output = b""
    sent = False
    status = None
    deadline = time.monotonic() + 60

    def drain(wait: float) -> bytes:
        got = b""
        while select.select([fd], [], [], wait)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not chunk:
                break
            got += chunk
        return got

    while time.monotonic() < deadline and status is None:
        output += drain(0.2)
        if not sent and prompt in output:
            os.write(fd, new.secret.reveal().encode() + b"\n")
            sent = True
        reaped, code = os.waitpid(pid, os.WNOHANG)
        if reaped:
            status = code
    if status is None:  # never hang the suite
        import signal

        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    output += drain(0.1)
    os.close(fd)
    shown = output.decode(errors="replace")
    assert status is not None and os.WEXITSTATUS(status) == 0, shown.replace(new.secret.reveal(), "<key>")[-800:]
    assert f"Name it: prod-chat-{date.today().isoformat()}" in shown
    assert "platform.claude.com/settings/keys" in shown
    assert new.secret.reveal() not in shown  # not echoed
    assert "done: every target holds" in shown
    assert world.held() == [new.secret.fingerprint] * 2


def test_due_date_of_a_dotenv_key_comes_from_the_journal(tmp_path: Path, fake_anthropic, monkeypatch) -> None:
    """.env keeps no creation time and without an Admin key the API cannot say: the age is
    unknown (due) until keyvault itself has put a key in place."""
    world = make_world(tmp_path, fake_anthropic, monkeypatch, admin=False)
    world.add_dotenv("web")
    world.write_policy()
    proc = world.cli("status", "--policy", str(world.policy_path), "--due", "--offline")
    assert proc.returncode == 1 and "due: unknown" in proc.stdout.decode()
    new = world.fake.mint_key("new")
    stage(world, new.secret)
    assert world.rotate().returncode == 0  # parks awaiting manual revoke
    proc = world.cli("status", "--policy", str(world.policy_path), "--due", "--format", "json", "--offline")
    assert proc.returncode == 0, text(proc)
    due = json.loads(proc.stdout)["environments"][0]["due"]
    assert due["state"] == "ok" and 89 < due["days_until_due"] <= 90


def test_incident_from_a_real_history_scan(world: World, tmp_path: Path) -> None:
    """The served key committed to a repository: `keyvault scan --history` finds it, and
    `keyvault incident --finding` deactivates it, rotates, and starts the window at the commit."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "settings.py").write_text(f'ANTHROPIC_API_KEY = "{world.old.secret.reveal()}"\n')
    subprocess.run(["git", "add", "settings.py"], cwd=repo, check=True)
    env = {**os.environ, "GIT_COMMITTER_DATE": "2026-03-04T05:06:07+00:00"}
    subprocess.run([*git, "commit", "-qm", "settings"], cwd=repo, check=True, env=env)
    (repo / "settings.py").write_text("ANTHROPIC_API_KEY = None\n")
    report = tmp_path / "findings.json"
    proc = subprocess.run(
        [sys.executable, "-m", "keyvault", "scan", "--history", "--format", "json", "--output", str(report)],
        cwd=repo, env=world.environ(), capture_output=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, text(proc)  # findings
    assert world.old.secret.fingerprint in report.read_text()
    new = world.fake.mint_key("replacement")
    stage(world, new.secret)
    proc = world.cli("incident", "--policy", str(world.policy_path), "--finding", str(report), "--repo", str(repo),
                     "--non-interactive", "--format", "json")
    assert proc.returncode == 0, text(proc)
    out = json.loads(proc.stdout)
    assert out["key_id"] == world.old.id and out["deactivated"]
    assert out["review_usage"]["from"] == "2026-03-04T05:06:07Z"
    assert out["where"] == "settings.py:1"
    assert world.held() == [new.secret.fingerprint] * 2
