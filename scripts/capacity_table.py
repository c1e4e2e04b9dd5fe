"""Capacity table of every policy on the paper's workloads (issue: compare with the paper's numbers).

python scripts/capacity_table.py [--p99-latency-s 2]
"""

from __future__ import annotations

import argparse
import time

from fluidopt import preset_profile, preset_workload
from fluidopt.answers.capacity import capacity
from fluidopt.experiments.evaluate import Targets
from fluidopt.experiments.sweep import ProcessExecutor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--p99-latency-s", type=float, help="target for p512d20 and the mix")
    parser.add_argument("--long-p99-latency-s", type=float, help="target for p512d1000")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    for profile in ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b"):
        for workload in ("p512d20", "mix-p512d20-p512d50", "p512d1000"):
            start = time.perf_counter()
            limit = args.long_p99_latency_s if workload == "p512d1000" else args.p99_latency_s
            targets = Targets(p99_latency_s=limit)
            result = capacity(
                preset_workload(workload),
                preset_profile(profile),
                targets=targets,
                requests=args.requests,
                executor=ProcessExecutor(),
            )
            rates = "  ".join(f"{k} {v.max_rate_per_s:5.2f}" for k, v in result.policies.items())
            print(
                f"{profile:22s} {workload:20s} p99<={limit} fluid {result.fluid_max_rate_per_s:5.2f} | {rates} "
                f"({time.perf_counter() - start:.0f} s)"
            )


if __name__ == "__main__":
    main()
