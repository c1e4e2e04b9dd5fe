"""CLI command ``engine-check``: fluidopt's engine policy against the engine's own scheduler, step by step."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fluidopt.cli.common import add_json_option, format_table, print_json
from fluidopt.errors import require


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``engine-check``."""
    p = subparsers.add_parser(
        "engine-check",
        help="compare the vllm-v1 policy with vLLM's own scheduler step by step on seeded scenarios (needs .[engine])",
        description="Drive vLLM's V1 Scheduler (its CPU build suffices; pip install -e '.[engine]') with a stand-in "
        "model on random seeded scenarios and run the same requests and knobs through fluidopt's vllm-v1 policy; "
        "print per scenario the share of identical steps, the first differing step and the step and preemption "
        "counts.  Exits 1 when a scenario differs anywhere.",
    )
    p.add_argument("engine", choices=("vllm",), help="the engine whose scheduler is checked")
    p.add_argument("--scenarios", type=int, default=20, help="seeded scenarios (default 20)")
    p.add_argument("--seed", type=int, default=0, help="root seed of the scenarios")
    add_json_option(p)
    p.set_defaults(handler=cmd_engine_check)


def cmd_engine_check(args: argparse.Namespace) -> int:
    """Run the scenarios and print the comparison."""
    from fluidopt.engines.vllm_parity import engine_check

    require(1 <= args.scenarios <= 10_000, "--scenarios", args.scenarios, "must be in 1..10000")
    with tempfile.TemporaryDirectory() as folder:
        rows = engine_check(args.scenarios, args.seed, Path(folder))
    if args.json:
        print_json({"engine": args.engine, "seed": args.seed, "scenarios": rows})
        return 0 if all(_identical(r) for r in rows) else 1
    table = []
    for i, row in enumerate(rows):
        first = row["first_difference"]
        table.append(
            (
                str(i),
                str(row["requests"]),
                f"{row['steps_vllm']} / {row['steps_fluidopt']}",
                f"{row['preemptions_vllm']} / {row['preemptions_fluidopt']}",
                f"{100 * row['identical_step_share']:.1f}%",
                "" if first is None else str(first["step"]),
            )
        )
    headers = ["scenario", "requests", "steps vLLM / ours", "preemptions", "identical steps", "first diff"]
    print(format_table(headers, table))
    for i, row in enumerate(rows):
        first = row["first_difference"]
        if first is not None:
            vllm_side, ours = _decision(first["vllm"]), _decision(first["fluidopt"])
            print(f"scenario {i}, step {first['step']}: vLLM {vllm_side}; fluidopt {ours}")
    identical = sum(_identical(r) for r in rows)
    print(f"{identical} of {len(rows)} scenarios identical at every step")
    return 0 if identical == len(rows) else 1


def _identical(row: dict) -> bool:
    return row["identical_step_share"] == 1.0 and row["preemptions_vllm"] == row["preemptions_fluidopt"]


def _decision(step: dict | None) -> str:
    if step is None:
        return "no step (finished)"
    return f"{step['batch']} requests, {step['tokens']} tokens, {step['preempted']} preempted"
