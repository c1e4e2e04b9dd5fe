"""Simulator speed of the engine policies (vllm-v1, sglang) on p512d20 at 90 % of the fluid limit.

Target (issue "The schedulers users run"): >= 300,000 simulated requests/s for each, 10^6
requests, on the 2-core CI machine, with the affine A100 Llama-2-7B preset and the
attention-aware A100 Llama-3-8B preset.

    python benchmarks/bench_engines.py [--requests 1000000]
"""

from __future__ import annotations

import argparse

from fluidopt import max_stable_scale, preset_profile, preset_workload
from fluidopt.sim import SGLangPolicy, VLLMV1Policy, simulate

TARGET = 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
    for profile_name in ("a100-80gb-llama-2-7b", "a100-80gb-llama-3-8b-vidur"):
        profile = preset_profile(profile_name)
        base = preset_workload("p512d20")
        limit = max_stable_scale(base, profile).max_rate_per_s
        workload = base.with_total_rate(0.9 * limit)
        print(f"{profile_name}: p512d20 at {workload.total_rate_per_s:.2f} requests/s (90% of {limit:.2f})")
        for policy in (VLLMV1Policy(), SGLangPolicy()):
            simulate(workload, profile, policy, requests=1000, rng=0)  # load the compiled kernel
            result = simulate(workload, profile, policy, requests=args.requests, rng=1)
            speed = result.simulated_requests_per_wall_s
            print(
                f"  {policy.name:<8} {speed:>12,.0f} requests/s  target {TARGET:,}  ratio {speed / TARGET:5.2f}  "
                f"mean latency {result.mean_latency_s:.3f} s  preemptions {result.evictions}  {result.status}"
            )


if __name__ == "__main__":
    main()
