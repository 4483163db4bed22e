"""Resolution latency from each server backend on loopback: first call and cached.

Starts OpenBao, moto_server (separate process) and the fake GCP Secret Manager, stores one key
in each, then for each source runs fresh Python processes that measure:

- first: `keyvault.get_api_key(source)` in a new process: SDK import + client + one request
  (`import keyvault` itself is measured apart and not included);
- warm: `keyvault.refresh(source)` with the client already built: one backend round trip;
- cached: `keyvault.get_api_key(source)` served from the in-process cache.

    python bench/cloud_latency.py [--runs 5]

Prints a table and writes bench/out/cloud_latency.json. Servers run on 127.0.0.1 only and are
stopped by their own handles at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import keyvault
t1 = time.perf_counter()
source = sys.argv[1]
key = keyvault.get_api_key(source)
t2 = time.perf_counter()
warm = []
for _ in range(20):
    a = time.perf_counter(); keyvault.refresh(source); warm.append(time.perf_counter() - a)
n = 200000
a = time.perf_counter()
for _ in range(n):
    keyvault.get_api_key(source)
cached = (time.perf_counter() - a) / n
warm.sort()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3,
                  "warm_ms": warm[len(warm) // 2] * 1e3, "cached_us": cached * 1e6, "fp": key.fingerprint}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from keyvault.testing.fake_gcp import FakeSecretManager
    from keyvault.testing.keygen import make_key
    from keyvault.testing.servers import start_moto_server, start_openbao

    key = make_key()
    tag = uuid.uuid4().hex[:8]
    results: dict[str, dict[str, float]] = {}
    with start_openbao() as bao, start_moto_server() as moto, FakeSecretManager() as gcp:
        bao.client().secrets.kv.v2.create_or_update_secret(
            path=f"bench/{tag}", secret={"api_key": key.reveal()}, mount_point="secret")
        moto.client().create_secret(Name=f"bench/{tag}", SecretString=key.reveal())
        gcp.create_secret("bench", tag, key.reveal(), aliases={"current": 1})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_", "KEYVAULT_"))}
        env.update(moto.env())
        env.update(bao.env())
        sources = {
            "aws-sm (moto_server)": f"aws-sm://bench/{tag}",
            "vault (OpenBao)": f"vault://secret/bench/{tag}#api_key",
            "gcp-sm grpc (fake)": gcp.source("bench", tag, "grpc"),
            "gcp-sm rest (fake)": gcp.source("bench", tag, "rest"),
        }
        for label, source in sources.items():
            runs = []
            for _ in range(args.runs):
                done = subprocess.run([sys.executable, "-c", CHILD, source], env=env, capture_output=True,
                                      text=True, timeout=120)
                if done.returncode != 0:
                    raise SystemExit(f"{label}: {done.stderr[-2000:]}")
                row = json.loads(done.stdout)
                assert row.pop("fp") == key.fingerprint
                runs.append(row)
            results[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{'source':<24}{'import keyvault':>17}{'first call':>12}{'warm call':>11}{'cached':>10}")
    for label, r in results.items():
        print(f"{label:<24}{r['import_ms']:>14.1f} ms{r['first_ms']:>9.0f} ms{r['warm_ms']:>8.2f} ms{r['cached_us']:>7.2f} µs")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "cloud_latency.json").write_text(json.dumps({"runs": args.runs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
