#!/usr/bin/env python3
"""`netc.Crossbar.infer` on 10,000 vectors of a 128×64 passive array (2.5 Ω segments) against the
same call in Rust (`benches/infer_call.rs`), medians of 21 rounds per side, printed as ratios
(target: Python within 1.5× of Rust).

    python3 benches/python_infer.py [--rust-bench PATH] [--repeats 3]

PATH is the built Rust bench (default: `cargo bench --bench infer_call --no-run` builds it and
this script finds it). Both sides run alternately `--repeats` times; the medians over all rounds
are compared. Cases: an existing array (T built) into fresh outputs / into kept outputs (`out=`),
and a new array from scratch (`Crossbar(g, r_wire=2.5).infer(v)`: network, T, product).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

import netc

REPO = pathlib.Path(__file__).resolve().parents[1]
K, R, C = int(os.environ.get("XBAR_VECTORS", "10000")), 128, 64


def rust_bench_path() -> str:
    p = subprocess.run(
        ["cargo", "bench", "--bench", "infer_call", "--no-run", "--message-format=json"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    for line in p.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "infer_call":
            if msg.get("executable"):
                return msg["executable"]
    sys.exit("could not find the infer_call bench executable")


def rust_round(exe: str) -> dict:
    p = subprocess.run([exe], capture_output=True, text=True, check=True, env={**os.environ, "XBAR_VECTORS": str(K)})
    out = {}
    for line in p.stdout.splitlines():
        name, med, _ = line.split()
        out[name] = float(med.split("=")[1])
    return out


def python_round() -> dict:
    rng = np.random.default_rng(7)
    g = rng.uniform(1e-6, 1e-4, (R, C))
    v = rng.uniform(0.0, 0.5, (K, R))
    built = netc.Crossbar(g, r_wire=2.5)
    built.effective_weights()
    kept = np.empty((K, C))
    times = {"built_fresh": [], "built_kept": [], "scratch": []}
    for _ in range(21):
        t0 = time.perf_counter()
        out = built.infer(v)
        times["built_fresh"].append(time.perf_counter() - t0)
        del out
        t0 = time.perf_counter()
        built.infer(v, out=kept)
        times["built_kept"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = netc.Crossbar(g, r_wire=2.5).infer(v)
        times["scratch"].append(time.perf_counter() - t0)
    return {k: statistics.median(t) for k, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust-bench")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = a.rust_bench or rust_bench_path()
    rust, py = [], []
    for _ in range(a.repeats):
        rust.append(rust_round(exe))
        py.append(python_round())
    print(f"{K} vectors through a {R}×{C} passive array (2.5 Ω), medians over {a.repeats} × 21 rounds")
    print(f"{'case':<14}{'Rust (ms)':>12}{'Python (ms)':>14}{'Python/Rust':>14}")
    worst = 0.0
    for case in ["built_fresh", "built_kept", "scratch"]:
        r = statistics.median(x[case] for x in rust)
        p = statistics.median(x[case] for x in py)
        worst = max(worst, p / r)
        print(f"{case:<14}{1e3 * r:>12.3f}{1e3 * p:>14.3f}{p / r:>14.2f}")
    print(f"worst ratio {worst:.2f} (target ≤ 1.5)")


if __name__ == "__main__":
    main()
