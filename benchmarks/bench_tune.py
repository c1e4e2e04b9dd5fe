"""Wall time of tuning one (profile, workload, rate) case with default settings (target < 60 s on 2 cores).

python benchmarks/bench_tune.py
"""

from __future__ import annotations

import time

from fluidopt import preset_profile, preset_workload
from fluidopt.experiments.sweep import ProcessExecutor
from fluidopt.experiments.tune import tune


def main() -> None:
    cases = [("p512d20", 22.0, "a100-80gb-llama-3-8b"), ("mix-p512d20-p512d50", 20.0, "a100-80gb-llama-3-8b")]
    for workload_name, rate, profile_name in cases:
        start = time.perf_counter()
        result = tune(
            preset_workload(workload_name).with_total_rate(rate),
            preset_profile(profile_name),
            executor=ProcessExecutor(),
        )
        elapsed = time.perf_counter() - start
        chosen = result.chosen
        print(
            f"tune {workload_name} at {rate}/s on {profile_name}: {elapsed:.1f} s (target 60 s, ratio "
            f"{elapsed / 60:.2f}); chosen {chosen.policy.name} {list(chosen.policy.thresholds)}, mean latency "
            f"{chosen.mean('mean_latency_s'):.3f} s"
        )


if __name__ == "__main__":
    main()
