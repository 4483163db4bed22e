"""The pack reader (history scans straight from pack files, searching deltas) must find exactly
what the plain reader (every blob rebuilt by git) finds, on histories built to make git store
keys inside deltas: keys added mid-history, replaced in place, straddling copy/insert
boundaries, base64-encoded, in binary files, over long lines."""

from __future__ import annotations

import base64
import io
import random
import zipfile

import pytest

from keyvault.keys import ADMIN
from tests.scan.helpers import Repo, key

PREFIX = "sk-" + "ant-"


def _both(repo: Repo) -> tuple[list, list, str]:
    repo.git("repack", "-adfq", "--depth=50", "--window=50")
    assert not repo.git("count-objects").startswith(tuple("123456789")), "objects must be packed"
    plain = repo.scan("--history", "-f", "json", env={"KEYVAULT_SCAN_ENGINE": "git"})
    packed = repo.scan("--history", "-f", "json", env={"KEYVAULT_SCAN_TRACE": "1"})
    assert plain.code in (0, 1) and packed.code == plain.code, (plain, packed)
    return plain.findings(), packed.findings(), packed.err


def _lines(rng: random.Random, n: int) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "config", "value", "important-", "constant-time", "task-a"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def test_keys_inside_deltas(repo: Repo) -> None:
    rng = random.Random(7)
    base = _lines(rng, 300)
    keys = [key() for _ in range(6)]
    openai_like = "sk-" + "proj-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(90))
    versions = []
    for i in range(40):
        lines = list(base)
        lines[rng.randrange(len(lines))] = f"edit {i}"
        if 10 <= i < 14:
            lines[150] = f"ANTHROPIC_API_KEY={keys[0]}"                # added mid-history, removed later
        if i >= 20:
            lines[80] = f"API_KEY=\"{openai_like if i < 25 else keys[1]}\""  # another provider's key, then ours
        if i >= 30:
            lines[200] = "x" * 120 + f" token {keys[2]} " + "y" * 300   # long line: 127-byte insert splits
        if i == 35:
            lines[40] = f'"{keys[3][:60]}\\n{keys[3][60:]}"'          # wrapped key
        versions.append("\n".join(lines) + "\n")
    for i, text in enumerate(versions):
        repo.write("app/settings.conf", text)
        repo.commit(f"v{i}")
    plain, packed, trace = _both(repo)
    assert "deltas" in trace
    assert len(plain) >= 4
    assert plain == packed


def test_base64_secret_rotated_in_place(repo: Repo) -> None:
    rng = random.Random(3)
    filler = _lines(rng, 80)
    for i in range(12):
        k = key() if i % 3 else key(ADMIN)
        b64 = base64.b64encode(f"{'#' * (i % 3)}{k}".encode()).decode()
        repo.write("deploy/secret.yaml", "\n".join(filler[: 40 + i]) + f"\ndata:\n  key: {b64}\n")
        repo.commit(f"rotate {i}")
    plain, packed, _ = _both(repo)
    assert len(plain) == 12 and plain == packed


def test_placeholder_history_then_real_key(repo: Repo) -> None:
    rng = random.Random(11)
    doc = _lines(rng, 120)
    for i in range(25):
        doc[rng.randrange(len(doc))] = f"changed {i}"
        body = "your-key-here" if i != 17 else key()[len(PREFIX) + 6:]
        repo.write("README.md", "\n".join(doc) + f"\n\nexport ANTHROPIC_API_KEY={PREFIX}api03-{body}\n")
        repo.commit(f"docs {i}")
    plain, packed, _ = _both(repo)
    assert len(plain) == 1 and plain == packed


def test_binary_versions(repo: Repo) -> None:
    rng = random.Random(5)
    for i in range(10):
        text = "\r\n".join(_lines(rng, 50)) + (f"\r\nkey={key()}\r\n" if i in (3, 7) else "\r\n")
        repo.write("win/settings.ini", text.encode("utf-16"))
        bio = io.BytesIO()
        with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED) as z:
            z.writestr("a.txt", "\n".join(_lines(rng, 30)))
            if i == 5:
                z.writestr("cfg.env", f"K={key()}\n")
        repo.write("dist/bundle.jar", bio.getvalue())
        repo.commit(f"bin {i}")
    plain, packed, _ = _both(repo)
    assert len(plain) == 3 and plain == packed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edit_histories(repo: Repo, seed: int) -> None:
    rng = random.Random(seed)
    files = {f"f{j}.txt": _lines(rng, rng.randint(20, 200)) for j in range(3)}
    pool = [key() for _ in range(4)]
    for i in range(30):
        name = rng.choice(sorted(files))
        lines = files[name]
        op = rng.random()
        if op < 0.15:
            lines.insert(rng.randrange(len(lines) + 1), f"k = {rng.choice(pool)}")
        elif op < 0.3 and lines:
            pos = rng.randrange(len(lines))
            lines[pos] = lines[pos][: rng.randint(0, 20)] + PREFIX + lines[pos][20:]
        elif op < 0.5 and lines:
            del lines[rng.randrange(len(lines))]
        else:
            lines.insert(rng.randrange(len(lines) + 1), " ".join(rng.choice("abc xyz sk- ant-") for _ in range(30)))
        repo.write(name, "\n".join(lines) + "\n")
        repo.commit(f"c{i}")
    plain, packed, _ = _both(repo)
    assert plain == packed


