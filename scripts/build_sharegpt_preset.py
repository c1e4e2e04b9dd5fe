"""Build the `sharegpt-like` workload preset from the RTX 4090 vLLM run's 300 ShareGPT requests.

    python scripts/build_sharegpt_preset.py [--run ../shared/data/llmservingsim/runs/RTX4090/Llama-3.1-8B]

Classes are four equal-count bins of the output length; each class carries its mean prompt and
mean output length (the fluid model needs only those), the shares of the bins at the run's rate,
and the output cap a chat client sends (`max_new_tokens` 2048), so that the lengths are unknown to
the scheduler.  Only these summary numbers are embedded (LLMServingSim, CASYS Lab at KAIST, MIT).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fluidopt.answers.replay import read_vllm_run
from fluidopt.tomlio import write_toml

MAX_NEW_TOKENS = 2048
BINS = 4


def main() -> None:
    here = Path(__file__).resolve()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default=str(here.parents[2] / "shared/data/llmservingsim/runs/RTX4090/Llama-3.1-8B"))
    parser.add_argument("--out", default=str(here.parents[1] / "fluidopt/data/workloads/sharegpt-like.toml"))
    args = parser.parse_args()
    run = read_vllm_run(args.run)
    rate = (run.num_requests - 1) / float(run.arrival_s[-1])
    order = np.argsort(run.output_tokens, kind="stable")
    classes = []
    for part in np.array_split(order, BINS):
        outputs, prompts = run.output_tokens[part], run.prompt_tokens[part]
        classes.append(
            {
                "name": f"output-{int(outputs.min())}-{int(outputs.max())}",
                "prefill_tokens": int(round(prompts.mean())),
                "decode_tokens": int(round(outputs.mean())),
                "rate_per_s": round(rate * part.size / run.num_requests, 4),
                "max_new_tokens": max(MAX_NEW_TOKENS, int(outputs.max())),
            }
        )
    description = (
        f"ShareGPT-like chat mix from the {run.num_requests} requests of the RTX 4090 vLLM 0.19 run in "
        "LLMServingSim's shared data (CASYS Lab at KAIST, MIT licence): four equal-count bins of the output "
        "length, each with its mean prompt and output, at the run's rate "
        f"({rate:.3g} requests/s); max_new_tokens {MAX_NEW_TOKENS} (a chat client's cap: lengths unknown)."
    )
    write_toml(args.out, {"name": "sharegpt-like", "description": description, "classes": classes})
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{c['name']} l={c['prefill_tokens']} l'={c['decode_tokens']}" for c in classes)
    )


if __name__ == "__main__":
    main()
