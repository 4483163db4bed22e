"""`keyvault scan` end to end, on real git repositories built by the tests: every input mode,
output format, exit code, allowlist path; and that the fast path and click agree."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault.keys import ADMIN, OAUTH_ACCESS
from tests.scan.helpers import Repo, key, run_scan


def summary(findings: list[dict]) -> list[tuple]:
    return sorted((f["rule"], f["path"], f["line"], f["source"], f["decoded"]) for f in findings)


# --- paths ---------------------------------------------------------------------------------

def test_paths_mode_honours_gitignore_and_reports_what_it_scanned(repo: Repo) -> None:
    k = key()
    repo.write(".gitignore", "ignored.env\nbuild/\n")
    repo.write("src/app.py", f"KEY = '{k}'\n")
    repo.write("ignored.env", f"K={key()}\n")
    repo.write("build/out.txt", key())
    repo.write("untracked.txt", f"\n{key(ADMIN)}\n")
    repo.commit("init", ".gitignore", "src/app.py")
    r = repo.scan("--format", "json")
    assert r.code == 1, r
    assert summary(r.findings()) == [
        ("anthropic-admin-key", "untracked.txt", 2, "worktree", None),
        ("anthropic-api-key", "src/app.py", 1, "worktree", None),
    ]
    assert r.json()["scanned"]["files"] == 3
    r = repo.scan("--format", "json", "--no-gitignore")
    assert len(r.findings()) == 4
    assert r.json()["version"] == 1


def test_clean_tree_exit_0_and_says_what_it_scanned(repo: Repo) -> None:
    repo.write("a.py", "print('hello')\n")
    r = repo.scan()
    assert r.code == 0, r
    assert "no Anthropic credentials found (scanned 1 file, " in r.out


def test_text_output_shape_and_no_value_anywhere(repo: Repo) -> None:
    k = key()
    repo.write("conf/settings.toml", f"[anthropic]\napi_key = \"{k}\"\n")
    r = repo.scan("conf")
    assert r.code == 1
    first = r.out.splitlines()[0]
    hint = f"{k[:16]}...{k[-4:]}"
    assert first == f"conf/settings.toml:2:12 anthropic-api-key {hint}"
    assert "keyvault incident" in r.out and "keyvault baseline update" in r.out
    assert k not in r.out + r.err
    assert k[13:60] not in r.out + r.err


def test_directory_outside_git_and_explicit_files(tmp_path: Path) -> None:
    k = key()
    (tmp_path / "d" / ".git").mkdir(parents=True)  # a fake .git dir is never read
    (tmp_path / "d" / ".git" / "config").write_text(k)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.log").write_text(f"token={k}\n")
    r = run_scan(["plain", "-f", "json"], tmp_path)
    assert [f["path"] for f in r.findings()] == ["plain/x.log"]
    r = run_scan(["plain/x.log", "-f", "json"], tmp_path)
    assert [f["path"] for f in r.findings()] == ["plain/x.log"]


def test_unreadable_and_missing_inputs(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("fine\n")
    r = run_scan(["missing.txt"], tmp_path)
    assert r.code == 2 and "missing.txt: no such file" in r.err
    r = run_scan(["missing.txt", "ok.txt"], tmp_path)
    assert r.code == 0 and "missing.txt: no such file" in r.err
    if os.geteuid() != 0:
        locked = tmp_path / "locked.txt"
        locked.write_text(key())
        locked.chmod(0)
        r = run_scan(["locked.txt"], tmp_path)
        assert r.code == 2 and "cannot be read" in r.err


def test_symlinks_are_not_followed_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.env").write_text(key())
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.env").symlink_to(outside / "secret.env")
    (tree / "linkdir").symlink_to(outside)
    (tree / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(tree / "fifo")
    r = run_scan(["-f", "json", "--no-gitignore"], tree)
    assert r.code == 0, r
    r = run_scan(["-f", "json", "link.env"], tree)
    assert r.code == 0, r  # named explicitly, but it points out of the tree


def test_binary_utf16_zip_and_gzip_files_in_the_tree(repo: Repo) -> None:
    import io
    import zipfile

    k = key()
    repo.write("win.ini", f"[a]\r\nkey={k}\r\n".encode("utf-16"))
    repo.write("logs/app.log.gz", gzip.compress(f"line\nkey {k}\n".encode()))
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        z.writestr("pkg/config.py", f"K='{k}'\n")
    repo.write("dist/pkg-1.0-py3-none-any.whl", bio.getvalue())
    repo.write("bin/tool", b"\x7fELF\x00\x00" + k.encode() + b"\x00")
    r = repo.scan("-f", "json")
    assert summary(r.findings()) == [
        ("anthropic-api-key", "bin/tool", None, "worktree", None),
        ("anthropic-api-key", "dist/pkg-1.0-py3-none-any.whl!pkg/config.py", 1, "worktree", "zip"),
        ("anthropic-api-key", "logs/app.log.gz", 2, "worktree", "gzip"),
        ("anthropic-api-key", "win.ini", 2, "worktree", "utf-16"),
    ]


# --- staged --------------------------------------------------------------------------------

def test_staged_reports_added_lines_with_new_file_line_numbers(repo: Repo) -> None:
    old = key()
    repo.write("app.py", "a = 1\n" * 10 + f"OLD = '{old}'  # was committed before\n")
    repo.commit("base")
    k = key()
    lines = ("a = 1\n" * 3 + f"NEW = '{k}'\n" + "a = 1\n" * 7 + f"OLD = '{old}'  # was committed before\n")
    repo.write("app.py", lines)
    repo.git("add", "app.py")
    r = repo.scan("--staged", "-f", "json")
    assert r.code == 1
    assert [(f["line"], f["source"], f["fingerprint"]) for f in r.findings()] == [
        (4, "staged", __import__("hashlib").sha256(k.encode()).hexdigest())
    ]


def test_staged_initial_commit_no_head(repo: Repo) -> None:
    k = key()
    repo.write("x.env", f"K={k}\n")
    repo.git("add", "x.env")
    r = repo.scan("--staged", "-f", "json")
    assert r.code == 1 and [f["path"] for f in r.findings()] == ["x.env"]


def test_staged_nothing_staged_says_so(repo: Repo) -> None:
    repo.write("x.env", f"K={key()}\n")  # in the tree, not staged
    r = repo.scan("--staged")
    assert r.code == 0
    assert "nothing is staged" in r.out
    r = repo.scan("--staged", "-f", "json")
    assert r.json()["scanned"] == {"files": 0, "blobs": 0, "bytes": 0}


def test_staged_only_the_index_counts(repo: Repo) -> None:
    k = key()
    repo.write("a.txt", "clean\n")
    repo.git("add", "a.txt")
    repo.write("a.txt", f"clean\n{k}\n")  # unstaged edit
    assert repo.scan("--staged").code == 0
    repo.git("add", "a.txt")
    assert repo.scan("--staged").code == 1


def test_staged_binary_files_are_read_whole_from_the_index(repo: Repo) -> None:
    k = key()
    repo.write("w.reg", f"key={k}\r\n".encode("utf-16"))
    repo.write("a.gz", gzip.compress(k.encode()))
    repo.git("add", ".")
    r = repo.scan("--staged", "-f", "json")
    assert summary(r.findings()) == [
        ("anthropic-api-key", "a.gz", 1, "staged", "gzip"),
        ("anthropic-api-key", "w.reg", 1, "staged", "utf-16"),
    ]


def test_staged_base64_wrapped_over_added_lines(repo: Repo) -> None:
    k = key()
    payload = base64.encodebytes(("x" * 40 + k).encode()).decode()
    repo.write("blob.txt", "header\n" + payload)
    repo.git("add", ".")
    r = repo.scan("--staged", "-f", "json")
    assert [(f["line"], f["decoded"]) for f in r.findings()] == [(2, "base64")]


def test_staged_paths_with_spaces_quotes_and_unicode(repo: Repo) -> None:
    k = key()
    for name in ["dir with space/f ile.txt", 'quo"te.txt', "caf\u00e9.txt", "tab\there.txt"]:
        repo.write(name, k + "\n")
    repo.git("add", ".")
    r = repo.scan("--staged", "-f", "json")
    assert sorted(f["path"] for f in r.findings()) == sorted(
        ["dir with space/f ile.txt", 'quo"te.txt', "caf\u00e9.txt", "tab\there.txt"])


def test_staged_with_filenames_scans_them_whole(repo: Repo) -> None:
    """What the pre-commit framework does for `pre-commit run --all-files`: names files,
    nothing staged. Peers pass silently here."""
    k = key()
    repo.write("old.env", f"K={k}\n")
    repo.commit("base")
    r = repo.scan("--staged", "old.env", "-f", "json")
    assert r.code == 1 and r.findings()[0]["source"] == "staged"


def test_staged_in_a_linked_worktree_and_a_submodule(repo: Repo, tmp_path: Path) -> None:
    repo.write("README", "x\n")
    repo.commit("base")
    wt = tmp_path / "wt"
    repo.git("worktree", "add", "-q", str(wt))
    (wt / "leak.py").write_text(f"K = '{key()}'\n")
    subprocess.run(["git", "add", "leak.py"], cwd=wt, check=True)
    assert run_scan(["--staged"], wt).code == 1

    sub = tmp_path / "sub"
    sub_repo = Repo(sub)
    sub.mkdir()
    sub_repo.git("init", "-q")
    sub_repo.write("f", "x\n")
    sub_repo.commit("s")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    inner = repo.path / "vendor" / "sub"
    (inner / "leak.env").write_text(f"K={key()}\n")
    subprocess.run(["git", "add", "leak.env"], cwd=inner, check=True)
    r = run_scan(["--staged", "-f", "json"], inner)
    assert r.code == 1 and [f["path"] for f in r.findings()] == ["leak.env"]
    # from the superproject the submodule is a pointer, not content: nothing to report there
    assert repo.scan("--staged").code == 0


# --- history, range, push, receive -----------------------------------------------------------

def _history_repo(repo: Repo) -> dict[str, str]:
    k_deleted, k_kept, k_msg, k_b64 = key(), key(), key(ADMIN), key(OAUTH_ACCESS)
    repo.write("README.md", "# demo\n")
    c1 = repo.commit("init")
    repo.write("tmp/notes.txt", f"remember {k_deleted}\n")
    c2 = repo.commit("add notes")
    repo.git("rm", "-q", "tmp/notes.txt")
    c3 = repo.commit("remove notes")
    repo.write("deploy/secret.yaml", "data:\n  k: " + base64.b64encode(k_b64.encode()).decode() + "\n")
    repo.write("config/.env", f"KEY={k_kept}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", f"configure\n\nused {k_msg} for the test")
    c4 = repo.git("rev-parse", "HEAD")
    return {"c1": c1, "c2": c2, "c3": c3, "c4": c4}


def test_history_finds_deleted_keys_messages_and_base64_with_their_commits(repo: Repo) -> None:
    c = _history_repo(repo)
    r = repo.scan("--history", "-f", "json")
    assert r.code == 1, r
    got = sorted((f["path"] or "", f["commit"], f["source"], f["decoded"] or "", f["line"]) for f in r.findings())
    assert got == sorted([
        ("tmp/notes.txt", c["c2"], "history", "", 1),
        ("config/.env", c["c4"], "history", "", 1),
        ("deploy/secret.yaml", c["c4"], "history", "base64", 2),
        ("", c["c4"], "commit-message", "", 3),
    ])
    scanned = r.json()["scanned"]
    assert scanned["blobs"] == 4 and scanned["bytes"] > 0


def test_history_in_parallel_gives_the_same_result(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    _history_repo(repo)
    serial = repo.scan("--history", "-f", "json", "-j", "1").findings()
    parallel = repo.scan("--history", "-f", "json", "-j", "2",
                         env={"KEYVAULT_SCAN_PARALLEL_BYTES": "0"}).findings()
    assert serial == parallel and len(serial) == 4


def test_history_ignores_unreachable_objects(repo: Repo) -> None:
    repo.write("a", "x\n")
    repo.commit("init")
    repo.write("dangling.env", key())
    repo.git("add", "dangling.env")
    repo.git("reset", "-q")  # the blob stays in the object store, reachable from nothing
    r = repo.scan("--history", "-f", "json")
    assert r.code == 0, r
    assert "unreachable" in r.err


def test_range_scans_only_what_the_range_adds(repo: Repo) -> None:
    c = _history_repo(repo)
    r = repo.scan("--range", f"{c['c3']}..{c['c4']}", "-f", "json")
    assert sorted(f["path"] or "msg" for f in r.findings()) == ["config/.env", "deploy/secret.yaml", "msg"]
    r = repo.scan("--range", f"{c['c1']}..{c['c3']}", "-f", "json")
    assert [(f["path"], f["commit"]) for f in r.findings()] == [("tmp/notes.txt", c["c2"])]
    r = repo.scan("--range", f"{c['c3']}..{c['c3']}", "-f", "json")
    assert r.code == 0


def test_pre_push_stdin_new_branch_update_and_delete(repo: Repo, tmp_path: Path) -> None:
    c = _history_repo(repo)
    z = "0" * 40
    # new branch: everything not on a remote
    r = repo.scan("--pre-push", "-f", "json", stdin=f"refs/heads/main {c['c4']} refs/heads/main {z}\n".encode())
    assert len(r.findings()) == 4
    # update from c3: only what c4 adds
    r = repo.scan("--pre-push", "-f", "json", stdin=f"refs/heads/main {c['c4']} refs/heads/main {c['c3']}\n".encode())
    assert len(r.findings()) == 3
    # deletion pushes nothing
    r = repo.scan("--pre-push", stdin=f"(delete) {z} refs/heads/old {c['c2']}\n".encode())
    assert r.code == 0, r


def test_pre_receive_on_a_bare_repository(repo: Repo, tmp_path: Path) -> None:
    """A real server-side hook: push into a bare repo whose pre-receive runs keyvault."""
    c = _history_repo(repo)
    bare = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nexec {sys.executable} -m keyvault scan --pre-receive\n")
    hook.chmod(0o755)
    push = subprocess.run(["git", "push", str(bare), f"{c['c1']}:refs/heads/main"], cwd=repo.path,
                          capture_output=True, text=True)
    assert push.returncode == 0, push.stderr  # the first commit is clean
    push = subprocess.run(["git", "push", str(bare), "main:refs/heads/main"], cwd=repo.path,
                          capture_output=True, text=True)
    assert push.returncode != 0
    assert "pre-receive hook declined" in push.stderr and "anthropic-" in push.stderr
    r = run_scan(["--pre-receive"], bare, stdin=f"{c['c1']} {'0' * 40} refs/heads/main\n".encode())
    assert r.code == 0  # a deletion adds nothing


def test_history_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    r = run_scan(["--history"], tmp_path)
    assert r.code == 2 and r.err.startswith("keyvault: error: not inside a git repository")


# --- stdin, formats, usage --------------------------------------------------------------------

def test_stdin(tmp_path: Path) -> None:
    k = key()
    r = run_scan(["--stdin", "-f", "json"], tmp_path, stdin=f"log: {k}\n".encode())
    assert r.code == 1
    assert [(f["path"], f["source"], f["line"]) for f in r.findings()] == [("-", "stdin", 1)]
    assert run_scan(["--stdin"], tmp_path, stdin=b"").code == 0


def test_sarif_is_valid_for_code_scanning(repo: Repo) -> None:
    k = key()
    repo.write("a b/c.py", f"\n\nx = '{k}'\n")
    r = repo.scan("-f", "sarif")
    doc = json.loads(r.out)
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    run = doc["runs"][0]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert rules == ["anthropic-api-key", "anthropic-admin-key", "anthropic-oauth-token",
                     "anthropic-session-key", "anthropic-unknown-credential"]
    (res,) = run["results"]
    assert res["ruleId"] == "anthropic-api-key" and res["level"] == "error"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "a%20b/c.py"
    assert loc["region"] == {"startLine": 3, "startColumn": 6}
    assert res["partialFingerprints"]
    assert k not in r.out


def test_output_file(repo: Repo) -> None:
    repo.write("a.env", f"K={key()}\n")
    r = repo.scan("-f", "json", "-o", "report.json")
    assert r.code == 1 and r.out == ""
    assert json.loads((repo.path / "report.json").read_text())["findings"]


@pytest.mark.parametrize("args, message", [
    (["--staged", "--history"], "--staged and --history cannot be combined"),
    (["--history", "x"], "--history takes no PATH arguments"),
    (["--range", "--x"], "--range expects A..B"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = run_scan(args, tmp_path)
    assert r.code == 2 and message in r.err, r


def test_unknown_option_and_help_fall_back_to_click(tmp_path: Path) -> None:
    r = run_scan(["--frobnicate"], tmp_path)
    assert r.code == 2 and "No such option" in r.err
    r = run_scan(["--help"], tmp_path)
    assert r.code == 0 and "--staged" in r.out and "Exit status" in r.out


def test_fast_path_and_click_give_identical_output(repo: Repo) -> None:
    """Force the click path by calling the click command directly, and compare."""
    c = _history_repo(repo)
    repo.write("new.env", f"K={key()}\n")
    repo.git("add", "new.env")
    code = (
        "import sys; from keyvault.cli.scan import scan; "
        "scan.main(args=sys.argv[1:], prog_name='keyvault scan')"
    )
    for args in (["-f", "json"], ["--staged", "-f", "json"], ["--history", "-f", "json"],
                 ["--range", f"{c['c1']}..{c['c4']}", "-f", "sarif"], ["--staged"]):
        fast = repo.scan(*args)
        slow = subprocess.run([sys.executable, "-c", code, *args], cwd=repo.path, capture_output=True)
        assert (fast.code, fast.out) == (slow.returncode, slow.stdout.decode()), args


def test_the_hook_path_does_not_import_click(repo: Repo) -> None:
    repo.write("a.py", "x = 1\n")
    repo.git("add", "a.py")
    probe = (
        "import sys, runpy; sys.argv = ['keyvault', 'scan', '--staged'];\n"
        "import atexit; atexit.register(lambda: sys.stderr.write('CLICK=%s\\n' % ('click' in sys.modules)));\n"
        "runpy.run_module('keyvault', run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=repo.path, capture_output=True, text=True)
    assert "CLICK=False" in out.stderr, out.stderr


# --- --verify and --known (the API and the backends, for real) -----------------------------------

def test_verify_marks_live_and_dead_keys_and_never_unblocks(repo: Repo, fake_anthropic) -> None:
    live = fake_anthropic.mint_key("prod")
    revoked = fake_anthropic.mint_key("old", status="inactive")
    unknown = key()  # never minted: 401
    oauth = key(OAUTH_ACCESS)
    repo.write("a.env", f"A={live.secret.reveal()}\nB={revoked.secret.reveal()}\nC={unknown}\nD={oauth}\n")
    env = {"ANTHROPIC_BASE_URL": fake_anthropic.base_url}
    r = repo.scan("--verify", "-f", "json", env=env)
    assert r.code == 1, r
    assert [f["live"] for f in r.findings()] == [True, False, False, None]
    r = repo.scan("--verify", env=env)
    assert "LIVE" in r.out and "not live" in r.out and "liveness unknown" in r.out
    assert "live" not in repo.scan("-f", "json").findings()[0]  # off by default
    sarif = json.loads(repo.scan("--verify", "-f", "sarif", env=env).out)
    assert sarif["runs"][0]["results"][0]["properties"]["live"] is True


def test_verify_when_the_api_cannot_be_reached_still_blocks(repo: Repo) -> None:
    repo.write("a.env", f"A={key()}\n")
    r = repo.scan("--verify", "-f", "json", env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert r.code == 1 and r.findings()[0]["live"] is None
    assert "liveness unknown" in r.err


def test_verify_on_from_config_only_when_configured(repo: Repo, fake_anthropic) -> None:
    minted = fake_anthropic.mint_key("prod")
    repo.write("a.env", f"A={minted.secret.reveal()}\n")
    repo.write("keyvault.toml", "[scan]\nverify = true\n")
    env = {"ANTHROPIC_BASE_URL": fake_anthropic.base_url}
    assert repo.scan("-f", "json", env=env).findings()[0]["live"] is True
    assert "live" not in repo.scan("-f", "json", "--no-verify", env=env).findings()[0]


def test_known_finds_the_teams_own_key_where_no_pattern_matches(repo: Repo) -> None:
    ours = key()
    repo.write("logs/app.log", f"2026-01-01 auth header=Bearer{ours}Xtrailing\n")  # glued: no pattern
    repo.write("other.txt", "nothing here\n")
    assert repo.scan().code == 0
    r = repo.scan("--known", "env://TEAM_KEY", "-f", "json", env={"TEAM_KEY": ours})
    assert r.code == 1, r
    (f,) = r.findings()
    assert f["path"] == "logs/app.log" and f["rule"] == "anthropic-api-key"
    assert f["fingerprint"] == __import__("hashlib").sha256(ours.encode()).hexdigest()
    repo.commit("logs")
    r = repo.scan("--history", "--known", "env://TEAM_KEY", "-f", "json", env={"TEAM_KEY": ours})
    assert [x["path"] for x in r.findings()] == ["logs/app.log"]


def test_known_with_a_bad_source_is_a_clear_error(repo: Repo) -> None:
    r = repo.scan("--known", "env://NOT_SET_ANYWHERE_12345")
    assert r.code == 2 and "NOT_SET_ANYWHERE_12345" in r.err


def test_tree_scan_descends_into_checked_out_submodules_only(repo: Repo, tmp_path: Path) -> None:
    sub = tmp_path / "lib"
    sub.mkdir()
    lib = Repo(sub)
    lib.git("init", "-q")
    lib.write("vendor.env", f"K={key()}\n")
    lib.commit("lib")
    repo.write("a.txt", "a\n")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "third_party/lib")
    repo.commit("add lib")
    r = repo.scan("-f", "json")
    assert [f["path"] for f in r.findings()] == ["third_party/lib/vendor.env"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True)  # submodule not initialised
    r = run_scan(["-f", "json"], clone)
    assert r.code == 0 and r.json()["scanned"]["files"] == 2, r


def test_sarif_paths_are_relative_to_the_repository_root(repo: Repo) -> None:
    repo.write("svc/api/conf.py", f"K = '{key()}'\n")
    r = run_scan(["-f", "sarif", "api"], repo.path / "svc")
    loc = json.loads(r.out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "svc/api/conf.py"
    assert [f["path"] for f in run_scan(["-f", "json", "api"], repo.path / "svc").findings()] == ["api/conf.py"]
