"""dotenv backend: byte-identical rewrites, the git/symlink/owner guards, 0600, atomicity under
kill -9, compare-and-swap between concurrent writers."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyvault.backends import open_backend
from keyvault.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError
from keyvault.keys import Secret
from keyvault.testing.keygen import make_key

NAME = "ANTHROPIC_API_KEY"
OURS = {NAME, f"{NAME}_PENDING", f"{NAME}_PREVIOUS"}


def skeleton(text: str) -> str:
    """The file without our slot statements (their leading blank lines stay): what must not change."""
    from dotenv.parser import parse_stream

    out = []
    for b in parse_stream(io.StringIO(text)):
        if b.key in OURS:
            s = b.original.string
            out.append(s[: len(s) - len(s.lstrip())].rstrip(" \t"))
        else:
            out.append(b.original.string)
    return "".join(out)


def values(path: Path) -> dict[str, str | None]:
    from dotenv import dotenv_values

    return dict(dotenv_values(path, interpolate=False))


# random .env files ---------------------------------------------------------------------------

keys_st = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True).filter(lambda k: not k.startswith("ANTHROPIC"))
plain = st.text(st.sampled_from("abcXYZ019 _-.:/@=,+"), max_size=12).map(str.strip).filter(lambda v: not v.startswith(("'", '"')))
quoted_body = st.text(st.sampled_from("abc XYZ 019_-.#=$/"), max_size=12)
comment = st.text(st.sampled_from("abc XYZ 019#=\"'"), max_size=15).map(lambda c: "#" + c)
space = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def assignment(draw: st.DrawFn) -> str:
    export = draw(st.sampled_from(["", "export "]))
    key = draw(keys_st)
    eq = draw(st.sampled_from(["=", " = ", "= ", " ="]))
    kind = draw(st.sampled_from(["plain", "single", "double", "multiline", "empty"]))
    if kind == "plain":
        value = draw(plain)
    elif kind == "single":
        value = "'" + draw(quoted_body) + "'"
    elif kind == "double":
        value = '"' + draw(quoted_body) + '"'
    elif kind == "multiline":
        value = '"' + draw(quoted_body) + "\n" + draw(quoted_body) + '"'
    else:
        value = ""
    tail = draw(st.sampled_from(["", " " + draw(comment)]))
    return f"{export}{key}{eq}{value}{tail}"


other_line = st.one_of(
    assignment(),
    comment,
    st.just(""),
    space,
    st.sampled_from(["this line is not valid", "JUST_A_NAME", "  # indented comment"]),
)


@st.composite
def dotenv_file(draw: st.DrawFn) -> tuple[str, Secret]:
    key = make_key()
    lines = draw(st.lists(other_line, max_size=12))
    export = draw(st.sampled_from(["", "export "]))
    quote = draw(st.sampled_from(["", "'", '"']))
    tail = draw(st.sampled_from(["", "  # the prod key", " "]))
    eq = draw(st.sampled_from(["=", " = "]))
    ours = f"{draw(space)}{export}{NAME}{eq}{quote}{key.reveal()}{quote}{tail}"
    lines.insert(draw(st.integers(0, len(lines))), ours)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    return text, key


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dotenv_file())
def test_stage_and_promote_keep_every_other_line_byte_identical(sample: tuple[str, Secret]) -> None:
    text, key = sample
    new = make_key()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ".env"
        path.write_bytes(text.encode())
        before = values(path)
        backend = open_backend(f"dotenv://{path}")
        assert backend.read().secret == key

        backend.stage(new)
        staged = path.read_bytes().decode()
        assert skeleton(staged) == skeleton(text)
        after = values(path)
        assert after[f"{NAME}_PENDING"] == new.reveal()
        assert {k: v for k, v in after.items() if k not in OURS} == {k: v for k, v in before.items() if k not in OURS}
        assert backend.read().secret == key

        backend.promote(key.fingerprint)
        promoted = path.read_bytes().decode()
        assert skeleton(promoted) == skeleton(text)
        after = values(path)
        assert after[NAME] == new.reveal() and after[f"{NAME}_PREVIOUS"] == key.reveal()
        assert f"{NAME}_PENDING" not in after
        assert {k: v for k, v in after.items() if k not in OURS} == {k: v for k, v in before.items() if k not in OURS}
        if "\r\n" in text:  # no LF-only line end was introduced into a CRLF file
            assert promoted.replace("\r\n", "").count("\n") == text.replace("\r\n", "").count("\n")
        assert (path.stat().st_mode & 0o777) == 0o600


def test_the_key_line_keeps_its_style(tmp_path: Path) -> None:
    old, new = make_key(), make_key()
    path = tmp_path / ".env"
    path.write_text(f"A=1\nexport {NAME} = '{old.reveal()}'   # rotated quarterly\nB=2")
    backend = open_backend(f"dotenv://{path}")
    backend.stage(new)
    backend.promote(old.fingerprint)
    assert path.read_text() == (
        f"A=1\nexport {NAME} = '{new.reveal()}'   # rotated quarterly\n"
        f"export {NAME}_PREVIOUS = '{old.reveal()}'\nB=2"
    )
    backend.rollback(new.fingerprint)
    assert path.read_text() == (
        f"A=1\nexport {NAME} = '{old.reveal()}'   # rotated quarterly\n"
        f"export {NAME}_PREVIOUS = '{new.reveal()}'\nB=2"
    )


# the guards ----------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_refuses_a_file_git_tracks(tmp_path: Path) -> None:
    key = make_key()
    git(tmp_path, "init", "-q")
    path = tmp_path / ".env"
    path.write_text(f"{NAME}={key.reveal()}\n")
    git(tmp_path, "add", ".env")
    backend = open_backend(f"dotenv://{path}")
    with pytest.raises(BackendError) as info:
        backend.stage(make_key())
    message = str(info.value)
    assert "it would commit the key" in message and "git rm --cached" in message
    assert key.reveal() not in message
    assert path.read_text() == f"{NAME}={key.reveal()}\n"
    # untracked and ignored: fine
    git(tmp_path, "rm", "-q", "--cached", ".env")
    (tmp_path / ".gitignore").write_text(".env*\n")
    backend.stage(make_key())


def test_symlink_outside_the_project_is_refused_inside_is_followed(tmp_path: Path) -> None:
    key, new = make_key(), make_key()
    project, outside = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    outside.mkdir()
    git(project, "init", "-q")
    (outside / "shared.env").write_text(f"{NAME}={key.reveal()}\n")
    (project / ".env").symlink_to(outside / "shared.env")
    backend = open_backend(f"dotenv://{project / '.env'}")
    assert backend.read().secret == key
    with pytest.raises(PermissionDeniedError) as info:
        backend.stage(new)
    assert "outside the project" in str(info.value)
    assert (outside / "shared.env").read_text() == f"{NAME}={key.reveal()}\n"

    (project / "config").mkdir()
    (project / "config" / "dev.env").write_text(f"{NAME}={key.reveal()}\n")
    (project / ".env").unlink()
    (project / ".env").symlink_to("config/dev.env")
    backend.stage(new)
    assert (project / ".env").is_symlink()
    assert f"{NAME}_PENDING={new.reveal()}" in (project / "config" / "dev.env").read_text()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_refuses_a_file_owned_by_another_user(tmp_path: Path) -> None:
    key = make_key()
    path = tmp_path / ".env"
    path.write_text(f"{NAME}={key.reveal()}\n")
    os.chown(path, 4242, 4242)
    with pytest.raises(PermissionDeniedError) as info:
        open_backend(f"dotenv://{path}").stage(make_key())
    assert "owned by uid 4242" in str(info.value)
    assert path.stat().st_uid == 4242


def test_mode_becomes_0600(tmp_path: Path) -> None:
    key = make_key()
    path = tmp_path / ".env"
    path.write_text(f"{NAME}={key.reveal()}\n")
    path.chmod(0o644)
    open_backend(f"dotenv://{path}").stage(make_key())
    assert (path.stat().st_mode & 0o777) == 0o600


def test_duplicate_definitions_are_refused_for_writes(tmp_path: Path) -> None:
    a, b = make_key(), make_key()
    path = tmp_path / ".env"
    path.write_text(f"{NAME}={a.reveal()}\nX=1\n\n{NAME}={b.reveal()}\n")
    backend = open_backend(f"dotenv://{path}")
    assert backend.read().secret == b  # like load_dotenv: the last one wins
    with pytest.raises(BackendError) as info:
        backend.stage(make_key())
    assert "lines 1, 4" in str(info.value)


def test_missing_empty_and_reference_values(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    backend = open_backend(f"dotenv://{path}")
    with pytest.raises(NotFoundError, match="does not exist"):
        backend.read()
    path.write_text(f"OTHER=1\n{NAME}=\n")
    with pytest.raises(NotFoundError, match="line 2"):
        backend.read()
    path.write_text(f"{NAME}=${{PROD_KEY}}\n")
    with pytest.raises(BackendError, match="refers to another variable"):
        backend.read()


def test_first_key_in_a_new_file(tmp_path: Path) -> None:
    key = make_key()
    path = tmp_path / "fresh.env"
    backend = open_backend(f"dotenv://{path}#CLAUDE_KEY")
    backend.stage(key)
    assert backend.promote("").secret == key
    assert path.read_text() == f"CLAUDE_KEY={key.reveal()}\n"
    assert (path.stat().st_mode & 0o777) == 0o600


def test_concurrent_promotes_one_wins(tmp_path: Path) -> None:
    key, new = make_key(), make_key()
    path = tmp_path / ".env"
    path.write_text(f"{NAME}={key.reveal()}\n")
    open_backend(f"dotenv://{path}").stage(new)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def promote() -> None:
        backend = open_backend(f"dotenv://{path}")  # separate instances, as two processes would have
        barrier.wait()
        try:
            results.append(backend.promote(key.fingerprint))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=promote) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "Version"]
    assert values(path) == {NAME: new.reveal(), f"{NAME}_PREVIOUS": key.reveal()}


# kill -9 while writing -------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from keyvault.backends import open_backend
    from keyvault.keys import Secret
    b = open_backend("dotenv://" + sys.argv[1])
    a, c = Secret(sys.argv[2]), Secret(sys.argv[3])
    print("ready", flush=True)
    while True:
        cur = b.read().secret
        b.stage(c if cur == a else a)
        b.promote(cur.fingerprint)
    """
)


