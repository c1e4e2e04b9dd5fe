"""Convert an LLMServingSim run folder into fluidopt's plain run format (requests.csv + engine.toml).

python scripts/to_plain_run.py ../shared/data/llmservingsim/runs/RTX4090/Llama-3.1-8B my-run --gpu rtx4090
"""

from __future__ import annotations

import argparse

from fluidopt.answers.replay import read_vllm_run
from fluidopt.answers.run_format import write_plain_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an LLMServingSim run folder")
    parser.add_argument("out", help="the new plain-format folder")
    parser.add_argument("--gpu", help="the GPU's fluidopt name (fluidopt/data/gpus.toml) for engine.toml")
    args = parser.parse_args()
    print(f"wrote {write_plain_run(read_vllm_run(args.run), args.out, gpu=args.gpu)}")


if __name__ == "__main__":
    main()
