"""``fluidopt report``: the main job on the built-in defaults.

Leads with the user's question (does fluid guidance beat tuned baselines on this GPU and
traffic?), then prints the fluid stability summary, the tuned thresholds and the policy comparison for the A100
Llama-3-8B profile (the one behind the paper's figures) and the A100 Llama-2-7B profile on the
paper's workloads, and writes the figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fluidopt.cli.common import add_json_option, format_table, print_json
from fluidopt.cli.figures_command import DEFAULT_SHARED_DATA


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser("report", help="main job: stability, tuned thresholds, policy comparison, figures")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    p.add_argument("--profile", action="append", help="profile preset(s) (default: A100 Llama-3-8B and Llama-2-7B)")
    p.add_argument("--full", action="store_true", help="figures at the paper's sizes (slower)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--requests", type=int, default=20_000, help="requests per simulation in the comparison")
    p.add_argument("--executor", choices=("serial", "processes", "dask"), default="processes")
    add_json_option(p)
    p.set_defaults(handler=cmd_report)


def _describe(summary: dict | None) -> str:
    if summary is None:
        return "-"
    config = summary["configuration"]
    if "tl" in config:
        knobs = f"tl {config['tl']}, cs {config['chunk_tokens']}"
    else:
        knobs = ", ".join(f"{k} {v}" for k, v in config.items() if k != "family")
    flag = "" if summary["stable"] else ", unstable"
    return f"{summary['policy']} ({knobs}): {summary['mean_latency_s']:.3g} s{flag}"


def cmd_report(args: argparse.Namespace) -> int:
    """Print the verdict and the three tables and write the figures."""
    from fluidopt.experiments.figures import make_figures
    from fluidopt.experiments.report import (
        REPORT_PROFILES,
        REPORT_WORKLOADS,
        VERDICT_FRACTION,
        VERDICT_PROFILES,
        policy_comparison,
        stability_summary,
        tuned_thresholds,
        verdict_summary,
    )
    from fluidopt.experiments.sweep import make_executor

    start = time.perf_counter()
    profiles = tuple(args.profile or REPORT_PROFILES)
    executor = make_executor(args.executor)
    verdicts = verdict_summary(
        tuple(args.profile or VERDICT_PROFILES), REPORT_WORKLOADS, executor, min(args.requests, 4000)
    )
    stability = stability_summary(profiles, REPORT_WORKLOADS)
    tuned = [row for name in profiles for row in tuned_thresholds(name, executor, args.requests)]
    comparison = [row for name in profiles for row in policy_comparison(name, executor, args.requests)]
    written: dict[str, list[Path]] = {}
    if not args.no_figures:
        written = make_figures(
            args.out, quick=not args.full, profile=profiles[0], executor=executor, shared_data=DEFAULT_SHARED_DATA
        )
    elapsed = time.perf_counter() - start
    if args.json:
        print_json(
            {
                "verdict": verdicts,
                "stability": stability,
                "tuned_thresholds": tuned,
                "policy_comparison": comparison,
                "figures": {k: [str(p) for p in v] for k, v in written.items()},
                "wall_time_s": elapsed,
            }
        )
        return 0
    print(
        f"0. Does fluid guidance beat tuned baselines here?  At {100 * VERDICT_FRACTION:.0f}% of each fluid limit: "
        "the best fluid-derived chunked WAIT against the best tuned vLLM / Sarathi, 3 fresh replicates, "
        "paired 95% interval\n"
    )
    print(
        format_table(
            ["profile", "workload", "fluid limit/s", "rate/s", "fluid-guided", "tuned baseline", "verdict"],
            [
                (
                    r["profile"],
                    r["workload"],
                    r["fluid_max_rate_per_s"],
                    r["rate_per_s"],
                    _describe(r["fluid_guided"]),
                    _describe(r["baseline"]),
                    r["verdict"],
                )
                for r in verdicts
            ],
        )
    )
    print("\n1. Fluid stability (arXiv:2504.11320; fluidopt GPU profiles)\n")
    print(
        format_table(
            ["profile", "workload", "rate/s", "stable", "dT* ms", "M* tokens", "max rate/s", "regime", "mem. elast."],
            [
                (
                    r["profile"],
                    r["workload"],
                    r["rate_per_s"],
                    "yes" if r["stable"] else "no",
                    r["iteration_time_s"] * 1e3,
                    r["memory_tokens"],
                    r["max_rate_per_s"],
                    r["regime"],
                    r["memory_elasticity"],
                )
                for r in stability
            ],
        )
    )
    print("\n2. Tuned thresholds (simulation-verified, least mean latency)\n")
    print(
        format_table(
            ["profile", "workload", "rate/s", "policy", "thresholds", "mean latency s", "status"],
            [
                (
                    r["profile"],
                    r["workload"],
                    r["rate_per_s"],
                    r["policy"],
                    str(r["thresholds"]),
                    r["mean_latency_s"] if r["mean_latency_s"] is not None else float("nan"),
                    r["status"],
                )
                for r in tuned
            ],
        )
    )
    print("\n3. Policy comparison at the preset rates (2 replicates)\n")
    print(
        format_table(
            ["profile", "workload", "rate/s", "policy", "mean lat. s", "p99 lat. s", "TTFT s", "done/s", "restarts %"],
            [
                (
                    r["profile"],
                    r["workload"],
                    r["rate_per_s"],
                    r["policy"],
                    r["mean_latency_s"],
                    r["p99_latency_s"],
                    r["mean_ttft_s"],
                    r["completed_per_s"],
                    100 * r["restart_fraction"],
                )
                for r in comparison
            ],
        )
    )
    if written:
        print(
            f"\n4. Figures ({'paper sizes' if args.full else 'quick sizes; --full for the paper sizes'}) in "
            f"{args.out}/: " + ", ".join(written)
        )
    print(f"\nreport finished in {elapsed:.1f} s")
    return 0