def test_keys_that_exist_only_inside_deltas(repo: Repo) -> None:
    """The newest version (stored whole) holds no credential; older versions (stored as deltas
    against it) do, some straddling what they copy from it: another provider's key at the same
    spot, its base64 at the same alignment, a long line git splits into 127-byte inserts."""
    rng = random.Random(19)
    base = _lines(rng, 250)
    other = "sk-" + "proj-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(90))
    a, b, c, d = key(), key(), key(), key(ADMIN)
    for i in range(32):
        # each version grows, so git keeps the newest (largest, clean) whole and stores the
        # older ones as deltas against it: the keys live only in inserted delta bytes
        lines = list(base) + [f"appended line {j} " + "=" * 60 for j in range(i * 12)]
        lines[rng.randrange(len(base))] = f"edit {i}"
        if 8 <= i < 11:
            lines[150] = f"ANTHROPIC_API_KEY={a}"
        lines[60] = f'API_KEY="{b if 13 <= i < 16 else other}"'
        if 17 <= i < 20:
            lines[100] = "z" * 121 + f" {c} " + "w" * 400
        secret = d if 21 <= i < 24 else other
        lines[200] = "  key: " + base64.b64encode(secret.encode()).decode()
        repo.write("svc/config.txt", "\n".join(lines) + "\n")
        repo.commit(f"v{i}")
    plain, packed, trace = _both(repo)
    assert sorted(f["hint"][-4:] for f in plain) == sorted(k[-4:] for k in (a, b, c, d))
    assert plain == packed, trace
    suspects = int(trace.split(" deltas, ")[1].split(" suspects")[0])
    assert 0 < suspects < 20, trace  # the needles, not a wholesale rebuild, found them


def test_fetched_thin_packs_ref_deltas_and_loose_objects(repo: Repo, tmp_path) -> None:
    """A clone that fetched more history (a thin pack completed with REF_DELTA bases), plus
    loose objects of local work: several packs and loose objects, same findings."""
    import subprocess

    rng = random.Random(23)
    base = _lines(rng, 200)
    for i in range(10):
        base[rng.randrange(len(base))] = f"edit {i}"
        repo.write("conf.txt", "\n".join(base) + "\n")
        repo.commit(f"v{i}")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-local", str(repo.path), str(clone)], check=True)
    k1, k2 = key(), key()
    for i in range(5):
        lines = list(base) + [f"more {j}" for j in range(i)]
        if i == 2:
            lines[100] = f"API={k1}"
        repo.write("conf.txt", "\n".join(lines) + "\n")
        repo.commit(f"w{i}")
    c = Repo(clone)
    c.git("-c", "fetch.unpackLimit=1", "fetch", "-q", "origin")
    c.git("merge", "-q", "--ff-only", "origin/main")
    c.write("local.txt", f"K={k2}\n")
    c.commit("local work")  # loose objects
    packs = list((clone / ".git" / "objects" / "pack").glob("*.pack"))
    assert len(packs) >= 2
    plain = c.scan("--history", "-f", "json", env={"KEYVAULT_SCAN_ENGINE": "git"}).findings()
    packed = c.scan("--history", "-f", "json").findings()
    assert sorted(f["hint"][-4:] for f in plain) == sorted([k1[-4:], k2[-4:]])
    assert plain == packed


def test_sha256_repository(tmp_path) -> None:
    import subprocess

    path = tmp_path / "sha256"
    proc = subprocess.run(["git", "init", "-q", "--object-format=sha256", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("this git cannot create SHA-256 repositories")
    r = Repo(path)
    rng = random.Random(2)
    lines = _lines(rng, 100)
    k = key()
    for i in range(8):
        lines[rng.randrange(len(lines))] = f"e{i}"
        extra = [f"K={k}"] if i == 3 else []
        r.write("a.txt", "\n".join(lines + extra) + "\n")
        r.commit(f"c{i}")
    plain, packed, _ = _both(r)
    assert len(plain) == 1 and len(plain[0]["commit"]) == 64 and plain == packed
