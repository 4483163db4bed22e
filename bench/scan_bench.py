"""Scanner benchmark: keyvault against the peer scanners, on the corpus, in one interleaved run.

    python bench/scan_bench.py [--corpus bench/.corpus] [--peers bench/.peers] [--modes history,tree,staged]

Three scans, each on the corpus built by bench/corpus.py:
  history   every reachable commit of corpus/repo
  tree      the files of HEAD: a `git archive HEAD` export (corpus/tree) and the repo's own
            work tree (corpus/repo, where tools may honour .gitignore and skip .git)
  staged    the pre-commit hook on a typical commit (corpus/staged: four modified files and one
            new settings file holding a key)
and the floors no scanner can beat: `python -c pass` + `git diff --cached` for the hook,
reading every object through one `git cat-file` for the history, `cat` of every file for the
tree.

The machine is small and shared, so the rounds interleave (round 1 runs every command once,
then round 2, ...), each run is a fresh process, and the table shows the best and the median
with ratios to keyvault computed from the same session. Each run goes through GNU
`/usr/bin/time -v` (user+sys and peak RSS of the largest process), or, without it, through a
small Python runner reading getrusage(RUSAGE_CHILDREN).

What each tool found is compared with the corpus manifest: planted keys found and missed,
near-misses reported (false positives), and other findings. Key values never leave the tools'
own report files under bench/out/raw/ (the table and JSON hold case ids and counts only).

Writes bench/out/scan-<time>.json and bench/out/scan-latest.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
GNU_TIME = "/usr/bin/time"
ANTHROPIC_RULES = "anthropic-api-key,anthropic-admin-api-key"

# --- running one command ---------------------------------------------------------------------

RUSAGE_RUNNER = r"""
import json, resource, subprocess, sys
stdout = open(sys.argv[1], "wb") if sys.argv[1] != "-" else subprocess.DEVNULL
rc = subprocess.call(sys.argv[3:], stdout=stdout, stderr=open(sys.argv[2], "wb"))
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "user": ru.ru_utime, "sys": ru.ru_stime, "rss_kb": ru.ru_maxrss}))
"""


@dataclass
class Run:
    wall: float
    user: float
    sys: float
    rss_mib: float
    rc: int
    timed_out: bool = False


def run_once(argv: list[str], cwd: Path, env: dict[str, str], stdout_path: Path | None, timeout: float) -> Run:
    """Run argv once in a fresh process; wall time from our clock, CPU and RSS from GNU time."""
    with tempfile.TemporaryDirectory() as tmp:
        err = Path(tmp) / "stderr"
        out_target = str(stdout_path) if stdout_path else os.devnull
        if os.path.exists(GNU_TIME):
            tfile = Path(tmp) / "time"
            cmd = [GNU_TIME, "-v", "-o", str(tfile), *argv]
        else:
            tfile = None
            cmd = [PY, "-c", RUSAGE_RUNNER, out_target, str(err), *argv]
        # Wait with a blocking waitpid and a watchdog thread for the time limit: Popen's own
        # timeout polls with sleeps of up to 50 ms, which would quantise every wall time.
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)

        with open(out_target, "wb") as out, open(err, "wb") as errf:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out if tfile else subprocess.PIPE,
                                    stderr=errf if tfile else subprocess.DEVNULL, start_new_session=True)
            watchdog = threading.Timer(timeout, kill)
            watchdog.start()
            try:
                stdout_data, _ = proc.communicate()
            except BaseException:  # interrupted: take the tool's whole process group down too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                raise
            finally:
                watchdog.cancel()
            timed_out = fired.is_set()
        wall = time.perf_counter() - t0
        if timed_out:
            return Run(wall, 0.0, 0.0, 0.0, -9, True)
        if tfile is not None:
            info = _parse_gnu_time(tfile.read_text(errors="replace"))
            return Run(wall, info["user"], info["sys"], info["rss_kb"] / 1024, info["rc"])
        info = json.loads(stdout_data.decode().strip().splitlines()[-1])
        return Run(wall, info["user"], info["sys"], info["rss_kb"] / 1024, info["rc"])


def _parse_gnu_time(text: str) -> dict[str, Any]:
    info: dict[str, Any] = {"user": 0.0, "sys": 0.0, "rss_kb": 0, "rc": 0}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("User time (seconds):"):
            info["user"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("System time (seconds):"):
            info["sys"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("Maximum resident set size (kbytes):"):
            info["rss_kb"] = int(line.rsplit(":", 1)[1])
        elif line.startswith("Exit status:"):
            info["rc"] = int(line.rsplit(":", 1)[1])
        elif line.startswith("Command terminated by signal"):
            info["rc"] = -int(line.rsplit(" ", 1)[1])
    return info


# --- what a tool reported ----------------------------------------------------------------------


@dataclass
class Hit:
    path: str | None
    line: int | None
    commit: str | None
    value_sha256: str | None  # fingerprint of the reported value, when the tool gives one


def _sha(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value else None


def parse_keyvault(raw: str) -> list[Hit]:
    doc = json.loads(raw)
    return [Hit(f.get("path"), f.get("line"), f.get("commit"), f.get("fingerprint")) for f in doc.get("findings", [])]


def parse_gitleaks(raw: str) -> list[Hit]:
    return [Hit(f.get("File"), f.get("StartLine"), f.get("Commit") or None, _sha(f.get("Secret"))) for f in json.loads(raw or "[]")]


def parse_betterleaks(raw: str) -> list[Hit]:
    doc = json.loads(raw or "{}")
    items = doc.get("findings", []) if isinstance(doc, dict) else doc
    hits = []
    for f in items:
        loc = f.get("location", {})
        attrs = f.get("attributes", {})
        hits.append(Hit(loc.get("path"), loc.get("start_line"), attrs.get("git.sha"), _sha(f.get("match", {}).get("value"))))
    return hits


def parse_kingfisher(raw: str) -> list[Hit]:
    doc = json.loads(raw or "{}")
    hits = []
    for f in doc.get("findings", []):
        g = f.get("finding", {})
        commit = ((g.get("git_metadata") or {}).get("commit") or {}).get("id")
        hits.append(Hit(g.get("path"), g.get("line"), commit, _sha(g.get("snippet"))))
    return hits


def parse_secretlint(raw: str) -> list[Hit]:
    hits = []
    for f in json.loads(raw or "[]"):
        for m in f.get("messages", []):
            hits.append(Hit(f.get("filePath"), m.get("loc", {}).get("start", {}).get("line"), None, None))
    return hits


def parse_detect_secrets(raw: str) -> list[Hit]:
    doc = json.loads(raw or "{}")
    return [Hit(path, r.get("line_number"), None, None) for path, rs in doc.get("results", {}).items() for r in rs]


def parse_trufflehog3(raw: str) -> list[Hit]:
    hits = []
    for f in json.loads(raw or "[]"):
        hits.append(Hit(f.get("path"), f.get("line") and int(f.get("line")), f.get("commit") or None, _sha(f.get("secret"))))
    return hits


# --- jobs ------------------------------------------------------------------------------------


@dataclass
class Job:
    tool: str
    mode: str  # history | tree-export | tree-repo | staged
    label: str  # the command as shown in the table
    argv: list[str]
    cwd: Path
    parse: Callable[[str], list[Hit]] | None = None
    report: str = "stdout"  # "stdout", or the name of the report file the tool writes into {out}
    rounds: int = 0  # 0: the mode's default
    warmup: bool = True
    timeout: float = 600.0
    note: str = ""
    runs: list[Run] = field(default_factory=list)
    hits: list[Hit] | None = None
    error: str | None = None


def shell(cmd: str) -> list[str]:
    return ["sh", "-c", cmd]


def build_jobs(corpus: Path, peers: Path, modes: set[str], only: set[str] | None, skip_slow: bool,
               slow_timeout: float, hook_entries: list[tuple[str, list[str]]], all_rules: bool) -> list[Job]:
    repo, tree, staged = corpus / "repo", corpus / "tree", corpus / "staged"
    b = peers / "bin"
    rc = peers / "node" / ".secretlintrc.json"
    gl_rules = [] if all_rules else ["--enable-rule", ANTHROPIC_RULES]
    bl_rules = [] if all_rules else ["--isolate-rule", ANTHROPIC_RULES]
    kf_rules = [] if all_rules else ["--rule", "anthropic"]
    kf = [str(b / "kingfisher"), "scan", "--no-validate", "--no-update-check", "-f", "json", *kf_rules]
    kv = [PY, "-m", "keyvault", "scan", "--format", "json"]
    staged_files = "git diff --cached --name-only --diff-filter=ACMR -z"
    jobs: list[Job] = []

    def add(job: Job) -> None:
        if job.mode.split("-")[0] in modes and (only is None or job.tool in only or job.tool == "floor"):
            jobs.append(job)

    # history
    add(Job("floor", "history", "git cat-file --batch-all-objects --batch > /dev/null",
            ["git", "cat-file", "--batch-all-objects", "--batch"], repo))
    add(Job("floor", "history", "git rev-list --objects --all | ... | git cat-file --batch (blobs, rev-list order)",
            shell("git rev-list --objects --all | cut -d' ' -f1 | git cat-file --batch-check='%(objectname) %(objecttype)'"
                  " | awk '$2==\"blob\"{print $1}' | git cat-file --batch > /dev/null"), repo))
    add(Job("keyvault", "history", "python -m keyvault scan --history --format json", [*kv, "--history"], repo,
            parse_keyvault))
    add(Job("gitleaks", "history", "gitleaks git . " + " ".join(gl_rules), [str(b / "gitleaks"), "git", ".", "--no-banner",
            *gl_rules, "-f", "json", "-r", "{out}"], repo, parse_gitleaks, report="gitleaks.json"))
    add(Job("betterleaks", "history", "betterleaks git . " + " ".join(bl_rules), [str(b / "betterleaks"), "git", ".",
            "--no-banner", *bl_rules, "-o", "{out}"], repo, parse_betterleaks, report="betterleaks.json"))
    add(Job("kingfisher", "history", "kingfisher scan . --git-history full " + " ".join(kf_rules),
            [*kf, ".", "--git-history", "full", "-o", "{out}"], repo, parse_kingfisher, report="kingfisher.json"))
    if not skip_slow:
        add(Job("trufflehog3", "history", "trufflehog3 -z --no-current . (generic rules)",
                [str(b / "trufflehog3"), "-z", "--no-current", "-f", "JSON", "-o", "{out}", "."], repo,
                parse_trufflehog3, report="trufflehog3.json", rounds=1, warmup=False, timeout=slow_timeout))

    # tree: the export and the repo's work tree
    for mode, where in (("tree-export", tree), ("tree-repo", repo)):
        add(Job("floor", mode, "cat every file > /dev/null" + (" (skipping .git)" if where == repo else ""),
                shell("find . -path ./.git -prune -o -type f -print0 | xargs -0 cat > /dev/null"), where))
        add(Job("keyvault", mode, "python -m keyvault scan --format json .", [*kv, "."], where, parse_keyvault))
        add(Job("gitleaks", mode, "gitleaks dir . " + " ".join(gl_rules), [str(b / "gitleaks"), "dir", ".", "--no-banner",
                *gl_rules, "-f", "json", "-r", "{out}"], where, parse_gitleaks, report="gitleaks.json"))
        add(Job("betterleaks", mode, "betterleaks fs . " + " ".join(bl_rules), [str(b / "betterleaks"), "fs", ".",
                "--no-banner", *bl_rules, "-o", "{out}"], where, parse_betterleaks, report="betterleaks.json"))
        add(Job("kingfisher", mode, "kingfisher scan . --git-history none " + " ".join(kf_rules),
                [*kf, ".", "--git-history", "none", "-o", "{out}"], where, parse_kingfisher, report="kingfisher.json"))
        add(Job("secretlint", mode, "secretlint '**/*' (anthropic rule)", [str(b / "secretlint"), "**/*",
                "--secretlintrc", str(rc), "--format", "json"], where, parse_secretlint, rounds=2, warmup=False,
                note="2 rounds: tens of seconds a run"))
        if not skip_slow and mode == "tree-export":
            add(Job("detect-secrets", mode, "detect-secrets scan -n --all-files (generic rules)",
                    [str(b / "detect-secrets"), "scan", "-n", "--all-files"], where, parse_detect_secrets,
                    rounds=1, warmup=False, timeout=slow_timeout))
            add(Job("trufflehog3", mode, "trufflehog3 -z --no-history . (generic rules)",
                    [str(b / "trufflehog3"), "-z", "--no-history", "-f", "JSON", "-o", "{out}", "."], where,
                    parse_trufflehog3, report="trufflehog3.json", rounds=1, warmup=False, timeout=slow_timeout))

    # staged: the pre-commit hook
    add(Job("floor", "staged", "python -c pass && git diff --cached > /dev/null",
            shell(f"{shlex.quote(PY)} -c pass && git diff --cached > /dev/null"), staged))
    add(Job("keyvault", "staged", "python -m keyvault scan --staged --format json", [*kv, "--staged"], staged,
            parse_keyvault))
    for label, argv in hook_entries:
        add(Job("keyvault", "staged", label, argv, staged, None, note="hook entry: exit 1 = commit refused"))
    add(Job("gitleaks", "staged", "gitleaks git --pre-commit --staged . " + " ".join(gl_rules),
            [str(b / "gitleaks"), "git", "--pre-commit", "--staged", ".", "--no-banner", *gl_rules, "-f", "json",
             "-r", "{out}"], staged, parse_gitleaks, report="gitleaks.json"))
    add(Job("betterleaks", "staged", "betterleaks git --staged . " + " ".join(bl_rules),
            [str(b / "betterleaks"), "git", "--staged", ".", "--no-banner", *bl_rules, "-o", "{out}"], staged,
            parse_betterleaks, report="betterleaks.json"))
    add(Job("kingfisher", "staged", "kingfisher scan . --staged " + " ".join(kf_rules),
            [*kf, ".", "--staged", "-o", "{out}"], staged, parse_kingfisher, report="kingfisher.json"))
    add(Job("secretlint", "staged", f"{staged_files} | xargs -0 secretlint (anthropic rule)",
            shell(f"{staged_files} | xargs -0 {shlex.quote(str(b / 'secretlint'))} --secretlintrc {shlex.quote(str(rc))}"
                  " --format json"), staged, parse_secretlint))
    add(Job("detect-secrets", "staged", f"{staged_files} | xargs -0 detect-secrets-hook -n --json (generic rules)",
            shell(f"{staged_files} | xargs -0 {shlex.quote(str(b / 'detect-secrets-hook'))} -n --json"), staged,
            parse_detect_secrets))
    return jobs


# --- scoring against the manifest -------------------------------------------------------------

MODE_SCOPE = {"history": "history", "tree-export": "tree", "tree-repo": "tree", "staged": "staged"}


def attribute(hit: Hit, cases: list[dict]) -> dict | None:
    """The planted case a finding is about: by path (each case has its own file), else by value
    fingerprint, else by commit (a key in a commit message has no path)."""
    if hit.path:
        path = hit.path.replace("\\", "/")
        for c in cases:
            if c["path"] and (path == c["path"] or path.endswith("/" + c["path"])):
                return c
    if hit.value_sha256:
        for c in cases:
            if c["fingerprint"] == hit.value_sha256:
                return c
    if hit.commit and not hit.path:
        for c in cases:
            if c["path"] is None and c["commit"] == hit.commit:
                return c
    return None


def score(hits: list[Hit], cases: list[dict], mode: str) -> dict[str, Any]:
    scope = MODE_SCOPE[mode]
    in_scope = [c for c in cases if scope in c["scopes"]]
    found: set[str] = set()
    near: set[str] = set()
    out_of_scope: set[str] = set()
    other = 0
    for h in hits:
        c = attribute(h, cases)
        if c is None:
            other += 1
        elif scope not in c["scopes"]:
            out_of_scope.add(c["id"])
        elif c["kind"] == "key":
            found.add(c["id"])
        else:
            near.add(c["id"])
    expected = [c["id"] for c in in_scope if c["kind"] == "key"]
    return {
        "expected": expected,
        "found": sorted(found),
        "missed": [i for i in expected if i not in found],
        "near_miss_fp": sorted(near),
        "out_of_scope": sorted(out_of_scope),
        "other": other,
        "findings": len(hits),
    }


# --- the session -----------------------------------------------------------------------------


def keyvault_scan_available() -> bool:
    p = subprocess.run([PY, "-m", "keyvault", "scan", "--help"], capture_output=True, cwd=ROOT)
    return p.returncode == 0


def hook_entries() -> list[tuple[str, list[str]]]:
    """The fast hook entries the scan worker ships: hooks/pre-commit, and the console script
    named in .pre-commit-hooks.yaml (run as the framework would, with the staged file names)."""
    entries: list[tuple[str, list[str]]] = []
    shim = ROOT / "hooks" / "pre-commit"
    if shim.exists():
        entries.append(("hooks/pre-commit (git hook shim)", [str(shim)]))
    spec = ROOT / ".pre-commit-hooks.yaml"
    if spec.exists():
        entry, pass_filenames = _hook_entry(spec.read_text(), "keyvault-scan")
        if entry:
            argv = shlex.split(entry)
            exe = shutil.which(argv[0], path=str(Path(PY).parent)) or argv[0]
            cmd = shlex.join([exe, *argv[1:]])
            if pass_filenames:  # what the framework does: the staged names as arguments
                entries.append((f"pre-commit entry: {entry} <staged files>",
                                shell(f"git diff --cached --name-only --diff-filter=ACMR -z | xargs -0 {cmd}")))
            else:
                entries.append((f"pre-commit entry: {entry}", [exe, *argv[1:]]))
    return entries


def _hook_entry(text: str, hook_id: str) -> tuple[str | None, bool]:
    """`entry` and `pass_filenames` (default true, as in pre-commit) of one hook in
    .pre-commit-hooks.yaml (a tiny parser: the bench needs no YAML dependency)."""
    current = None
    entry, pass_filenames = None, True
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"-\s*id:\s*(.+)", s)
        if m:
            if current == hook_id:
                break
            current = m.group(1).strip().strip("'\"")
        elif current == hook_id and s.startswith("entry:"):
            entry = s.split(":", 1)[1].strip().strip("'\"")
        elif current == hook_id and s.startswith("pass_filenames:"):
            pass_filenames = s.split(":", 1)[1].strip().lower() == "true"
    return entry, pass_filenames


def system_snapshot() -> dict[str, Any]:
    load = os.getloadavg()
    ps = subprocess.run(["ps", "-eo", "pcpu,rss,etime,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return {"loadavg": [round(x, 2) for x in load], "top": ps.splitlines()[:8]}


def run_session(jobs: list[Job], rounds: dict[str, int], out_dir: Path, corpus: Path,
                log: Callable[[str], None]) -> None:
    raw = out_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_COLOR": "1", "GIT_TERMINAL_PROMPT": "0", "PAGER": "cat"}
    # The corpus usually sits inside this repository's work tree (bench/.corpus, gitignored):
    # stop git's repository discovery at the corpus, so the tree export is what it is meant to
    # be, a directory outside any repository (a .gitignore-honouring tool would otherwise skip
    # all of it as ignored by the enclosing repository).
    env["GIT_CEILING_DIRECTORIES"] = str(corpus)
    env["XDG_CACHE_HOME"] = str(PEERS_DIR / "cache")
    # hooks/pre-commit runs `keyvault` from PATH: the console script of the Python measured here
    env["PATH"] = str(Path(PY).parent) + os.pathsep + env.get("PATH", "")
    for j in jobs:
        j.rounds = j.rounds or rounds[j.mode.split("-")[0]]
    n_rounds = max(j.rounds for j in jobs)
    # Round 0 warms the page cache and the tools' own caches; it is not counted.
    for r in range(0, n_rounds + 1):
        for j in jobs:
            if (r == 0 and not j.warmup) or (r > 0 and r > j.rounds) or j.error:
                continue
            name = f"{j.tool}_{j.mode}_{j.label}"
            name = hashlib.sha1(name.encode()).hexdigest()[:6] + "_" + f"{j.tool}_{j.mode}"
            report = raw / f"{name}.{j.report}" if j.report != "stdout" else None
            stdout_path = raw / f"{name}.out"
            argv = [a.replace("{out}", str(report)) for a in j.argv]
            if report:
                report.unlink(missing_ok=True)
            run = run_once(argv, j.cwd, env, stdout_path, j.timeout)
            shown = f"{run.wall:8.2f} s  rc={run.rc}" + ("  TIMEOUT" if run.timed_out else "")
            log(f"round {r}: {j.mode:<11} {j.tool:<14} {shown}  {j.label[:60]}")
            if r == 0:
                continue
            j.runs.append(run)
            if j.hits is None and j.parse and not run.timed_out:
                source = report if report else stdout_path
                try:
                    j.hits = j.parse(source.read_text(errors="replace") if source.exists() else "")
                except (ValueError, KeyError, TypeError) as exc:
                    j.error = f"could not read its report ({type(exc).__name__})"
            if run.timed_out:
                j.note = (j.note + "; " if j.note else "") + f"timed out after {j.timeout:.0f} s"


def summarize(jobs: list[Job], cases: list[dict]) -> list[dict[str, Any]]:
    rows = []
    ref: dict[str, float] = {}
    for j in jobs:
        if j.tool == "keyvault" and j.parse and j.runs and not any(r.timed_out for r in j.runs):
            ref.setdefault(j.mode, statistics.median(r.wall for r in j.runs))
    for j in jobs:
        walls = [r.wall for r in j.runs if not r.timed_out]
        row: dict[str, Any] = {
            "tool": j.tool, "mode": j.mode, "command": j.label, "cwd": j.cwd.name, "note": j.note,
            "runs": [r.__dict__ for r in j.runs], "error": j.error,
        }
        if walls:
            med = statistics.median(walls)
            row.update({
                "wall_best": min(walls), "wall_median": med,
                "cpu_median": statistics.median(r.user + r.sys for r in j.runs if not r.timed_out),
                "rss_mib_max": max(r.rss_mib for r in j.runs if not r.timed_out),
                "exit_codes": sorted({r.rc for r in j.runs}),
                "ratio_to_keyvault": (med / ref[j.mode]) if j.mode in ref else None,
            })
        if j.hits is not None:
            row["detection"] = score(j.hits, cases, j.mode)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    titles = {
        "history": "Full history (corpus/repo, every ref)",
        "tree-export": "Working tree, `git archive HEAD` export (corpus/tree)",
        "tree-repo": "Working tree, in the repository (corpus/repo)",
        "staged": "Pre-commit: the staged typical commit (corpus/staged)",
    }
    out = [header]
    for mode, title in titles.items():
        mrows = [r for r in rows if r["mode"] == mode]
        if not mrows:
            continue
        out += ["", f"### {title}", "",
                "| tool | command | wall best s | wall median s | x keyvault | user+sys s | max RSS MiB "
                "| keys found | missed | near-miss FP | other |",
                "|---|---|---:|---:|---:|---:|---:|---|---|---|---:|"]
        for r in mrows:
            d = r.get("detection")
            if "wall_best" in r:
                t = (f"{r['wall_best']:.3f} | {r['wall_median']:.3f} | "
                     f"{r['ratio_to_keyvault']:.2f} | " if r.get("ratio_to_keyvault") is not None else
                     f"{r['wall_best']:.3f} | {r['wall_median']:.3f} | - | ")
                t += f"{r['cpu_median']:.2f} | {r['rss_mib_max']:.0f}"
            else:
                t = "timeout | timeout | - | - | -" if r["runs"] else "- | - | - | - | -"
            if d:
                det = (f"{len(d['found'])}/{len(d['expected'])} | {', '.join(d['missed']) or '-'} | "
                       f"{', '.join(d['near_miss_fp']) or '-'} | {d['other']}")
            elif r.get("exit_codes"):  # a hook entry: its verdict is its exit code
                det = f"exit {', '.join(map(str, r['exit_codes']))} | - | - | -"
            else:
                det = "- | - | - | -"
            cmd = r["command"] + (f" ({r['note']})" if r["note"] else "") + (f" [{r['error']}]" if r["error"] else "")
            cmd = cmd.replace("|", "\\|")  # a pipe inside a cell would split the markdown table
            out.append(f"| {r['tool']} | `{cmd}` | {t} | {det} |")
    out += targets(rows)
    out += ["", "x keyvault = this row's median wall time / keyvault's (`python -m keyvault scan`) median wall time in "
            "the same mode: above 1 means keyvault is faster. Found/missed/near-miss ids refer to the corpus "
            "manifest's cases; `other` counts findings outside the planted cases."]
    return "\n".join(out) + "\n"


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The quality bars of DESIGN.md and issue 3, checked on this session's medians."""

    def med(mode: str, tool: str, command_prefix: str = "") -> float | None:
        for r in rows:
            if r["mode"] == mode and r["tool"] == tool and r["command"].startswith(command_prefix) and "wall_median" in r:
                return r["wall_median"]
        return None

    def fastest_peer(mode: str) -> tuple[str, float] | None:
        peers = [(r["tool"], r["wall_median"]) for r in rows
                 if r["mode"] == mode and r["tool"] not in ("keyvault", "floor") and "wall_median" in r]
        return min(peers, key=lambda p: p[1]) if peers else None

    lines: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        lines.append(f"| {label} | {'met' if ok else 'NOT met'} | {detail} |")

    kv_hist = med("history", "keyvault", "python -m keyvault")
    if kv_hist is not None:
        fp = fastest_peer("history")
        if fp:
            check("history: at least 2x faster than the fastest peer", kv_hist * 2 <= fp[1],
                  f"keyvault {kv_hist:.2f} s, {fp[0]} {fp[1]:.2f} s ({fp[1] / kv_hist:.2f}x)")
        floor = med("history", "floor", "git cat-file --batch-all-objects")
        if floor:
            check("history: within 1.5x of `git cat-file --batch-all-objects --batch`", kv_hist <= 1.5 * floor,
                  f"keyvault {kv_hist:.2f} s, floor {floor:.2f} s ({kv_hist / floor:.2f}x)")
    for mode in ("tree-export", "tree-repo"):
        kv = med(mode, "keyvault", "python -m keyvault")
        fp = fastest_peer(mode)
        if kv is not None and fp:
            check(f"{mode}: faster than the fastest peer", kv < fp[1],
                  f"keyvault {kv:.3f} s, {fp[0]} {fp[1]:.3f} s ({fp[1] / kv:.2f}x)")
    floor = med("staged", "floor")
    gl = med("staged", "gitleaks")
    for r in rows:
        if r["mode"] != "staged" or r["tool"] != "keyvault" or "wall_median" not in r:
            continue
        kv = r["wall_median"]
        if floor:
            check(f"staged `{r['command']}`: within 1.2x of python -c pass + git diff --cached", kv <= 1.2 * floor,
                  f"{kv:.3f} s vs floor {floor:.3f} s ({kv / floor:.2f}x)")
        if gl:
            check(f"staged `{r['command']}`: faster than gitleaks --pre-commit --staged", kv < gl,
                  f"{kv:.3f} s vs gitleaks {gl:.3f} s ({gl / kv:.2f}x)")
    if not lines:
        return []
    return ["", "### Targets (issue 3 / DESIGN.md), on this session's medians", "", "| target | verdict | figures |",
            "|---|---|---|", *lines]


