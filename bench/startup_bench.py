"""Start-up benchmark: what `keyvault.get_api_key()` costs an application.

    python bench/startup_bench.py [--rounds 30] [--threads 8] [--trials 20]

1. Start-up: `python -c 'import keyvault; keyvault.get_api_key()'` with ANTHROPIC_API_KEY set,
   against bare `python -c pass` (and `python -c 'import keyvault'`), each a fresh process,
   interleaved round by round; the figure is the median of the per-round differences (the
   machine is shared and drifts; differences within a round cancel most of that). Target:
   under 10 ms above bare Python.
2. What the start-up path imports: `-X importtime` (median over runs, heaviest first), the
   modules added beyond bare Python, and whether any of the modules `import keyvault` must
   never load (cloud SDKs, anthropic, httpx) was loaded.
3. Cached `get_api_key()`: per-call time by timeit, best of several repeats. Target: < 5 us.
4. Concurrent first use: N threads released together on a barrier call `get_api_key()` on a
   fresh source whose backend takes 50 ms to answer and counts its reads. The backend is a
   third-party plug-in registered through the documented entry-point group
   (`keyvault.backends`), not a patch of keyvault's code. Target: exactly one backend call.

Each measurement runs in fresh subprocesses of the same interpreter, from an empty directory
(no pyproject.toml, keyvault.toml or .env to discover), with KEYVAULT_SOURCE unset.
Writes bench/out/startup-<time>.json and bench/out/startup-latest.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
# Modules `import keyvault` + resolving from the environment must never load.
FORBIDDEN = ("boto3", "botocore", "hvac", "google", "grpc", "anthropic", "httpx", "cryptography", "dotenv")


def bench_key() -> str:
    """A well-formed, never-real API key from the seeded generator (bench only)."""
    sys.path.insert(0, str(ROOT))
    from keyvault.testing.keygen import make_key

    return make_key(rng=random.Random("keyvault-bench:startup")).reveal()  # type: ignore[arg-type]


def child_env(key: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYVAULT_", "PYTHON"))}
    env["ANTHROPIC_API_KEY"] = key
    env.update(extra or {})
    return env


def wall(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        # The child's stderr is keyvault's own error line (hints only, never a value).
        raise SystemExit(f"startup_bench: {argv[1:]} failed (exit {p.returncode}): {p.stderr.decode()[-500:]}")
    return elapsed


# --- 1. start-up -------------------------------------------------------------------------------

STARTUP = {
    "bare": "pass",
    "import": "import keyvault",
    "resolve": "import keyvault; keyvault.get_api_key()",
}


def startup(rounds: int, cwd: str, env: dict[str, str]) -> dict[str, Any]:
    times: dict[str, list[float]] = {k: [] for k in STARTUP}
    names = list(STARTUP)
    for name in names:  # warm-up: page cache, .pyc files
        wall([PY, "-c", STARTUP[name]], cwd, env)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]  # alternate the order: no position bias
        for name in order:
            times[name].append(wall([PY, "-c", STARTUP[name]], cwd, env))
    out: dict[str, Any] = {"rounds": rounds}
    for name, ts in times.items():
        out[name] = {"median_ms": statistics.median(ts) * 1e3, "best_ms": min(ts) * 1e3,
                     "p90_ms": sorted(ts)[int(0.9 * (len(ts) - 1))] * 1e3}
    for name in ("import", "resolve"):
        diffs = [a - b for a, b in zip(times[name], times["bare"])]
        out[f"{name}_minus_bare"] = {
            "median_of_differences_ms": statistics.median(diffs) * 1e3,
            "difference_of_medians_ms": (statistics.median(times[name]) - statistics.median(times["bare"])) * 1e3,
            "difference_of_bests_ms": (min(times[name]) - min(times["bare"])) * 1e3,
        }
    return out


# --- 2. imports --------------------------------------------------------------------------------


INPROCESS = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import keyvault
    t1 = time.perf_counter()
    keyvault.get_api_key()
    t2 = time.perf_counter()
    keyvault.get_api_key()
    t3 = time.perf_counter()
    print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
""")


