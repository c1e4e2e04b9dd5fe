"""CLI command ``recommend``: vLLM / SGLang settings from the fluid model, checked in the simulator."""

from __future__ import annotations

import argparse
import math

from fluidopt.cli.common import (
    add_json_option,
    add_profile_options,
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
    if args.json:
        print_json({**result.to_dict(), "command": result.command(args.model)})
        return 0
    print(
        f"{args.engine} on {profile.name}, {workload.name} at {workload.total_rate_per_s:.4g} requests/s "
        f"(fluid limit {result.fluid_max_rate_per_s:.4g}); SLO: {targets.describe()}"
    )
    if not result.knobs:
        print(f"{result.status}: {result.message}")
        return 0
    print(format_table(["setting", "fluid-derived", "from"], [(d.knob, d.value, d.source) for d in result.derivation]))
    rows = []
    for label, e in result.evaluations.items():
        if e is None:
            continue
        settings = ", ".join(f"{k} {v}" for k, v in e.description.items() if k != "source")
        ci_low, ci_high = e.interval("mean_latency_s")
        rows.append(
            (
                label,
                "yes" if e.stable else "NO",
                "yes" if e.meets else "no",
                f"{e.mean('mean_latency_s'):.3g} [{ci_low:.3g}, {ci_high:.3g}]",
                f"{e.mean('p99_latency_s'):.3g}",
                f"{e.mean('p99_ttft_s'):.3g}",
                f"{1e3 * e.mean('p99_tpot_s'):.3g}",
                settings[:44],
            )
        )
    print(
        format_table(
            ["setting", "stable", "SLO", "mean E2E s [95%]", "p99 E2E", "p99 TTFT", "p99 TPOT ms", "knobs"], rows
        )
    )
    print(f"recommended ({result.source}): {result.command(args.model)}")
    print(
        f"mean-latency gain over the defaults on fresh seeds: {result.gain_s:+.3g} s "
        f"[{result.gain_interval_s[0]:+.3g}, {result.gain_interval_s[1]:+.3g}]; largest rate meeting the SLO: "
        f"{result.max_rate_recommended_per_s:.4g} (recommended) vs {result.max_rate_default_per_s:.4g} (defaults), "
        f"fluid limit {result.fluid_max_rate_per_s:.4g} requests/s"
    )
    print(
        f"{result.status}: {result.message}; derivation {result.compute_time_s:.3f} s, "
        f"simulations {result.grid_time_s:.2f} s"
    )
    return 0