def test_kill_9_mid_write_leaves_a_whole_file(tmp_path: Path) -> None:
    """Writers rotate a key in a loop and are killed with SIGKILL: one at a random moment, two
    the instant their temp file appears (mid-write, before the rename). Each file is then the
    old or the new one, whole, and the next write removes the leftover temp file. (One file per
    writer, started together, to keep the test fast.)"""
    import random

    a, c = make_key(), make_key()
    filler = "".join(f"SETTING_{i}=value {i}  # comment {i}\n" for i in range(300)) + "# " + "x" * 2_000_000 + "\n"
    dirs = [tmp_path / f"w{i}" for i in range(3)]
    procs = []
    for d in dirs:
        d.mkdir()
        (d / ".env").write_text(f"# big file\n{NAME}={a.reveal()}\n{filler}")
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(d / ".env"), a.reveal(), c.reveal()],
                                      stdout=subprocess.PIPE, text=True))
    original = skeleton((dirs[0] / ".env").read_text())
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(random.uniform(0.05, 0.3))
    procs[0].send_signal(signal.SIGKILL)
    mid_write = 0
    for proc, d in zip(procs[1:], dirs[1:]):
        tmp, deadline = d / ".env.keyvault-tmp", time.monotonic() + 20
        while not tmp.exists() and time.monotonic() < deadline:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_write += tmp.exists()
    assert mid_write >= 1, "no writer was caught mid-write"
    for proc, d in zip(procs, dirs):
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        path = d / ".env"
        assert skeleton(path.read_text()) == original
        assert values(path)[NAME] in (a.reveal(), c.reveal())
        stray = {p.name for p in d.iterdir()} - {".env", ".env.keyvault-lock", ".env.keyvault-tmp"}
        assert stray == set(), stray
        backend = open_backend(f"dotenv://{path}")
        backend.clear_pending()
        backend.stage(make_key())
        assert not (d / ".env.keyvault-tmp").exists()
        assert skeleton(path.read_text()) == original
