"""Recommended vs default vs grid-best engine settings over profiles, workloads and loads.

    python scripts/recommend_table.py [--requests 3000] [--replicates 3]

For the RTX 4090 engine-measured preset and the attention-aware A100 preset, the p512d20 workload
(known lengths) and the ShareGPT-like mix (unknown lengths, max_new_tokens 2048), at 70, 85 and
95 % of the fluid limit, and for vLLM V1 and SGLang: mean latency with its 95 % interval and p99
of the fluid-derived setting, the engine's defaults and the best of the grid; the gap of the
fluid-derived setting to the grid's best; retractions (SGLang: derived conservativeness against
the default 1.0); and the compute time of the derivation against the grid's simulations.
"""

from __future__ import annotations

import argparse

from fluidopt import max_stable_scale, preset_profile, preset_workload
from fluidopt.answers.recommend import recommend
from fluidopt.cli.common import format_table

PROFILES = ("rtx4090-llama-3.1-8b-vllm", "a100-80gb-llama-3-8b-vidur")
WORKLOADS = ("p512d20", "sharegpt-like")
FRACTIONS = (0.7, 0.85, 0.95)


def cell(evaluation) -> str:
    if evaluation is None:
        return ""
    low, high = evaluation.interval("mean_latency_s")
    flag = "" if evaluation.stable else " U"
    return (
        f"{evaluation.mean('mean_latency_s'):.3g} [{low:.3g},{high:.3g}] {evaluation.mean('p99_latency_s'):.3g}{flag}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--replicates", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for profile_name in PROFILES:
        profile = preset_profile(profile_name)
        for workload_name in WORKLOADS:
            base = preset_workload(workload_name)
            limit = max_stable_scale(base, profile).max_rate_per_s
            for fraction in FRACTIONS:
                for engine in ("vllm", "sglang"):
                    result = recommend(
                        engine,
                        base.with_total_rate(fraction * limit),
                        profile,
                        replicates=args.replicates,
                        requests=args.requests,
                    )
                    e = result.evaluations
                    fluid, default, grid = e.get("fluid-derived"), e.get("engine defaults"), e.get("grid best")
                    gap = (
                        f"{100 * (fluid.mean('mean_latency_s') / grid.mean('mean_latency_s') - 1):+.0f}%"
                        if fluid is not None and grid is not None
                        else ""
                    )
                    retract = (
                        f"{fluid.mean('evictions'):.0f}/{default.mean('evictions'):.0f}"
                        if fluid is not None and default is not None
                        else ""
                    )
                    rows.append(
                        (
                            profile_name.split("-")[0],
                            workload_name[:8],
                            f"{fraction:.2f}",
                            engine,
                            cell(fluid),
                            cell(default),
                            cell(grid),
                            gap,
                            retract,
                            result.source.split()[0],
                            f"{result.compute_time_s:.2f}/{result.grid_time_s:.1f}",
                        )
                    )
                    print(" | ".join(rows[-1]), flush=True)
    print()
    print("mean E2E s [95% interval] p99 s; U = unstable; gap = fluid-derived vs grid best; preempt = fluid/default")
    print(
        format_table(
            [
                "GPU",
                "workload",
                "load",
                "engine",
                "fluid-derived",
                "defaults",
                "grid best",
                "gap",
                "preempt",
                "handed out",
                "derive/grid s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
