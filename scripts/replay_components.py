"""What each timing component contributes to the replay error of the shared vLLM runs.

For each run in ../shared/data/llmservingsim (RTX 4090 Llama-3.1-8B, RTX PRO 6000 Qwen3-32B TP2)
the replay is repeated with one component of the composed step time changed at a time, and the
relative errors of mean and p90 TTFT, TPOT and E2E against vLLM's own measurements are printed.
No coefficient is tuned: every variant is built from the same tables.

    python scripts/replay_components.py [--data ../shared/data/llmservingsim]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

from fluidopt.answers.replay import read_vllm_run, replay
from fluidopt.cli.common import format_table
from fluidopt.timing.fit.engine_tables import (
    PER_LAYER_CALLS,
    engine_profile,
    profile_for_run,
    read_interconnect,
    read_llmservingsim_profile,
    vllm_kv_capacity_tokens,
)

RUNS = (
    ("RTX4090/Llama-3.1-8B", "RTX4090/meta-llama/Llama-3.1-8B", 25_250_627_584),
    ("RTXPRO6000/Qwen3-32B", "RTXPRO6000/Qwen/Qwen3-32B", None),
)
KEYS = (("ttft", "mean"), ("tpot", "mean"), ("e2e", "mean"), ("ttft", "p90"), ("tpot", "p90"), ("e2e", "p90"))


def errors(run, profile) -> list[str]:
    result = replay(run, profile)
    found = {(r["metric"], r["statistic"]): r["fluidopt_error"] for r in result.rows}
    return [f"{100 * found[k]:+.1f}%" if math.isfinite(found[k]) else "" for k in KEYS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/llmservingsim"))
    args = parser.parse_args()
    data = Path(args.data)
    for run_name, tables_name, memory in RUNS:
        run_dir, tables_dir = data / "runs" / run_name, data / "profiles" / tables_name
        run = read_vllm_run(run_dir)
        composed, _ = profile_for_run(tables_dir, run_dir)
        timing = composed.timing
        rows = [("composed (measured attention grid)", *errors(run, composed))]
        tables = read_llmservingsim_profile(tables_dir, run.engine_kwargs.get("tensor_parallel_size"))
        if tables.tensor_parallel > 1:
            alone, _ = engine_profile(
                tables, interconnect=read_interconnect(run_dir), kv_capacity_tokens=composed.kv_capacity_tokens
            )
            # The same tables without the all-reduces: rebuild with an infinitely fast link.
            from fluidopt.timing.fit.engine_tables import Interconnect

            free_link, _ = engine_profile(
                tables, interconnect=Interconnect(1e30, 0.0), kv_capacity_tokens=composed.kv_capacity_tokens
            )
            rows.append(("no tensor-parallel all-reduce", *errors(run, free_link)))
        fitted, _ = profile_for_run(tables_dir, run_dir, attention="fit")
        rows.append(("attention as parametric fits (measured kind)", *errors(run, fitted)))
        no_cache = replace(run, kv_cache={**run.kv_cache, "enable_prefix_caching": False})
        rows.append(("no prefix cache on recompute", *errors(no_cache, composed)))
        no_head = replace(composed, timing=replace(timing, per_sequence_s=(0.0,) * len(timing.knots_tokens)))
        rows.append(("no LM head / sampler", *errors(run, no_head)))
        one_norm = dict(PER_LAYER_CALLS)
        one_norm["layernorm"] = 1
        norms = replace(tables, dense={k: v for k, v in tables.dense.items()})
        import fluidopt.timing.fit.engine_tables as module

        saved = module.PER_LAYER_CALLS
        module.PER_LAYER_CALLS = one_norm
        try:
            single, _ = engine_profile(
                norms, interconnect=read_interconnect(run_dir), kv_capacity_tokens=composed.kv_capacity_tokens
            )
        finally:
            module.PER_LAYER_CALLS = saved
        rows.append(("one RMSNorm per layer (not two)", *errors(run, single)))
        rows.append(("affine surrogate (2 pieces)", *errors(run, replace(composed, timing=None))))
        if memory is not None and run.kv_capacity_tokens:
            rule = vllm_kv_capacity_tokens(
                tables.model_shape, memory, max_num_batched_tokens=int(run.engine_kwargs["max_num_batched_tokens"])
            )
            rows.append(
                (
                    f"KV from vLLM's rule ({rule} not {run.kv_capacity_tokens})",
                    *errors(run, replace(composed, kv_capacity_tokens=rule)),
                )
            )
        print(f"{run_name} ({run.num_requests} requests), relative error against vLLM")
        print(format_table(["variant", *[f"{m} {s}" for m, s in KEYS]], rows))
        print()


if __name__ == "__main__":
    main()
