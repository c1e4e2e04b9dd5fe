"""Speed of the roofline and engine-grid kinds: building a profile, and the simulator against the measured kind.

Targets (issue 24): a roofline profile in < 1 s; the simulator's requests/s with the roofline
(dense and mixture-of-experts) and engine-grid kinds at least that of the measured kind.  Each
comparison runs the same model on the same GPU at the same rate and KV capacity (90 % of the
measured profile's fluid limit on p512d20), so only the timing kind differs.  The measured and
engine-grid profiles come from ../shared's tables (skipped without them).

    python benchmarks/bench_roofline.py [--requests 500000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import fluidopt as fo
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.sim import SarathiPolicy, VLLMV1Policy, simulate
from fluidopt.timing.fit.engine_tables import Parallelism, profile_for_run
from fluidopt.timing.fit.roofline import roofline_profile

TABLES = Path(__file__).resolve().parents[2] / "shared/data/llmservingsim/profiles"
CASES = (  # tables, GPU, model
    ("RTX4090/meta-llama/Llama-3.1-8B", "rtx4090", "llama-3.1-8b"),
    ("RTXPRO6000/Qwen/Qwen3-30B-A3B-Instruct-2507", "rtx-pro-6000", "qwen3-30b-a3b"),
)


def speed(workload, profile, policy, requests: int) -> float:
    return simulate(workload, profile, policy, requests=requests, rng=1).simulated_requests_per_wall_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500_000)
    args = parser.parse_args()
    started = time.perf_counter()
    for _ in range(20):
        roofline_profile(gpu_spec("h100-80gb"), model_shape("mixtral-8x7b"), Parallelism(2))
    build = (time.perf_counter() - started) / 20
    print(f"roofline profile (Mixtral-8x7B, 2 x H100) built in {1e3 * build:.2f} ms (target < 1,000 ms)")
    if not TABLES.is_dir():
        print("../shared/data is not beside the checkout: no measured profile to compare the kinds with")
        return
    base = fo.preset_workload("p512d20")
    for folder, gpu, model in CASES:
        measured, _ = profile_for_run(TABLES / folder, tensor_parallel=1, gpu=gpu, attention="fit")
        grid, _ = profile_for_run(TABLES / folder, tensor_parallel=1, gpu=gpu)
        roof = roofline_profile(gpu_spec(gpu), model_shape(model), kv_capacity_tokens=measured.kv_capacity_tokens)
        workload = base.with_total_rate(0.9 * fo.max_stable_scale(base, measured).max_rate_per_s)
        for profile in (measured, grid, roof):
            simulate(workload, profile, SarathiPolicy(), requests=2000, rng=0)  # compile
        for label, policy in (("sarathi", SarathiPolicy()), ("vllm-v1", VLLMV1Policy())):
            reference = speed(workload, measured, policy, args.requests)
            print(f"{gpu} {model} {label}: measured {reference:,.0f} requests/s", end="")
            for kind, profile in (("engine-grid", grid), ("roofline", roof)):
                value = speed(workload, profile, policy, args.requests)
                print(f"; {kind} {value:,.0f} ({value / reference:.2f} x)", end="")
            print()


if __name__ == "__main__":
    main()
