"""CLI command ``recommend``: vLLM / SGLang settings from the fluid model, checked in the simulator."""

from __future__ import annotations

import argparse
import math

from fluidopt.cli.common import (
    add_json_option,
    add_profile_options,
    add_quiet_option,
    add_workload_options,
    format_table,
    print_json,
    profile_from_args,
    workload_from_args,
)
from fluidopt.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``recommend``."""
    p = subparsers.add_parser(
        "recommend",
        help="engine settings (vLLM V1, SGLang) from the fluid model, validated in the simulator",
        description="Derive max_num_seqs / max_num_batched_tokens / long_prefill_token_threshold (vLLM) or "
        "max_running_requests / chunked_prefill_size / max_prefill_tokens / schedule_conservativeness (SGLang) "
        "from the fluid model, simulate them against the engine's defaults and a grid over the same knobs, and "
        "print the best validated setting with a ready command line.",
    )
    p.add_argument("--engine", required=True, choices=("vllm", "sglang"), help="the serving engine")
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument("--p99-ttft-s", type=float, help="SLO: p99 time to first token (s)")
    p.add_argument("--p99-tpot-s", type=float, help="SLO: p99 time per output token (s)")
    p.add_argument("--p99-e2e-s", type=float, help="SLO: p99 end-to-end latency (s)")
    p.add_argument("--replicates", type=int, default=3, help="replicates per setting")
    p.add_argument("--requests", type=int, default=3000, help="requests per replicate")
    p.add_argument("--seed", type=int, default=0, help="root seed")
    p.add_argument("--model", default="MODEL", help="model name for the printed command line")
    add_json_option(p)
    add_quiet_option(p)
    p.set_defaults(handler=cmd_recommend)


def cmd_recommend(args: argparse.Namespace) -> int:
    """Recommend, validate and print."""
    from fluidopt.answers.recommend import recommend
    from fluidopt.experiments.runs import Targets

    for name in ("p99_ttft_s", "p99_tpot_s", "p99_e2e_s"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')}", value, "must be a finite number > 0")
    for name, low in (("replicates", 2), ("requests", 100), ("seed", 0)):
        if getattr(args, name) < low:
            raise InputError(f"--{name}", getattr(args, name), f"must be >= {low}")
    workload, profile = workload_from_args(args), profile_from_args(args)
    targets = Targets(p99_latency_s=args.p99_e2e_s, p99_ttft_s=args.p99_ttft_s, p99_tpot_s=args.p99_tpot_s)
    result = recommend(
        args.engine,
        workload,
        profile,
        targets=targets,
        replicates=args.replicates,
        requests=args.requests,
        seed=args.seed,
    )
    document = {**result.to_dict(), "command": result.command(args.model)}
    if args.engine == "vllm" and result.success:
        document["inside_vllm"] = _inside_vllm(args, workload, profile)
    if args.json:
        print_json(document)
        return 0
    print_recommendation(document)
    return 0


def _inside_vllm(args: argparse.Namespace, workload, profile) -> dict[str, str] | None:
    """The two lines that run the design's WAIT-CP inside vLLM: write its thresholds, then serve with them."""
    import shlex

    from fluidopt.engines.launch import serve_command
    from fluidopt.sim.policies import WaitCPPolicy
    from fluidopt.thresholds.chunked import wait_cp_thresholds

    try:
        design = wait_cp_thresholds(workload, profile, conventions="fluidopt")
    except InputError:  # no chunked equilibrium at this rate: nothing to run inside vLLM
        return None
    policy = WaitCPPolicy.from_document(design.to_dict(), "design")
    workload_spec = shlex.quote(str(getattr(args, "workload", None) or workload.name))
    profile_spec = shlex.quote(str(getattr(args, "profile", None) or profile.name))
    return {
        "thresholds_command": f"fluidopt thresholds -w {workload_spec} -p {profile_spec} "
        f"--rate {workload.total_rate_per_s:g} --policy wait-cp --out wait-cp.toml",
        "serve_command": serve_command(policy, workload, "wait-cp.toml", args.model),
    }


