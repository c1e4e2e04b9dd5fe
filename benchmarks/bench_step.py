"""Cost of one step function call per timing kind, on the same random batches (no scheduling around it).

The simulator's speed with a kind depends on the kind's step cost and on the dynamics its step
times produce; this isolates the first.  A compiled loop calls each kind's step function (the one
the kernel calls) on 200,000 random batches of 1-256 decodes at 16-4,096 cached tokens, with a
prefill chunk of 16-2,048 tokens on 0-4,096 cached ones in half of them, and prints nanoseconds
per step and the ratio to the measured kind.  The engine-grid profile needs ../shared's tables.

    python benchmarks/bench_step.py [--batches 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

import fluidopt as fo
from fluidopt.timing.fit.engine_tables import profile_for_run
from fluidopt.timing.registry import compiled_step_functions, kind_index

TABLES = Path(__file__).resolve().parents[2] / "shared/data/llmservingsim/profiles"


@njit(cache=False)
def run_steps(step, tcoef, ttable, prefill, decodes, decode_kv, chunks, cached):
    total = 0.0
    one_chunk = np.zeros(1, dtype=np.int64)
    one_cached = np.zeros(1, dtype=np.int64)
    for i in range(prefill.size):
        n_prefill = 1 if prefill[i] > 0 else 0
        one_chunk[0] = chunks[i]
        one_cached[0] = cached[i]
        kv = prefill[i] + cached[i] * n_prefill + decode_kv[i] + decodes[i]
        total += step(
            tcoef,
            ttable,
            kv,
            prefill[i],
            decodes[i],
            decode_kv[i],
            decodes[i] + n_prefill,
            n_prefill,
            one_chunk,
            one_cached,
        )
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.batches
    with_prefill = rng.random(n) < 0.5
    chunks = np.where(with_prefill, rng.integers(16, 2049, n), 0).astype(np.int64)
    cached = np.where(with_prefill, rng.integers(0, 4097, n), 0).astype(np.int64)
    decodes = rng.integers(1, 257, n).astype(np.int64)
    decode_kv = (decodes * rng.integers(16, 4097, n)).astype(np.int64)
    profiles = {
        "measured": fo.preset_profile("rtx4090-llama-3.1-8b-vllm"),
        "affine": fo.preset_profile("a100-80gb-llama-3-8b"),
        "vidur-predictor": fo.preset_profile("a100-80gb-llama-3-8b-vidur-predictor"),
        "roofline (dense)": fo.preset_profile("h100-80gb-llama-3-8b-tp1-roofline"),
        "roofline (MoE, TP2)": fo.preset_profile("h100-80gb-mixtral-8x7b-tp2-roofline"),
    }
    if TABLES.is_dir():
        profiles["engine-grid"], _ = profile_for_run(TABLES / "RTX4090/meta-llama/Llama-3.1-8B", gpu="rtx4090")
    else:
        print("../shared/data is not beside the checkout: no engine-grid profile", file=sys.stderr)
    steps = compiled_step_functions()
    cost = {}
    for name, profile in profiles.items():
        step = steps[kind_index(profile.timing)]
        tcoef, ttable = profile.timing.kernel_arrays()
        run_steps(step, tcoef, ttable, chunks[:10], decodes[:10], decode_kv[:10], chunks[:10], cached[:10])
        best = np.inf
        for _ in range(3):
            started = time.perf_counter()
            run_steps(step, tcoef, ttable, chunks, decodes, decode_kv, chunks, cached)
            best = min(best, time.perf_counter() - started)
        cost[name] = 1e9 * best / n
    for name, ns in cost.items():
        print(f"{name:22s} {ns:7.1f} ns per step  ({cost['measured'] / ns:.2f} x the measured kind's speed)")


if __name__ == "__main__":
    main()
