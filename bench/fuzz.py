"""The long fuzz run: every target in tests/fuzz_targets.py under hypothesis, and optionally under
atheris (coverage-guided, libFuzzer), with figures: executions, time, failures.

    python bench/fuzz.py                         # 20000 hypothesis examples per target
    python bench/fuzz.py --examples 100000 --targets parse_key,audit_verify
    python bench/fuzz.py --atheris 120           # plus 120 s of atheris per target (pip install atheris)

Writes bench/out/fuzz.json. Exit 1 if any target found a failing input (printed, shrunk).
The same checks run as a bounded slice in `python -m pytest tests/test_fuzz.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ATHERIS_TEXT = {"parse_key", "parse_source", "redact"}
ATHERIS_BYTES = {"audit_verify", "baseline", "scan_bytes"}  # structured targets: hypothesis only


def run_hypothesis(name: str, examples: int) -> dict[str, object]:
    from hypothesis import HealthCheck, Phase, given, settings

    from tests import fuzz_targets as ft

    check, strategy = ft.TARGETS[name]
    count = 0

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate, Phase.shrink])
    @given(strategy)
    def run(data: object) -> None:
        nonlocal count
        count += 1
        check(data)

    start = time.perf_counter()
    failure = None
    try:
        run()
    except Exception as exc:  # a falsified property: report it, go on with the other targets
        failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    seconds = time.perf_counter() - start
    return {"engine": "hypothesis", "target": name, "executions": count, "seconds": round(seconds, 2),
            "per_second": round(count / seconds, 1) if seconds else None, "failure": failure}


def atheris_child(name: str, argv: list[str]) -> None:
    """Runs in its own process: atheris owns the process and exits when done."""
    import atheris

    with atheris.instrument_imports():
        import keyvault.audit  # noqa: F401
        import keyvault.backends  # noqa: F401
        import keyvault.keys  # noqa: F401
        import keyvault.redact  # noqa: F401
        import keyvault.scan.baseline  # noqa: F401
        import keyvault.scan.decode  # noqa: F401
        import keyvault.scan.detect  # noqa: F401
        import keyvault.scan.engine  # noqa: F401
    from tests import fuzz_targets as ft

    check = ft.TARGETS[name][0]
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))

    def one_input(data: bytes) -> None:
        if name in ATHERIS_TEXT:
            fdp = atheris.FuzzedDataProvider(data)
            check(fdp.ConsumeUnicodeNoSurrogates(len(data)))
        elif name == "scan_bytes":
            check(data)
        else:
            check(data, tmp)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def run_atheris(name: str, seconds: int) -> dict[str, object]:
    args = [sys.executable, __file__, "--atheris-child", name, f"-max_total_time={seconds}", "-print_final_stats=1",
            "-max_len=4096"]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    count = int(m.group(1)) if m else 0
    failure = None
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-12:]
        failure = "\n".join(tail)
    return {"engine": "atheris", "target": name, "executions": count, "seconds": round(elapsed, 2),
            "per_second": round(count / elapsed, 1) if elapsed else None, "failure": failure}


def main() -> int:
    import logging

    logging.getLogger("dotenv").setLevel(logging.ERROR)  # "could not parse statement": expected here
    if len(sys.argv) > 2 and sys.argv[1] == "--atheris-child":
        atheris_child(sys.argv[2], sys.argv[3:])
        return 0
    from tests import fuzz_targets as ft

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20000, help="hypothesis examples per target")
    parser.add_argument("--targets", default=",".join(ft.TARGETS), help="comma-separated: " + ", ".join(ft.TARGETS))
    parser.add_argument("--atheris", type=int, default=0, metavar="SECONDS", help="atheris time per target (0: off)")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in ft.TARGETS]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    results = []
    for name in names:
        results.append(run_hypothesis(name, args.examples))
        print(_row(results[-1]), flush=True)
        if args.atheris and name in ATHERIS_TEXT | ATHERIS_BYTES:
            try:
                import atheris  # noqa: F401
            except ImportError:
                print("atheris is not installed (pip install atheris): skipped", file=sys.stderr)
                args.atheris = 0
            else:
                results.append(run_atheris(name, args.atheris))
                print(_row(results[-1]), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))
    failed = [r for r in results if r["failure"]]
    for r in failed:
        print(f"\nFAILED {r['engine']} {r['target']}:\n{r['failure']}")
    total = sum(int(r["executions"]) for r in results)  # type: ignore[call-overload]
    print(f"\n{total} executions, {len(failed)} failing target(s); figures in {out / 'fuzz.json'}")
    return 1 if failed else 0


def _row(r: dict[str, object]) -> str:
    status = "FAIL" if r["failure"] else "ok"
    return f"{r['engine']:<10} {r['target']:<14} {r['executions']:>9} execs {r['seconds']:>8} s " \
           f"{r['per_second']:>9}/s  {status}"


if __name__ == "__main__":
    sys.exit(main())