KNOB_LABELS = {
    "max_num_seqs": "seqs",
    "max_num_batched_tokens": "tokens",
    "long_prefill_token_threshold": "long prefill",
    "max_running_requests": "running",
    "chunked_prefill_size": "chunk",
    "max_prefill_tokens": "prefill tok",
    "schedule_conservativeness": "conserv.",
}


def print_recommendation(document: dict) -> None:
    """Print a recommendation from its JSON document: the status first, then the evidence."""
    import textwrap

    from fluidopt.cli.tables import TABLE_WIDTH

    def say(text: str, indent: str = "") -> None:
        print(textwrap.fill(text, TABLE_WIDTH, initial_indent=indent, subsequent_indent=indent + "  "))

    say(
        f"{document['engine']} on {document['profile']}, {document['workload']} at {document['rate_per_s']:.4g} "
        f"requests/s (fluid limit {document['fluid_max_rate_per_s']:.4g} requests/s); SLO: {document['targets']}"
    )
    say(f"status: {document['status']}: {document['message']}")
    if not document["recommended"]:
        return
    if document["success"]:
        say(f"recommended ({document['source']}):")
        print("  " + document["command"])
    else:
        say(f"no setting to hand out at this rate; the best one tried ({document['source']}) misses the SLO")
    say(
        f"largest rate meeting the SLO: {document['max_rate_recommended_per_s']:.4g} requests/s with the "
        f"{'recommended' if document['success'] else 'best'} setting, {document['max_rate_default_per_s']:.4g} with "
        "the engine's defaults"
    )
    low, high = document["gain_vs_default_ci_s"]
    say(
        f"mean-latency gain over the defaults on fresh seeds: {document['gain_vs_default_s']:+.3g} s, 95 % interval "
        f"[{low:+.3g}, {high:+.3g}] s"
    )
    say(f"engine defaults: {document['engine_defaults']}")
    if document.get("inside_vllm"):
        say("or run the paper's WAIT-CP inside vLLM (fluidopt.engines.vllm, README 'Run WAIT inside vLLM'):")
        print("  " + document["inside_vllm"]["thresholds_command"])
        print("  " + document["inside_vllm"]["serve_command"])
    print("\nfluid-derived settings and where each comes from:")
    for row in document["derivation"]:
        say(f"{row['knob']} = {row['value']}: {row['from']}", "  ")
    evaluations = {k: v for k, v in document["evaluations"].items() if v is not None}
    print()
    print(
        format_table(
            [
                "setting",
                "stable",
                "meets SLO",
                "mean E2E s",
                "95% low s",
                "95% high s",
                "p99 E2E s",
                "p99 TTFT s",
                "p99 TPOT ms",
            ],
            [
                (
                    label,
                    e["stable"],
                    e["meets_targets"],
                    e["mean_latency_s"],
                    e["mean_latency_ci_s"][0],
                    e["mean_latency_ci_s"][1],
                    e["p99_latency_s"],
                    e["p99_ttft_s"],
                    None if e["p99_tpot_s"] is None else 1e3 * e["p99_tpot_s"],
                )
                for label, e in evaluations.items()
            ],
        )
    )
    knobs = [k for k in KNOB_LABELS if any(k in e["settings"] for e in evaluations.values())]
    print()
    print(
        format_table(
            ["setting", *(KNOB_LABELS[k] for k in knobs)],
            [(label, *(e["settings"].get(k) for k in knobs)) for label, e in evaluations.items()],
            notes=[
                "; ".join(f"{KNOB_LABELS[k]} = {k}" for k in knobs)
                + " (0: the engine's own choice; SGLang derives the running cap from its KV pool)"
            ],
        )
    )
    say(f"derivation {document['compute_time_s']:.3f} s, simulations {document['grid_time_s']:.2f} s")
