"""Build the benchmark corpus: a realistic git history with planted Anthropic keys.

    python bench/corpus.py [--dir bench/.corpus] [--size-mb N] [--seed 1]

The history is Django's release history rebuilt from its source distributions on the package
registry: each release is committed over the previous one, split into one commit per changed
directory (so the history has thousands of commits of ordinary size, not one giant commit per
release), with a fixed author and dates, through `git fast-import`. The same arguments always
give the same commit ids (the manifest records the tip, so a rerun can check). Releases are added
in a fixed order until the distinct blobs reach `--size-mb` (uncompressed), so the size is a dial;
the default takes every release (about 280 MB of distinct blobs, ~3,000 commits), a history
that each fast tool scans in seconds to tens of seconds on 2 shared cores.

Into that history go planted credentials (random, never-real keys from a seeded generator) in
the forms leaks take in practice, and near-misses that a scanner must stay silent on. Each case
lives in its own file, so any tool's finding is attributed to a case by its path. The manifest
(`DIR/manifest.json`) lists every case with its fingerprint (sha256), never its value.

Layout of DIR:
  sdists/         downloaded release archives (kept: a rebuild downloads nothing)
  repo/           the history, packed; HEAD checked out, nothing staged
  tree/           `git archive HEAD` of repo (no .git): the working-tree scan target
  staged/         a clone of repo with a typical commit staged (a few modified files, one new
                  file holding a key): the pre-commit target
  manifest.json   the recipe, sizes and expected findings
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from keyvault.keys import ADMIN, API, OAUTH_ACCESS, Family, Secret  # noqa: E402
from keyvault.testing.keygen import make_key  # noqa: E402

PROJECT = "django"
# Django's release series in order, each as (feature release, its patch releases). The feature
# releases go on `main`; each series' patches go on a `stable/X.Y.x` branch forked at the
# feature release, as in Django's own repository. Releases are taken in this fixed order (a
# series' feature release, then its patches) until the size is reached, so the list never
# needs to change.
SERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("3.2", tuple(f"3.2.{i}" for i in range(1, 26))),
    ("4.0", tuple(f"4.0.{i}" for i in range(1, 11))),
    ("4.1", tuple(f"4.1.{i}" for i in range(1, 14))),
    ("4.2", tuple(f"4.2.{i}" for i in range(1, 31) if i != 12)),  # 4.2.12 was never released
    ("5.0", tuple(f"5.0.{i}" for i in range(1, 15) if i != 5)),  # nor 5.0.5
    ("5.1", tuple(f"5.1.{i}" for i in range(1, 16))),
    ("5.2", tuple(f"5.2.{i}" for i in range(1, 20))),
)
RELEASES: tuple[tuple[str, str], ...] = tuple(
    (v, "main" if v == feature else f"stable/{feature}.x")
    for feature, patches in SERIES
    for v in (feature, *patches)
)

AUTHOR = "Bench Corpus <bench@keyvault.invalid>"
EPOCH = 1_600_000_000  # 2020-09-13: commit dates count up from here, one hour per commit


# --- planted cases ---------------------------------------------------------------------------


@dataclass
class Case:
    """One planted credential or near-miss, and where a scanner should (not) report it."""

    id: str
    kind: str  # "key" (must be found) | "near-miss" (must not be reported)
    form: str  # what it looks like, in words
    path: str | None  # the file holding it (None for a commit message)
    line: int | None
    scopes: list[str]  # where it is visible: history, tree, staged
    family: str | None = None
    fingerprint: str | None = None  # sha256 of the planted value
    commit: str | None = None  # the commit that introduced it (filled after import)
    note: str = ""


@dataclass
class Plant:
    """Files (and optionally a message) committed at a point in the release history."""

    at: float  # fraction of the release list after which this commit goes
    message: str
    files: dict[str, str] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)  # case ids this commit introduces


def seeded_key(seed: int, case_id: str, family: Family = API) -> Secret:
    """The planted key for a case: `make_key` driven by a seeded PRNG, so every build plants the
    same values. `random.Random.choice` is all `make_key` needs from its rng."""
    rng = random.Random(f"keyvault-bench:{seed}:{case_id}")
    return make_key(family, rng=rng)  # type: ignore[arg-type]


def _line_of(text: str, needle: str) -> int:
    idx = text.index(needle)
    return text.count("\n", 0, idx) + 1


def plan_cases(seed: int) -> tuple[list[Plant], list[Case], dict[str, str]]:
    """The planted history commits, the cases, and the staged-only files.

    Values are built here and written into the corpus files; only their fingerprints leave this
    function through the cases."""
    cases: list[Case] = []
    plants: list[Plant] = []

    def key(case_id: str, family: Family = API) -> str:
        return seeded_key(seed, case_id, family).reveal()

    def add(case: Case, value: str, text: str | None) -> None:
        case.fingerprint = hashlib.sha256(value.encode()).hexdigest()
        if case.line is None and text is not None and value in text:
            case.line = _line_of(text, value)
        cases.append(case)

    # K-hist: committed in a debug script, deleted a few releases later: history only.
    k = key("K-hist")
    hist_py = (
        '"""Quick check that the key works (delete before release)."""\n'
        "import anthropic\n\n"
        f'client = anthropic.Anthropic(api_key="{k}")\n'
        'print(client.models.list().data[0].id)\n'
    )
    add(Case("K-hist", "key", "Python string, deleted later (history only)", "scripts/try_anthropic.py",
             None, ["history"], "api"), k, hist_py)
    plants.append(Plant(0.12, "Add a script to try the Anthropic API", {"scripts/try_anthropic.py": hist_py},
                        cases=["K-hist"]))
    plants.append(Plant(0.30, "Remove the try script", delete=["scripts/try_anthropic.py"]))

    # K-env: a committed .env file (the most common leak).
    k = key("K-env")
    env = f"# local settings\nDEBUG=1\nDATABASE_URL=postgres://localhost/app\nANTHROPIC_API_KEY={k}\nLOG_LEVEL=info\n"
    add(Case("K-env", "key", ".env assignment", "deploy/.env", None, ["history", "tree"], "api"), k, env)
    n = "sk-ant-api03-your-key-here"
    placeholder = f"ANTHROPIC_API_KEY={n}\nDEBUG=0\n"
    add(Case("N-placeholder", "near-miss", "documentation placeholder", "deploy/.env.example", None,
             ["history", "tree"], "api"), n, placeholder)
    plants.append(Plant(0.20, "Add deployment settings", {"deploy/.env": env, "deploy/.env.example": placeholder},
                        cases=["K-env", "N-placeholder"]))

    # K-py and K-admin; a redacted hint and XXXX filler next to them.
    k = key("K-py")
    py = (
        "import os\n\nimport anthropic\n\n\n"
        "def make_client():\n"
        f'    return anthropic.Anthropic(api_key=os.environ.get("ANTHROPIC_API_KEY", "{k}"))\n'
    )
    add(Case("K-py", "key", "Python string default in a call", "examples/llm/client.py", None,
             ["history", "tree"], "api"), k, py)
    k = key("K-admin", ADMIN)
    sh = (
        "#!/bin/sh\n# Deactivate keys older than 90 days.\nset -eu\n"
        f"export ANTHROPIC_ADMIN_KEY='{k}'\n"
        'curl -s https://api.anthropic.com/v1/organizations/api_keys -H "x-api-key: $ANTHROPIC_ADMIN_KEY"\n'
    )
    add(Case("K-admin", "key", "Admin key in a shell script", "scripts/rotate_keys.sh", None,
             ["history", "tree"], "admin"), k, sh)
    n = seeded_key(seed, "N-hint").hint
    hint_doc = f"Key rotation log\n================\n\n2024-05-02  rotated prod key, old key {n} deactivated\n"
    add(Case("N-hint", "near-miss", "redacted hint (Console form)", "docs/ops/rotation-log.txt", None,
             ["history", "tree"], "api"), n, hint_doc)
    n = "sk-ant-api03-" + "X" * 93 + "AA"
    filler = f"# Example configuration\nanthropic:\n  api_key: {n}\n"
    add(Case("N-filler", "near-miss", "well-formed XXXX filler", "docs/examples/anthropic.yaml", None,
             ["history", "tree"], "api"), n, filler)
    plants.append(Plant(0.40, "Add the LLM example and the key rotation script", {
        "examples/llm/client.py": py, "scripts/rotate_keys.sh": sh,
        "docs/ops/rotation-log.txt": hint_doc, "docs/examples/anthropic.yaml": filler,
    }, cases=["K-py", "K-admin", "N-hint", "N-filler"]))

    # K-msg: a key pasted into a commit message.
    k = key("K-msg")
    add(Case("K-msg", "key", "commit message", None, None, ["history"], "api"), k, None)
    plants.append(Plant(0.50, f"Fix the example client\n\nTested with {k} from the staging workspace.\n",
                        {"examples/llm/README.txt": "Run client.py with ANTHROPIC_API_KEY set.\n"},
                        cases=["K-msg"]))

    # JSON and notebooks (escaped strings), wrong-length and wrong-suffix near-misses.
    k = key("K-json")
    js = json.dumps({"service": "chat", "anthropic": {"api_key": k, "model": "claude-sonnet-4-5"}}, indent=2) + "\n"
    add(Case("K-json", "key", "JSON string value", "config/services.json", None, ["history", "tree"], "api"), k, js)
    k = key("K-nb-src")
    nb_src = _notebook(
        [f'import anthropic\nclient = anthropic.Anthropic(api_key="{k}")\nclient.models.list()'], []
    )
    add(Case("K-nb-src", "key", "notebook cell source, JSON-escaped quotes around the key",
             "notebooks/explore.ipynb", None, ["history", "tree"], "api"), k, nb_src)
    k = key("K-nb-out")
    nb_out = _notebook(["print(open('.env').read())"], [f"DEBUG=1\nANTHROPIC_API_KEY=\n{k}\n"])
    add(Case("K-nb-out", "key", "notebook output, key right after an escaped newline",
             "notebooks/debug-env.ipynb", None, ["history", "tree"], "api"), k, nb_out)
    short = key("N-short")[:60] + "AA"
    short_txt = f"ANTHROPIC_API_KEY={short}\n"
    add(Case("N-short", "near-miss", "too short (truncated paste)", "config/short.env", None,
             ["history", "tree"], "api"), short, short_txt)
    long_ = key("N-long")[:-2] + "abcdAA"
    long_txt = f"token = '{long_}'\n"
    add(Case("N-long", "near-miss", "too long (4 extra body characters)", "config/long.ini", None,
             ["history", "tree"], "api"), long_, long_txt)
    plants.append(Plant(0.60, "Add service config and notebooks", {
        "config/services.json": js, "notebooks/explore.ipynb": nb_src, "notebooks/debug-env.ipynb": nb_out,
        "config/short.env": short_txt, "config/long.ini": long_txt,
    }, cases=["K-json", "K-nb-src", "K-nb-out", "N-short", "N-long"]))

    # base64: a k8s Secret (key alone, aligned) and a whole .env encoded (key at offset 1 mod 3).
    k = key("K-k8s")
    b64 = base64.b64encode(k.encode()).decode()
    k8s = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: chat-api\ntype: Opaque\ndata:\n"
        f"  ANTHROPIC_API_KEY: {b64}\n"
    )
    add(Case("K-k8s", "key", "base64 in a Kubernetes Secret (key alone)", "k8s/secret.yaml", 7,
             ["history", "tree"], "api"), k, k8s)
    k = key("K-b64env")
    blob = base64.b64encode(f"# app env\nANTHROPIC_API_KEY={k}\nLOG_LEVEL=info\n".encode()).decode()
    values = f"app:\n  replicas: 2\n  envFileB64: {blob}\n"
    add(Case("K-b64env", "key", "base64 of a whole .env (key not 3-byte aligned)", "k8s/values.yaml", 3,
             ["history", "tree"], "api"), k, values)
    n = key("N-suffix")[:-2] + "Ab"
    suffix_txt = f"export ANTHROPIC_API_KEY={n}\n"
    add(Case("N-suffix", "near-miss", "right length, suffix not AA", "k8s/suffix.sh", None,
             ["history", "tree"], "api"), n, suffix_txt)
    n = r"sk-ant-api03-[A-Za-z0-9_-]{93}AA"
    regex_doc = f"Anthropic keys match the pattern ``{n}``.\n"
    add(Case("N-regex", "near-miss", "a regex in documentation", "docs/ops/key-format.txt", None,
             ["history", "tree"], "api"), n, regex_doc)
    plants.append(Plant(0.75, "Deploy the chat service on Kubernetes", {
        "k8s/secret.yaml": k8s, "k8s/values.yaml": values, "k8s/suffix.sh": suffix_txt,
        "docs/ops/key-format.txt": regex_doc,
    }, cases=["K-k8s", "K-b64env", "N-suffix", "N-regex"]))

    # An OAuth access token (sk-ant-oat01-) in a CI workflow.
    k = key("K-oauth", OAUTH_ACCESS)
    ci = (
        "name: review\non: pull_request\njobs:\n  review:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - run: claude -p 'review this diff'\n        env:\n"
        f"          CLAUDE_CODE_OAUTH_TOKEN: {k}\n"
    )
    add(Case("K-oauth", "key", "OAuth access token in a CI workflow", ".github/workflows/review.yml", None,
             ["history", "tree"], "oauth-access"), k, ci)
    plants.append(Plant(0.90, "Add the review workflow", {".github/workflows/review.yml": ci}, cases=["K-oauth"]))

    # Staged only: a new settings file in the typical commit of staged/.
    k = key("K-staged")
    staged_py = (
        '"""Settings for the staging deployment."""\n\nfrom .base import *  # noqa\n\n'
        "DEBUG = False\nALLOWED_HOSTS = ['staging.example.com']\n"
        f"ANTHROPIC_API_KEY = '{k}'\n"
        "ANTHROPIC_MODEL = 'claude-sonnet-4-5'\n"
    )
    add(Case("K-staged", "key", "Python settings, staged only", "config/settings_staging.py", None,
             ["staged"], "api"), k, staged_py)
    n = "sk-ant-api03-..."
    staged_doc = f"Set ANTHROPIC_API_KEY (it looks like {n}) before running the staging settings.\n"
    add(Case("N-staged", "near-miss", "truncated doc example, staged", "config/README.staging", None,
             ["staged"], "api"), n, staged_doc)
    staged_files = {"config/settings_staging.py": staged_py, "config/README.staging": staged_doc}
    return plants, cases, staged_files


def _notebook(sources: list[str], outputs: list[str]) -> str:
    cell = {
        "cell_type": "code", "execution_count": 1, "id": "a1b2c3d4", "metadata": {},
        "outputs": [{"name": "stdout", "output_type": "stream", "text": o} for o in outputs],
        "source": sources[0],
    }
    nb = {"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
          "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1) + "\n"


# --- releases --------------------------------------------------------------------------------


def sdist_path(sdists: Path, version: str) -> Path | None:
    for name in (f"Django-{version}.tar.gz", f"django-{version}.tar.gz"):
        if (sdists / name).exists():
            return sdists / name
    return None


_HELPER_LOCK = threading.Lock()


def download(sdists: Path, version: str) -> Path:
    """The release's sdist, downloaded once with pip (the registry's ordinary client).

    pip prepares an sdist's metadata after downloading it; doing that in a helper venv that
    already has setuptools and wheel (`--no-build-isolation`) takes ~4 s a release instead of
    ~11 s with a fresh build environment each time."""
    found = sdist_path(sdists, version)
    if found:
        return found
    sdists.mkdir(parents=True, exist_ok=True)
    helper = sdists / ".pip-venv"
    py = helper / "bin" / "python"
    with _HELPER_LOCK:  # downloads run in a few threads: create the helper once
        if not (helper / ".ready").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(helper)], check=True)
            # setuptools 77 reads the PEP 639 license fields of Django >= 5.1.14
            subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "setuptools>=77", "wheel"],
                           check=True)
            (helper / ".ready").touch()
    print(f"corpus: downloading {PROJECT}=={version}", file=sys.stderr, flush=True)
    cmd = [str(py), "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", str(sdists),
           f"{PROJECT}=={version}"]
    if subprocess.run([*cmd, "--no-build-isolation"], stderr=subprocess.DEVNULL).returncode != 0:
        # a release whose build needs more than the helper has: let pip build its own env
        subprocess.run(cmd, check=True)
    found = sdist_path(sdists, version)
    if not found:
        raise SystemExit(f"corpus: pip saved no sdist for {PROJECT}=={version} in {sdists}")
    return found


def read_release(archive: Path) -> dict[str, tuple[str, bytes]]:
    """path -> (git mode, content) for one sdist, top directory stripped, egg-info dropped."""
    files: dict[str, tuple[str, bytes]] = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            parts = m.name.split("/", 1)
            if len(parts) < 2 or not parts[1]:
                continue
            path = parts[1]
            if ".egg-info/" in path or path == "PKG-INFO":
                continue
            if m.issym():
                files[path] = ("120000", m.linkname.encode())
            elif m.isfile():
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                files[path] = ("100755" if m.mode & 0o111 else "100644", data)
    return files


def group_of(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else (parts[0] if len(parts) > 1 else "(top)")


# --- git fast-import -------------------------------------------------------------------------


class Importer:
    """Streams commits into `git fast-import`; one branch, fixed author and dates."""

    def __init__(self, repo: Path) -> None:
        self.marks_file = repo / ".git" / "bench-marks"
        self.proc = subprocess.Popen(
            ["git", "fast-import", "--quiet", "--done", f"--export-marks={self.marks_file}"],
            cwd=repo, stdin=subprocess.PIPE,
        )
        self.out = self.proc.stdin
        assert self.out is not None
        self.mark = 0
        self.commits = 0
        self.blob_sizes: dict[str, int] = {}  # sha1 -> size, to count distinct blob bytes
        self.case_marks: dict[str, int] = {}
        self.tips: dict[str, int] = {}  # branch -> mark of its last commit

    def _data(self, data: bytes) -> None:
        self.out.write(b"data %d\n" % len(data))
        self.out.write(data)
        self.out.write(b"\n")

    def commit(self, branch: str, message: str, changes: list[tuple[str, str, bytes | None]],
               parent: int | None = None) -> int:
        """changes: (path, mode, content) to write, or (path, "", None) to delete. A branch's
        first commit starts from `parent` (a mark)."""
        self.mark += 1
        self.commits += 1
        when = EPOCH + 3600 * self.commits
        w = self.out.write
        w(f"commit refs/heads/{branch}\n".encode())
        w(b"mark :%d\n" % self.mark)
        w(f"author {AUTHOR} {when} +0000\ncommitter {AUTHOR} {when} +0000\n".encode())
        self._data(message.encode())
        if branch not in self.tips and parent is not None:
            w(b"from :%d\n" % parent)
        for path, mode, data in changes:
            if data is None:
                w(f"D {path}\n".encode())
            else:
                sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                self.blob_sizes[sha] = len(data)
                w(f"M {mode} inline {path}\n".encode())
                self._data(data)
        self.tips[branch] = self.mark
        return self.mark

    def tag(self, name: str, mark: int) -> None:
        self.out.write(f"reset refs/tags/{name}\nfrom :{mark}\n\n".encode())

    def close(self) -> dict[int, str]:
        """Finish the import; returns mark -> commit id."""
        self.out.write(b"done\n")
        self.out.close()
        if self.proc.wait() != 0:
            raise SystemExit("corpus: git fast-import failed")
        marks = {}
        for line in self.marks_file.read_text().splitlines():
            mark, _, sha = line.partition(" ")
            marks[int(mark[1:])] = sha
        self.marks_file.unlink()
        return marks

    @property
    def blob_bytes(self) -> int:
        return sum(self.blob_sizes.values())


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True,
        env={**os.environ, **(env or {})},
    ).stdout


def fixed_env(when: int) -> dict[str, str]:
    name, _, email = AUTHOR.partition(" <")
    return {
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email.rstrip(">"), "GIT_AUTHOR_DATE": f"{when} +0000",
        "GIT_COMMITTER_DATE": f"{when} +0000",
    }


# --- build -----------------------------------------------------------------------------------


def build(out: Path, size_mb: int, seed: int) -> dict:
    t0 = time.monotonic()
    sdists = out / "sdists"
    repo = out / "repo"
    for d in (repo, out / "tree", out / "staged"):
        shutil.rmtree(d, ignore_errors=True)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "gc.auto", "0")

    plants, cases, staged_files = plan_cases(seed)
    target = size_mb * 1_000_000 if size_mb > 0 else float("inf")
    importer = Importer(repo)
    state: dict[str, dict[str, tuple[str, bytes]]] = {}  # branch -> files of its last release
    fork: dict[str, int] = {}  # stable branch -> mark of its feature release
    used: list[dict] = []
    pending = sorted(plants, key=lambda p: p.at)
    # Plants go on main at a fraction of the releases that end up used. That count is known
    # only once the size is reached, so each is placed against a running estimate (releases so
    # far times target over bytes so far), and all that remain go in at the end.
    release_paths: dict[str, set[str]] = {}  # branch -> paths of its last release
    # Download a few releases ahead while importing (pip's metadata step is most of the time);
    # only a few, so a small --size-mb downloads little more than it uses.
    pool = ThreadPoolExecutor(max_workers=3)
    ahead: dict[str, Future[Path]] = {}
    for i, (version, branch) in enumerate(RELEASES):
        for v, _ in RELEASES[i:i + 4]:
            if v not in ahead:
                ahead[v] = pool.submit(download, sdists, v)
        archive = ahead[version].result()
        files = read_release(archive)
        if branch not in state:
            if branch != "main":  # fork the stable branch from main as it is now
                state[branch] = dict(state["main"])
                release_paths[branch] = set(release_paths["main"])
                fork[branch] = importer.tips["main"]
            else:
                state[branch], release_paths[branch] = {}, set()
        prev = state[branch]
        changed = sorted(p for p, v in files.items() if prev.get(p) != v)
        removed = sorted(release_paths[branch] - set(files))
        groups: dict[str, list[tuple[str, str, bytes | None]]] = {}
        for p in changed:
            groups.setdefault(group_of(p), []).append((p, files[p][0], files[p][1]))
        for p in removed:
            groups.setdefault(group_of(p), []).append((p, "", None))
        last = 0
        for g in sorted(groups):
            last = importer.commit(branch, f"{PROJECT} {version}: update {g}\n", groups[g], fork.get(branch))
        if last:
            importer.tag(f"v{version}", last)
        for p in removed:
            prev.pop(p, None)
        prev.update(files)
        release_paths[branch] = set(files)
        used.append({"version": version, "branch": branch, "sdist": archive.name,
                     "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                     "changed": len(changed), "removed": len(removed)})
        done = importer.blob_bytes >= target or i == len(RELEASES) - 1
        if size_mb > 0:
            est_total = min(len(RELEASES), max(i + 1, round((i + 1) * target / max(importer.blob_bytes, 1))))
        else:
            est_total = len(RELEASES)
        while pending and (done or pending[0].at * est_total <= i + 1):
            plant = pending.pop(0)
            changes: list[tuple[str, str, bytes | None]] = [
                (p, "100755" if p.endswith(".sh") else "100644", t.encode()) for p, t in sorted(plant.files.items())
            ]
            changes += [(p, "", None) for p in plant.delete]
            msg = plant.message if plant.message.endswith("\n") else plant.message + "\n"
            mark = importer.commit("main", msg, changes)
            for p, mode, data in changes:
                if data is None:
                    state["main"].pop(p, None)
                else:
                    state["main"][p] = (mode, data)
            for cid in plant.cases:
                importer.case_marks[cid] = mark
        print(f"corpus: {version} ({branch}): {len(changed)} changed, {len(removed)} removed; "
              f"{importer.commits} commits, {importer.blob_bytes / 1e6:.0f} MB of distinct blobs",
              file=sys.stderr, flush=True)
        if done:
            break
    pool.shutdown(wait=True, cancel_futures=True)
    if importer.blob_bytes < target and size_mb > 0:
        print(f"corpus: ran out of releases at {importer.blob_bytes / 1e6:.0f} MB", file=sys.stderr)
    case_marks = dict(importer.case_marks)
    n_commits, blob_bytes = importer.commits, importer.blob_bytes
    marks = importer.close()
    for c in cases:
        if c.id in case_marks:
            c.commit = marks[case_marks[c.id]]

    git(repo, "reset", "-q", "--hard", "main")
    git(repo, "gc", "-q", "--prune=now")

    # tree/: what `git archive HEAD` exports (no .git directory).
    tree = out / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=repo, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree)  # noqa: S202 - our own archive

    # staged/: a clone with a typical commit staged: four modified source files and a new
    # settings file holding a key (plus a doc line with a truncated example).
    staged = out / "staged"
    subprocess.run(["git", "clone", "-q", "--no-local", str(repo), str(staged)], check=True)
    git(staged, "config", "gc.auto", "0")
    edits = _typical_edits(staged)
    for rel, text in staged_files.items():
        p = staged / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(staged, "add", "--", *edits, *staged_files)
    stat = git(staged, "diff", "--cached", "--shortstat").strip()

    head = git(repo, "rev-parse", "HEAD").strip()
    count_objects = dict(
        line.split(": ", 1) for line in git(repo, "count-objects", "-v").splitlines() if ": " in line
    )
    reachable = git(repo, "rev-list", "--objects", "--all").count("\n")
    manifest = {
        "version": 1,
        "recipe": {
            "project": PROJECT, "size_mb": size_mb, "seed": seed, "author": AUTHOR, "epoch": EPOCH,
            "releases": used,
            "command": f"python bench/corpus.py --dir {out} --size-mb {size_mb} --seed {seed}",
        },
        "head": head,
        "commits": n_commits,
        "tags": len(used),
        "distinct_blob_bytes": blob_bytes,
        "reachable_objects": reachable,
        "pack_bytes": int(count_objects.get("size-pack", "0")) * 1024,
        "tree_files": sum(1 for p in tree.rglob("*") if p.is_file()),
        "tree_bytes": sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink()),
        "staged": {"files": sorted([*edits, *staged_files]), "shortstat": stat},
        "paths": {"repo": "repo", "tree": "tree", "staged": "staged"},
        "cases": [asdict(c) for c in cases],
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _typical_edits(repo: Path) -> list[str]:
    """Append a small, plausible change to four tracked Python files chosen deterministically."""
    tracked = sorted(git(repo, "ls-files", "django/utils/*.py").split())
    chosen = [p for p in tracked if not p.endswith("__init__.py")][:4]
    for i, rel in enumerate(chosen):
        p = repo / rel
        p.write_text(p.read_text() + (
            f"\n\ndef _bench_helper_{i}(value, default=None):\n"
            f'    """Return value unless it is empty (bench edit {i})."""\n'
            "    if value in (None, '', [], {}):\n"
            "        return default\n"
            "    return value\n"
        ))
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=HERE / ".corpus", help="output directory (default bench/.corpus)")
    ap.add_argument("--size-mb", type=int, default=0,
                    help="stop once the distinct blobs reach this many MB (default 0: every release, ~280 MB)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the planted keys (default 1)")
    args = ap.parse_args(argv)
    manifest = build(args.dir.resolve(), args.size_mb, args.seed)
    summary = {k: manifest[k] for k in ("head", "commits", "tags", "distinct_blob_bytes", "reachable_objects",
                                        "pack_bytes", "tree_files", "tree_bytes", "build_seconds")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
