"""Time of one `fluidopt recommend` case (target: under 10 s on the 2-core CI machine).

    python benchmarks/bench_recommend.py

p512d20 at 85 % of the fluid limit on the RTX 4090 engine-measured preset, both engines, the
command's defaults (3 replicates of 3,000 requests): the derivation from the fluid model against
the simulations (defaults, grid, fresh seeds, the two maximum-rate searches), and the whole call.
"""

from __future__ import annotations

import time

from fluidopt import max_stable_scale, preset_profile, preset_workload
from fluidopt.answers.recommend import recommend

TARGET_S = 10.0


def main() -> None:
    profile = preset_profile("rtx4090-llama-3.1-8b-vllm")
    base = preset_workload("p512d20")
    workload = base.with_total_rate(0.85 * max_stable_scale(base, profile).max_rate_per_s)
    recommend("vllm", workload, profile, replicates=2, requests=500)  # load the compiled kernel
    for engine in ("vllm", "sglang"):
        started = time.perf_counter()
        result = recommend(engine, workload, profile)
        total = time.perf_counter() - started
        print(
            f"{engine:<7} whole call {total:6.2f} s (target {TARGET_S:g} s, ratio {total / TARGET_S:4.2f}); "
            f"derivation {result.compute_time_s:.3f} s, defaults + grid simulations {result.grid_time_s:.2f} s; "
            f"handed out: {result.source}"
        )


if __name__ == "__main__":
    main()
