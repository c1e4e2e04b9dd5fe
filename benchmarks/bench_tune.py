"""Wall time of tuning one (profile, workload, rate) case with default settings on 2 cores.

Targets: the theory's WAIT / Nested WAIT < 60 s; the chunked family (kappa x chunk size from the
fluid model, issue 10) < 30 s.

python benchmarks/bench_tune.py
"""

from __future__ import annotations

import time

from fluidopt import preset_profile, preset_workload
from fluidopt.experiments.sweep import ProcessExecutor
from fluidopt.experiments.tune import tune


def _settings(policy) -> str:
    if hasattr(policy, "tl"):
        return f"tl {policy.tl}, cs {policy.chunk_tokens}"
    return str(list(policy.thresholds))


def main() -> None:
    cases = [
        ("p512d20", 22.0, "a100-80gb-llama-3-8b", "auto", 60),
        ("mix-p512d20-p512d50", 20.0, "a100-80gb-llama-3-8b", "auto", 60),
        ("p512d20", 18.0, "a100-80gb-llama-3-8b-vidur", "wait-cp", 30),
        ("mix-p512d20-p512d50", 18.0, "a100-80gb-llama-3-8b-vidur", "chunked", 30),
    ]
    for workload_name, rate, profile_name, family, target in cases:
        start = time.perf_counter()
        result = tune(
            preset_workload(workload_name).with_total_rate(rate),
            preset_profile(profile_name),
            family=family,
            executor=ProcessExecutor(),
        )
        elapsed = time.perf_counter() - start
        chosen = result.chosen or result.best_found
        print(
            f"tune {family} {workload_name} at {rate}/s on {profile_name}: {elapsed:.1f} s (target {target} s, "
            f"ratio {elapsed / target:.2f}); chosen {chosen.policy.name} {_settings(chosen.policy)}, mean latency "
            f"{chosen.mean('mean_latency_s'):.3f} s"
        )


if __name__ == "__main__":
    main()
