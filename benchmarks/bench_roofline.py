"""Speed of the roofline kind: building a profile, and the simulator against the measured kind.

Targets (issue 24): a roofline profile in < 1 s; the simulator's requests/s with the roofline
(dense and mixture-of-experts) at least that of the measured kind, on the same workload at 90 %
of each profile's fluid limit.

    python benchmarks/bench_roofline.py [--requests 500000]
"""

from __future__ import annotations

import argparse
import time

import fluidopt as fo
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.sim import SarathiPolicy, VLLMV1Policy, simulate
from fluidopt.timing.fit.engine_tables import Parallelism
from fluidopt.timing.fit.roofline import roofline_profile

PROFILES = (
    "a100-80gb-llama-3-8b-vidur",  # measured kind: the reference
    "h100-80gb-llama-3-8b-tp1-roofline",
    "h100-80gb-mixtral-8x7b-tp2-roofline",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500_000)
    args = parser.parse_args()
    started = time.perf_counter()
    for _ in range(20):
        roofline_profile(gpu_spec("h100-80gb"), model_shape("mixtral-8x7b"), Parallelism(2))
    build = (time.perf_counter() - started) / 20
    print(f"roofline profile (Mixtral-8x7B, 2 x H100) built in {1e3 * build:.2f} ms (target < 1,000 ms)")
    base = fo.preset_workload("p512d20")
    speeds: dict[tuple[str, str], float] = {}
    for name in PROFILES:
        profile = fo.preset_profile(name)
        workload = base.with_total_rate(0.9 * fo.max_stable_scale(base, profile).max_rate_per_s)
        simulate(workload, profile, SarathiPolicy(), requests=2000, rng=0)  # compile
        for label, policy in (("sarathi", SarathiPolicy()), ("vllm-v1", VLLMV1Policy())):
            result = simulate(workload, profile, policy, requests=args.requests, rng=1)
            speeds[(name, label)] = result.simulated_requests_per_wall_s
    for name in PROFILES[1:]:
        for label in ("sarathi", "vllm-v1"):
            ratio = speeds[(name, label)] / speeds[(PROFILES[0], label)]
            print(
                f"{name:38s} {label:8s} {speeds[(name, label)]:>10,.0f} requests/s; "
                f"{ratio:.2f} x the measured kind ({speeds[(PROFILES[0], label)]:,.0f})"
            )


if __name__ == "__main__":
    main()