def imports(runs: int, cwd: str, env: dict[str, str]) -> dict[str, Any]:
    code = STARTUP["resolve"]
    # -X importtime sees only `import` statements, not importlib.import_module (which
    # keyvault's lazy attributes use), so the timed code names keyvault.resolve itself.
    timed_code = "import keyvault, keyvault.resolve; keyvault.get_api_key()"
    splits = []
    for _ in range(runs):
        p = subprocess.run([PY, "-c", INPROCESS], cwd=cwd, env=env, capture_output=True, text=True, check=True)
        splits.append(json.loads(p.stdout))
    probe = ("import sys; before = set(sys.modules); " + code +
             "; added = sorted(set(sys.modules) - before); import json; print(json.dumps(added))")
    p = subprocess.run([PY, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    added: list[str] = json.loads(p.stdout)
    cumulative: dict[str, list[int]] = {}
    self_us: dict[str, list[int]] = {}
    for _ in range(runs):
        p = subprocess.run([PY, "-X", "importtime", "-c", timed_code], cwd=cwd, env=env, capture_output=True, text=True,
                           check=True)
        for line in p.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            fields = line[len("import time:"):].split("|")
            if len(fields) != 3:
                continue
            name = fields[2].strip()
            self_us.setdefault(name, []).append(int(fields[0]))
            cumulative.setdefault(name, []).append(int(fields[1]))
    rows = sorted(
        ({"module": m, "cumulative_us": statistics.median(cumulative[m]), "self_us": statistics.median(self_us[m])}
         for m in cumulative),
        key=lambda r: -r["cumulative_us"],
    )
    top_level_keyvault = next((r for r in rows if r["module"] == "keyvault"), None)
    loaded_forbidden = sorted({m for m in added if m.split(".")[0] in FORBIDDEN})
    return {
        "code": code,
        "in_process_ms": {
            # best of the runs: on a shared machine preemption only ever adds time
            "import_keyvault": min(x[0] for x in splits) * 1e3,
            "first_get_api_key": min(x[1] for x in splits) * 1e3,
            "second_get_api_key": min(x[2] for x in splits) * 1e3,
        },
        "modules_added": added,
        "forbidden_loaded": loaded_forbidden,
        "keyvault_cumulative_us": top_level_keyvault and top_level_keyvault["cumulative_us"],
        # Only what keyvault adds: site, .pth files and the editable-install finder run in bare
        # Python too, and are in both sides of the start-up difference.
        "heaviest": [r for r in rows if r["module"] in added][:15],
    }


# --- 3. cached call ----------------------------------------------------------------------------

CACHED = textwrap.dedent("""
    import json, timeit
    import keyvault
    keyvault.get_api_key()
    t = timeit.Timer("get_api_key()", globals={"get_api_key": keyvault.get_api_key})
    n = 200_000
    best = min(t.repeat(repeat=7, number=n)) / n
    print(json.dumps({"per_call_us": best * 1e6, "number": n, "repeat": 7}))
""")


def cached(cwd: str, env: dict[str, str]) -> dict[str, Any]:
    p = subprocess.run([PY, "-c", CACHED], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


# --- 4. concurrent first use -------------------------------------------------------------------

PLUGIN = textwrap.dedent('''
    """A keyvault backend plug-in for the benchmark: answers after a delay and counts reads."""
    from __future__ import annotations

    import threading
    import time

    from keyvault.backends import ReadOnlyBackend, Source, Version
    from keyvault.keys import Secret

    READS: dict[str, int] = {}
    _lock = threading.Lock()
    DELAY = 0.05
    VALUE = ""


    class CountingBackend(ReadOnlyBackend):
        read_only_reason = "the benchmark's counting backend is read-only"

        def __init__(self, source: Source) -> None:
            self.source = source

        def read(self) -> Version:
            with _lock:
                READS[self.source.uri] = READS.get(self.source.uri, 0) + 1
            time.sleep(DELAY)  # a network round trip: the window in which other threads arrive
            return Version(Secret(VALUE), "1")

        def versions(self):
            return []
''')

THREADS = textwrap.dedent("""
    import json, os, sys, threading
    import bench_counting_backend as plugin
    import keyvault

    plugin.VALUE = os.environ["BENCH_KEY"]
    n_threads, trials = int(sys.argv[1]), int(sys.argv[2])
    results = []
    for trial in range(trials):
        uri = f"bench-count://trial-{trial}"
        barrier = threading.Barrier(n_threads)
        got, errors = [], []

        def worker():
            barrier.wait()
            try:
                got.append(keyvault.get_api_key(uri).fingerprint)
            except Exception as exc:  # reported as a failure of the trial, by type only
                errors.append(type(exc).__name__)

        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.append({"reads": plugin.READS.get(uri, 0), "answers": len(got),
                        "same_key": len(set(got)) == 1, "errors": errors})
    print(json.dumps(results))
""")


def concurrent(n_threads: int, trials: int, cwd: str, env: dict[str, str], key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as site:
        Path(site, "bench_counting_backend.py").write_text(PLUGIN)
        dist = Path(site, "keyvault_bench_counting-0.0.dist-info")
        dist.mkdir()
        dist.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: keyvault-bench-counting\nVersion: 0.0\n")
        dist.joinpath("entry_points.txt").write_text(
            "[keyvault.backends]\nbench-count = bench_counting_backend:CountingBackend\n"
        )
        env = {**env, "PYTHONPATH": site, "BENCH_KEY": key}
        p = subprocess.run([PY, "-c", THREADS, str(n_threads), str(trials)], cwd=cwd, env=env, capture_output=True,
                           text=True)
        if p.returncode != 0:
            return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    results = json.loads(p.stdout)
    reads = [r["reads"] for r in results]
    return {
        "threads": n_threads, "trials": trials, "backend_delay_ms": 50,
        "reads_per_trial": reads,
        "all_exactly_one": all(r == 1 for r in reads),
        "all_answered_same_key": all(r["same_key"] and r["answers"] == n_threads for r in results),
        "errors": sorted({e for r in results for e in r["errors"]}),
    }


# --- report ------------------------------------------------------------------------------------


def markdown(res: dict[str, Any]) -> str:
    s, imp, c, th = res["startup"], res["imports"], res["cached"], res["concurrent"]
    lines = [
        f"## keyvault start-up benchmark, {res['started']}",
        "",
        f"Python {res['machine']['python']}, {res['machine']['cores']} cores, load average "
        f"{res['machine']['loadavg_before']} at start, {res['machine']['loadavg_after']} at end. "
        f"{s['rounds']} interleaved rounds, each command a fresh process, from an empty directory.",
        "",
        "| command | median ms | best ms | p90 ms | above bare python, ms (median of per-round differences) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, code in STARTUP.items():
        r = s[name]
        extra = f"{s[f'{name}_minus_bare']['median_of_differences_ms']:+.1f}" if name != "bare" else "-"
        lines.append(f"| `python -c '{code}'` | {r['median_ms']:.1f} | {r['best_ms']:.1f} | {r['p90_ms']:.1f} | {extra} |")
    d = s["resolve_minus_bare"]["median_of_differences_ms"]
    lines += [
        "",
        f"Start-up cost of import + resolve from env: **{d:.1f} ms** above bare `python -c pass` "
        f"(target < 10 ms: {'met' if d < 10 else 'NOT met'}; difference of medians "
        f"{s['resolve_minus_bare']['difference_of_medians_ms']:.1f} ms, of bests "
        f"{s['resolve_minus_bare']['difference_of_bests_ms']:.1f} ms).",
        "",
        "In-process split (perf_counter, best of runs): `import keyvault` "
        f"{imp['in_process_ms']['import_keyvault']:.2f} ms, first `get_api_key()` (loads keyvault.resolve, reads "
        f"the environment, validates) {imp['in_process_ms']['first_get_api_key']:.2f} ms, second "
        f"{imp['in_process_ms']['second_get_api_key'] * 1e3:.1f} us.",
        "",
        f"Modules loaded beyond bare Python by `{imp['code']}`: {len(imp['modules_added'])} "
        f"({', '.join(imp['modules_added'])}).",
        f"Forbidden modules loaded: {', '.join(imp['forbidden_loaded']) or 'none'}.",
        "",
        "Imports keyvault adds, heaviest first (`-X importtime`, median of runs):",
        "",
        "| module | cumulative us | self us |",
        "|---|---:|---:|",
        *(f"| {r['module']} | {r['cumulative_us']:.0f} | {r['self_us']:.0f} |" for r in imp["heaviest"]),
        "",
        f"Cached `get_api_key()`: **{c['per_call_us']:.3f} us** a call (timeit, best of {c['repeat']} x "
        f"{c['number']}; target < 5 us: {'met' if c['per_call_us'] < 5 else 'NOT met'}).",
        "",
    ]
    if "error" in th:
        lines.append(f"Concurrent first use: could not run ({th['error']}).")
    else:
        lines.append(
            f"Concurrent first use: {th['threads']} threads on a barrier, backend answering after "
            f"{th['backend_delay_ms']} ms, {th['trials']} trials: backend reads per trial "
            f"{sorted(set(th['reads_per_trial']))} -> "
            f"{'exactly one read every time' if th['all_exactly_one'] else 'MORE THAN ONE READ'}; "
            f"every thread got the same key: {th['all_answered_same_key']}"
            + (f"; errors: {', '.join(th['errors'])}" if th["errors"] else "") + "."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30, help="interleaved start-up rounds (default 30)")
    ap.add_argument("--importtime-runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    key = bench_key()
    env = child_env(key)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as cwd:
        res: dict[str, Any] = {"version": 1, "started": started}
        res["startup"] = startup(args.rounds, cwd, env)
        res["imports"] = imports(args.importtime_runs, cwd, env)
        res["cached"] = cached(cwd, env)
        res["concurrent"] = concurrent(args.threads, args.trials, cwd, env, key)
    res["machine"] = {"python": platform.python_version(), "executable": PY, "cores": os.cpu_count(),
                      "loadavg_before": load_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    md = markdown(res)
    res["markdown"] = md
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.replace(":", "").replace("-", "")
    for name in (f"startup-{stamp}.json", "startup-latest.json"):
        (args.out / name).write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "startup-latest.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
