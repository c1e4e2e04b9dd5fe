"""CLI command ``engine-check``: fluidopt's policies against vLLM's own scheduler and inside it, step by step."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from fluidopt.cli.common import add_json_option, format_table, print_json
from fluidopt.errors import require

POLICY_CHOICES = ("vllm-v1", "wait", "nested-wait", "wait-cp", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``engine-check``."""
    p = subparsers.add_parser(
        "engine-check",
        help="check fluidopt's vllm-v1 policy against vLLM's own scheduler, and WAIT / Nested WAIT / WAIT-CP "
        "inside vLLM against the simulator, step by step (needs .[engine])",
        description="Drive vLLM's V1 Scheduler (its CPU build suffices; pip install -e '.[engine]') with a stand-in "
        "model on random seeded scenarios.  vllm-v1: vLLM's own scheduler against fluidopt's vllm-v1 policy on the "
        "same requests and knobs.  wait, nested-wait, wait-cp: fluidopt's scheduler classes for vLLM "
        "(fluidopt.engines.vllm) against the simulated policy.  Per scenario: the share of identical steps, the first "
        "differing step with both sides' decisions, the step and preemption counts.  --engine-runs adds whole-engine "
        "runs (vllm.LLM on the CPU).  Exits 1 when anything differs.",
    )
    p.add_argument("engine", choices=("vllm",), help="the engine whose scheduler is checked")
    p.add_argument("--scenarios", type=int, default=20, help="seeded scenarios per policy (default 20)")
    p.add_argument("--seed", type=int, default=0, help="root seed of the scenarios")
    p.add_argument("--policy", choices=POLICY_CHOICES, default="all", help="which check (default all)")
    p.add_argument(
        "--engine-runs", type=int, default=0, help="whole-engine runs of vLLM's scheduler (5-20 s each; default 0)"
    )
    add_json_option(p)
    p.set_defaults(handler=cmd_engine_check)


def cmd_engine_check(args: argparse.Namespace) -> int:
    """Run the checks and print the comparison."""
    from fluidopt.engines.vllm_parity import engine_check, prepare_model_dir

    require(1 <= args.scenarios <= 10_000, "--scenarios", args.scenarios, "must be in 1..10000")
    require(0 <= args.engine_runs <= 100, "--engine-runs", args.engine_runs, "must be in 0..100")
    policies = POLICY_CHOICES[:-1] if args.policy == "all" else (args.policy,)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        workdir = prepare_model_dir(Path(folder))
        for policy in policies:
            if policy == "vllm-v1":
                results[policy] = engine_check(args.scenarios, args.seed, workdir)
            else:
                from fluidopt.engines.policy_parity import policy_check

                results[policy] = policy_check(policy, args.scenarios, args.seed, workdir)
        runs: list[dict[str, Any]] = []
        if args.engine_runs:
            from fluidopt.engines.engine_runs import engine_run_check

            runs = engine_run_check(args.engine_runs, args.seed, workdir)
    passed = all(_identical(r) for rows in results.values() for r in rows) and all(_identical(r) for r in runs)
    if args.json:
        print_json(
            {
                "engine": args.engine,
                "seed": args.seed,
                "scenarios": results.get("vllm-v1", []),
                "policies": {k: v for k, v in results.items() if k != "vllm-v1"},
                "engine_runs": runs,
                "identical": passed,
            }
        )
        return 0 if passed else 1
    for policy, rows in results.items():
        _print_policy(policy, rows)
    if runs:
        _print_engine_runs(runs)
    for policy, rows in results.items():
        identical = sum(_identical(r) for r in rows)
        side = "vLLM's scheduler vs fluidopt" if policy == "vllm-v1" else "inside vLLM vs simulated"
        print(f"{policy} ({side}): {identical} of {len(rows)} scenarios identical at every step and request")
    if runs:
        print(f"whole engine: {sum(_identical(r) for r in runs)} of {len(runs)} runs identical at every step")
    return 0 if passed else 1


def _print_policy(policy: str, rows: list[dict[str, Any]]) -> None:
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
                str(row.get("requests_differing", 0)),
            )
        )
    print(f"== {policy}")
    headers = [
        "scenario",
        "requests",
        "steps vLLM / ours",
        "preemptions",
        "identical steps",
        "first diff",
        "requests off",
    ]
    print(format_table(headers, table))
    for i, row in enumerate(rows):
        first = row["first_difference"]
        if first is not None:
            vllm_side, ours = _decision(first["vllm"]), _decision(first["fluidopt"])
            print(f"scenario {i}, step {first['step']}: vLLM {vllm_side}; fluidopt {ours}")
        request = row.get("first_request_difference")
        if request is not None:
            print(
                f"scenario {i}, request {request['request']} (first token s, last token s, preemptions): "
                f"vLLM {request['vllm']}; fluidopt {request['fluidopt']}"
            )


def _print_engine_runs(runs: list[dict[str, Any]]) -> None:
    table = [
        (
            str(i),
            str(r["requests"]),
            f"{r['steps_vllm']} / {r['steps_fluidopt']}",
            f"{r['preemptions_vllm']} / {r['preemptions_fluidopt']}",
            f"{100 * r['identical_step_share']:.1f}%",
            f"{r['metric_steps']} / {r['metric_preemptions']}",
        )
        for i, r in enumerate(runs)
    ]
    print("== whole engine (vllm.LLM on the CPU, every request at once; its scheduler logging each step)")
    headers = ["run", "requests", "steps vLLM / ours", "preemptions", "identical steps", "vLLM metrics"]
    print(format_table(headers, table))


def _identical(row: dict[str, Any]) -> bool:
    same_steps = row["identical_step_share"] == 1.0 and row["preemptions_vllm"] == row["preemptions_fluidopt"]
    return same_steps and not row.get("requests_differing")


def _decision(step: dict[str, Any] | None) -> str:
    if step is None:
        return "no step (finished)"
    return f"{step['batch']} requests, {step['tokens']} tokens, {step['preempted']} preempted"
