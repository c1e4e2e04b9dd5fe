"""Simulator speed on p512d20 at 90% of the fluid limit, 10^6 requests per policy.

Targets (issue): wait and nested-wait >= 200,000 simulated requests/s; vllm and sarathi >=
20,000 requests/s, on the 2-core CI machine.  Prints requests/s, the ratio to the target and the
request slots the run allocated (memory follows requests in the system, not requests simulated).

    python benchmarks/bench_sim.py [--requests 1000000] [--profile a100-80gb-llama-2-7b]
"""

from __future__ import annotations

import argparse
import time

from fluidopt import max_stable_scale, preset_profile, preset_workload
from fluidopt.sim import NestedWaitPolicy, SarathiPolicy, VLLMPolicy, WaitPolicy, simulate
from fluidopt.thresholds import nested_wait_thresholds, wait_thresholds

TARGETS = {"wait": 200_000, "nested-wait": 200_000, "vllm": 20_000, "sarathi": 20_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--profile", default="a100-80gb-llama-2-7b")
    args = parser.parse_args()
    profile = preset_profile(args.profile)
    base = preset_workload("p512d20")
    limit = max_stable_scale(base, profile).max_rate_per_s
    workload = base.with_total_rate(0.9 * limit)
    wait = wait_thresholds(workload, profile)
    nested = nested_wait_thresholds(workload, profile)
    policies = {
        "wait": WaitPolicy(wait.thresholds),
        "nested-wait": NestedWaitPolicy(nested.segments.boundaries, nested.thresholds),
        "vllm": VLLMPolicy(),
        "sarathi": SarathiPolicy(),
    }
    print(
        f"p512d20 at {workload.total_rate_per_s:.2f} requests/s (90% of the fluid limit {limit:.2f}) on "
        f"{profile.name}, {args.requests:,} requests"
    )
    for name, policy in policies.items():
        simulate(workload, profile, policy, requests=1000, rng=0)  # load the compiled kernel
        start = time.perf_counter()
        result = simulate(workload, profile, policy, requests=args.requests, rng=1)
        elapsed = time.perf_counter() - start
        speed = args.requests / elapsed
        print(
            f"{name:<12} {speed:>12,.0f} requests/s  target {TARGETS[name]:>8,}  ratio {speed / TARGETS[name]:6.2f}"
            f"  slots {result.state_slots:>6}  mean latency {result.mean_latency_s:.3f} s  "
            f"unfinished {result.unfinished_requests}"
        )


if __name__ == "__main__":
    main()
