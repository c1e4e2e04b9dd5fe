"""Speed with the measured (attention-aware) timing model: simulator and fixed-point equilibrium.

Targets (issue 9): >= 300,000 simulated requests/s for Sarathi and WAIT-CP on p512d20 at 90 % of
the fluid limit (10^6 requests, Vidur preset), and the fixed-point equilibrium < 5 ms per rate.

    python benchmarks/bench_measured.py [--requests 1000000] [--profile a100-80gb-llama-3-8b-vidur-predictor]

``--profile`` runs the same numbers on another timing kind (e.g. Vidur's predictor) or a profile
TOML (e.g. an MoE profile written by ``fluidopt profile fit --format llmservingsim``).
"""

from __future__ import annotations

import argparse
import time

import fluidopt as fo
from fluidopt.fluid.fixed_point import solve_fixed_point
from fluidopt.sim import SarathiPolicy, simulate
from fluidopt.thresholds.chunked import wait_cp_thresholds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--profile", default="a100-80gb-llama-3-8b-vidur")
    args = parser.parse_args()
    profile = fo.load_profile(args.profile)  # a preset name or a profile TOML
    print(f"{profile.name} ({getattr(profile, 'timing_kind', 'measured')} timing)")
    base = fo.preset_workload("p512d20")
    limit = fo.max_stable_scale(base, profile).max_rate_per_s
    workload = base.with_total_rate(0.9 * limit)
    started = time.perf_counter()
    for _ in range(200):
        solve_fixed_point(workload, profile)
    per_rate = (time.perf_counter() - started) / 200
    print(f"fluid limit {limit:.3f} requests/s; fixed-point equilibrium {1e3 * per_rate:.3f} ms per rate (target 5)")
    design = wait_cp_thresholds(workload, profile, conventions="fluidopt")
    simulate(workload, profile, SarathiPolicy(), requests=2000, rng=0)  # compile
    for name, policy in (("sarathi", SarathiPolicy()), ("wait-cp", design.policy())):
        result = simulate(workload, profile, policy, requests=args.requests, rng=1)
        speed = result.simulated_requests_per_wall_s
        print(
            f"{name:8s} {args.requests} requests in {result.wall_time_s:.2f} s: {speed:,.0f} requests/s "
            f"({speed / 300_000:.2f} x the 300,000 target)"
        )


if __name__ == "__main__":
    main()
