"""Rotation benchmark: wall time of a whole rotation (plan -> done) for 1 and for 20 targets.

    python bench/rotate_bench.py [--rounds 5] [--cloud]

Each round mints an old and a new key in FakeAnthropic (loopback), fills the targets with the
old key, stages the new one, and times a full rotation with grace 0 and archive delay 0, so
every step runs: plan, create, verify-new, update, verify-deploy, grace, revoke (Admin API
inactive + 401 confirmed), archive, done. Two ways:

- library: `keyvault.rotate.engine.rotate()` in this process (backends and HTTP client warm
  after the first round);
- cli: `python -m keyvault rotate --non-interactive` as a fresh process, what a scheduled job
  pays (interpreter start, imports, one encrypted-store unlock).

Targets: `1` is one .env file; `20` is 10 .env files and 10 entries of the encrypted file
store, alternating (each write to the store re-encrypts and fsyncs the whole file). With
--cloud, a third set of 5 targets spans OpenBao, moto_server, the fake GCP, .env and the
store (servers started here, on loopback).

The figures are medians over the rounds, with per-step medians from the engine's timings.
Writes bench/out/rotate-<time>.json and bench/out/rotate-latest.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PASSPHRASE = "rotate bench (not a secret)"


def make_targets(tmp: Path, count: int, old: Any, cloud: dict[str, Any] | None = None) -> list[str]:
    from keyvault.backends import open_backend

    uris: list[str] = []
    if cloud is not None:
        name = uuid.uuid4().hex[:10]
        cloud["openbao"].client().secrets.kv.v2.create_or_update_secret(
            path=f"bench/{name}", secret={"api_key": old.reveal()}, mount_point="secret")
        uris.append(f"vault://secret/bench/{name}#api_key")
        cloud["moto"].client().create_secret(Name=f"bench/{name}", SecretString=old.reveal())
        uris.append(f"aws-sm://bench/{name}?region={cloud['moto'].region}")
        cloud["gcp"].create_secret("bench", f"k-{name}", old.reveal())
        uris.append(cloud["gcp"].source("bench", f"k-{name}", transport="rest"))
        count = 2
    for i in range(count):
        if i % 2 == 0:
            d = tmp / f"app{i}"
            d.mkdir()
            (d / ".env").write_text(f"ANTHROPIC_API_KEY={old.reveal()}\n")
            uris.append(f"dotenv://{d / '.env'}#ANTHROPIC_API_KEY")
        else:
            uri = f"file://{tmp / 'store'}#entry{i}"
            b = open_backend(uri)
            b.stage(old)
            b.promote("")
            uris.append(uri)
    return uris


def write_policy(tmp: Path, uris: list[str]) -> Path:
    lines = ['[rotation]', 'grace = "0"', 'archive_delay = "0"', '[environments.prod]']
    for uri in uris:
        lines += ["[[environments.prod.targets]]", f'source = "{uri}"']
    path = tmp / "rotation.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_round(fake: Any, count: int, mode: str, cloud: dict[str, Any] | None) -> dict[str, Any]:
    from keyvault.backends import open_backend
    from keyvault.policy import load_policy
    from keyvault.rotate.engine import Options, rotate

    with tempfile.TemporaryDirectory(prefix="rotate-bench-") as d:
        tmp = Path(d)
        old, new = fake.mint_key("bench-old"), fake.mint_key("bench-new")
        uris = make_targets(tmp, count, old.secret, cloud)
        policy_path = write_policy(tmp, uris)
        open_backend(uris[0]).stage(new.secret)
        before = len(fake.requests)
        if mode == "library":
            started = time.perf_counter()
            result = rotate(load_policy(policy_path), Options())
            seconds = time.perf_counter() - started
            assert result.phase == "done", result.summary
            steps = result.timings
        else:
            env = dict(os.environ)
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "keyvault", "rotate", "--policy", str(policy_path),
                                   "--non-interactive", "--format", "json"], env=env, cwd=tmp,
                                  capture_output=True, stdin=subprocess.DEVNULL)
            seconds = time.perf_counter() - started
            assert proc.returncode == 0, proc.stderr.decode()[-500:]
            steps = json.loads(proc.stdout)["timings"]
        for uri in uris:
            assert open_backend(uri).read().secret == new.secret
        assert fake.key(old.id).status == "archived"
        return {"seconds": seconds, "steps": steps, "requests": len(fake.requests) - before}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    steps: dict[str, list[float]] = {}
    for r in rounds:
        for step, value in r["steps"].items():
            steps.setdefault(step, []).append(value)
    return {
        "median_s": statistics.median(r["seconds"] for r in rounds),
        "min_s": min(r["seconds"] for r in rounds),
        "max_s": max(r["seconds"] for r in rounds),
        "api_requests": statistics.median(r["requests"] for r in rounds),
        "steps_median_s": {k: statistics.median(v) for k, v in steps.items()},
        "rounds": len(rounds),
    }


def start_cloud() -> dict[str, Any]:
    from keyvault.testing.fake_gcp import FakeSecretManager
    from keyvault.testing.servers import start_moto_server, start_openbao

    bao, moto = start_openbao(), start_moto_server()
    gcp = FakeSecretManager().start()
    os.environ.update(bao.env())
    os.environ.update(moto.env())
    return {"openbao": bao, "moto": moto, "gcp": gcp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cloud", action="store_true", help="also time 5 targets across OpenBao, moto, fake GCP")
    args = parser.parse_args()

    from keyvault.testing.fake_anthropic import FakeAnthropic

    os.environ["KEYVAULT_PASSPHRASE"] = PASSPHRASE
    for name in ("KEYVAULT_CRASH_AT", "KEYVAULT_CRASH_TRACE", "KEYVAULT_POLICY"):
        os.environ.pop(name, None)
    cloud = start_cloud() if args.cloud else None
    results: dict[str, Any] = {}
    try:
        with FakeAnthropic() as fake:
            os.environ["ANTHROPIC_BASE_URL"] = fake.base_url
            os.environ["ANTHROPIC_ADMIN_KEY"] = fake.admin_key.reveal()
            one_round(fake, 1, "library", None)  # warm-up: imports, first TLS context, scrypt
            sets = [("1 target", 1, None), ("20 targets", 20, None)]
            if cloud:
                sets.append(("5 targets, every backend", 5, cloud))
            for label, count, extra in sets:
                for mode in ("library", "cli"):
                    rounds = [one_round(fake, count, mode, extra) for _ in range(args.rounds)]
                    results[f"{label} / {mode}"] = summarise(rounds)
    finally:
        if cloud:
            cloud["openbao"].stop()
            cloud["moto"].stop()
            cloud["gcp"].stop()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_1min": load, "rounds": args.rounds, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    lines = ["# Rotation wall time (plan -> done, grace 0, archive delay 0)", "",
             f"Python {meta['python']}, {meta['cpus']} CPUs, load {load:.1f}, {args.rounds} rounds, median (min-max).", "",
             "| targets / how | wall time | API requests | slowest steps |", "|---|---|---|---|"]
    for label, s in results.items():
        top = sorted(s["steps_median_s"].items(), key=lambda kv: -kv[1])[:3]
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in top)
        lines.append(f"| {label} | {s['median_s']:.2f} s ({s['min_s']:.2f}-{s['max_s']:.2f}) | {s['api_requests']:.0f} | {steps} |")
    report = "\n".join(lines) + "\n"
    print(report)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    payload = {"meta": meta, "results": results}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"rotate-{stamp}.json").write_text(json.dumps(payload, indent=2))
    (out / "rotate-latest.json").write_text(json.dumps(payload, indent=2))
    (out / "rotate-latest.md").write_text(report)


if __name__ == "__main__":
    main()
