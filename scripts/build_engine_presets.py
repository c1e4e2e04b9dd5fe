"""Regenerate the engine-measured presets in fluidopt/data/profiles from LLMServingSim's tables.

Run from the repository root with ../shared/data present:

    python scripts/build_engine_presets.py [--data ../shared/data/llmservingsim]

Each preset composes one engine step from the per-operator tables measured through vLLM 0.19
(fluidopt.timing.fit.engine_tables) and takes its KV capacity and interconnect from the matching vLLM run.
Only fitted numbers are embedded; the tables stay in ../shared/data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fluidopt.timing.fit.engine_tables import profile_for_run
from fluidopt.tomlio import write_toml

PRESETS = {
    "rtx4090-llama-3.1-8b-vllm": ("profiles/RTX4090/meta-llama/Llama-3.1-8B", "runs/RTX4090/Llama-3.1-8B"),
    "rtx-pro-6000-qwen3-32b-tp2-vllm": ("profiles/RTXPRO6000/Qwen/Qwen3-32B", "runs/RTXPRO6000/Qwen3-32B"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/llmservingsim"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "fluidopt/data/profiles"))
    args = parser.parse_args()
    for name, (tables, run) in PRESETS.items():
        profile, quality = profile_for_run(Path(args.data) / tables, Path(args.data) / run, name=name, attention="fit")
        path = write_toml(Path(args.out) / f"{name}.toml", profile.to_dict())
        worst = max(quality.values(), key=lambda q: q.mape)
        print(
            f"{path}: KV {profile.kv_capacity_tokens} tokens; "
            f"largest component MAPE {worst.name} {100 * worst.mape:.1f}%"
        )


if __name__ == "__main__":
    main()
