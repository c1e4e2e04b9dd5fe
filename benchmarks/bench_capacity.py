"""Wall time of the capacity of every default policy for one workload (target < 3 minutes on 2 cores).

python benchmarks/bench_capacity.py
"""

from __future__ import annotations

import time

from fluidopt import preset_profile, preset_workload
from fluidopt.answers.capacity import CAPACITY_POLICIES, capacity
from fluidopt.experiments.evaluate import Targets
from fluidopt.experiments.sweep import ProcessExecutor


def main() -> None:
    for workload_name, profile_name in (("p512d20", "a100-80gb-llama-3-8b-vidur"),):
        start = time.perf_counter()
        result = capacity(
            preset_workload(workload_name),
            preset_profile(profile_name),
            targets=Targets(p99_latency_s=2.0),
            executor=ProcessExecutor(),
        )
        elapsed = time.perf_counter() - start
        rates = ", ".join(
            f"{name} {entry.max_rate_per_s:.2f}" + ("" if entry.status == "ok" else f" ({entry.status})")
            for name, entry in result.policies.items()
        )
        print(
            f"capacity of {len(CAPACITY_POLICIES)} policies, {workload_name} on {profile_name}: {elapsed:.1f} s "
            f"(target 180 s, ratio {elapsed / 180:.2f}); fluid limit {result.fluid_max_rate_per_s:.2f}; {rates}"
        )


if __name__ == "__main__":
    main()