PEERS_DIR = HERE / ".peers"


def main(argv: list[str] | None = None) -> int:
    global PEERS_DIR
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `kill` cleans up like Ctrl-C
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=HERE / ".corpus")
    ap.add_argument("--peers", type=Path, default=HERE / ".peers")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--modes", default="history,tree,staged", help="comma-separated: history, tree, staged")
    ap.add_argument("--only", default=None, help="comma-separated tools to run (floors always run)")
    ap.add_argument("--rounds-history", type=int, default=3)
    ap.add_argument("--rounds-tree", type=int, default=3)
    ap.add_argument("--rounds-staged", type=int, default=10)
    ap.add_argument("--skip-slow", action="store_true", help="skip detect-secrets and trufflehog3 (minutes each)")
    ap.add_argument("--slow-timeout", type=float, default=300.0, help="time limit of a slow peer's single run")
    ap.add_argument("--all-rules", action="store_true",
                    help="run gitleaks/betterleaks/kingfisher with all their rules, not only the Anthropic ones")
    args = ap.parse_args(argv)
    PEERS_DIR = args.peers.resolve()
    corpus = args.corpus.resolve()
    manifest_path = corpus / "manifest.json"
    if not manifest_path.exists():
        print(f"scan_bench: no corpus at {corpus}: run python bench/corpus.py first", file=sys.stderr)
        return 2
    if not (PEERS_DIR / "bin").exists():
        print(f"scan_bench: no peers at {PEERS_DIR}: run bash bench/peers/install.sh first", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())
    modes = set(args.modes.split(","))
    only = set(args.only.split(",")) if args.only else None
    if not keyvault_scan_available():
        print("scan_bench: `python -m keyvault scan` is not available yet: measuring the peers and floors only",
              file=sys.stderr)
        only = (only or {"gitleaks", "betterleaks", "kingfisher", "secretlint", "detect-secrets", "trufflehog3"}) - {"keyvault"}
    jobs = build_jobs(corpus, PEERS_DIR, modes, only, args.skip_slow, args.slow_timeout, hook_entries(), args.all_rules)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    before = system_snapshot()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    run_session(jobs, {"history": args.rounds_history, "tree": args.rounds_tree, "staged": args.rounds_staged},
                args.out, corpus, log)
    rows = summarize(jobs, manifest["cases"])
    after = system_snapshot()
    header = (
        f"## keyvault scan benchmark, {started}\n\n"
        f"Corpus: {manifest['recipe']['project']} releases {manifest['recipe']['releases'][0]['version']}.."
        f"{manifest['recipe']['releases'][-1]['version']} ({len(manifest['recipe']['releases'])} releases), "
        f"{manifest['commits']} commits, {manifest['distinct_blob_bytes'] / 1e6:.0f} MB of distinct blobs, "
        f"pack {manifest['pack_bytes'] / 2**20:.0f} MiB, tree {manifest['tree_files']} files / "
        f"{manifest['tree_bytes'] / 1e6:.0f} MB, head {manifest['head'][:12]}. "
        f"Machine: {os.cpu_count()} cores, load average {before['loadavg']} at start, {after['loadavg']} at end. "
        f"Rounds: history {args.rounds_history}, tree {args.rounds_tree}, staged {args.rounds_staged} "
        f"(interleaved, after one uncounted warm-up round). Peers: "
        f"{'all rules' if args.all_rules else 'Anthropic rules only where the tool has them'}."
    )
    md = markdown(rows, header)
    result = {
        "version": 1, "started": started, "seconds": round(time.monotonic() - t0, 1),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "before": before, "after": after},
        "corpus": {k: manifest[k] for k in ("head", "commits", "distinct_blob_bytes", "pack_bytes", "tree_files",
                                            "tree_bytes")} | {"recipe": manifest["recipe"]["command"]},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
        "markdown": md,
    }
    stamp = started.replace(":", "").replace("-", "")
    (args.out / f"scan-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "scan-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "scan-latest.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
