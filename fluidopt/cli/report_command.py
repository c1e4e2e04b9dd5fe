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
from fluidopt.profile import preset_profile
from fluidopt.workload import preset_workload

REPORT_PROFILES = ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b")
VERDICT_PROFILES = ("a100-80gb-llama-3-8b-vidur", "a100-80gb-llama-2-7b")
VERDICT_FRACTION = 0.8
REPORT_WORKLOADS = ("p512d20", "mix-p512d20-p512d50", "p512d1000", "lmsys-like")
COMPARED = ("wait", "wait-nohold", "nested-wait", "vllm", "sarathi", "fcfs")


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


def stability_summary(profiles: tuple[str, ...], workloads: tuple[str, ...]) -> list[dict]:
    """Equilibrium at the preset rate and largest stable rate for every (profile, workload)."""
    from fluidopt.fluid.equilibrium import equilibrium
    from fluidopt.fluid.stability import max_stable_scale, peer_max_scales

    rows = []
    for profile_name in profiles:
        profile = preset_profile(profile_name)
        for workload_name in workloads:
            workload = preset_workload(workload_name)
            eq = equilibrium(workload, profile)
            limit = max_stable_scale(workload, profile)
            peers = peer_max_scales(workload, profile)
            rows.append(
                {
                    "profile": profile_name,
                    "workload": workload_name,
                    "rate_per_s": workload.total_rate_per_s,
                    "stable": eq.stable,
                    "iteration_time_s": eq.iteration_time_s,
                    "memory_tokens": eq.memory_tokens,
                    "kv_capacity_tokens": profile.kv_capacity_tokens,
                    "max_rate_per_s": limit.max_rate_per_s,
                    "binding": list(limit.binding),
                    "memory_elasticity": limit.memory_elasticity,
                    "regime": limit.regime,
                    "li_dai_peng_max_rate_per_s": peers["li_dai_peng"] * workload.total_rate_per_s,
                    "nie_si_zhou_max_rate_per_s": peers["nie_si_zhou"] * workload.total_rate_per_s,
                }
            )
    return rows


def tuned_thresholds(profile_name: str, executor, requests: int) -> list[dict]:
    """Tuned WAIT / Nested WAIT thresholds for the paper's two workloads at their preset rates."""
    from fluidopt.experiments.tune import tune

    profile = preset_profile(profile_name)
    rows = []
    for workload_name, family in (("p512d20", "wait"), ("mix-p512d20-p512d50", "nested-wait")):
        workload = preset_workload(workload_name)
        result = tune(workload, profile, family=family, replicates=2, requests=min(requests, 10_000), executor=executor)
        chosen = result.chosen or result.best_found
        rows.append(
            {
                "profile": profile_name,
                "workload": workload_name,
                "rate_per_s": workload.total_rate_per_s,
                "policy": chosen.policy.name if chosen else family,
                "thresholds": list(getattr(chosen.policy, "thresholds", ())) if chosen else None,
                "mean_latency_s": chosen.mean("mean_latency_s") if chosen else None,
                "status": result.status,
            }
        )
    return rows


def policy_comparison(profile_name: str, executor, requests: int) -> list[dict]:
    """Every policy at the preset rate of each workload."""
    from fluidopt.experiments.rate_sweep import rate_sweep

    profile = preset_profile(profile_name)
    rows = []
    for workload_name in REPORT_WORKLOADS:
        workload = preset_workload(workload_name)
        for row in rate_sweep(
            workload, profile, COMPARED, [workload.total_rate_per_s], replicates=2, requests=requests, executor=executor
        ):
            rows.append({"profile": profile_name, "workload": workload_name, **row})
    return rows


def verdict_summary(profiles: tuple[str, ...], workloads: tuple[str, ...], executor, requests: int) -> list[dict]:
    """The verdict per (profile, workload) at 80 % of the fluid limit.

    Best fluid-guided chunked configuration against the best tuned baseline
    (:func:`~fluidopt.experiments.compare.compare_policies`).
    """
    from fluidopt.experiments.compare import compare_policies

    rows = []
    for profile_name in profiles:
        profile = preset_profile(profile_name)
        for workload_name in workloads:
            result = compare_policies(
                preset_workload(workload_name),
                profile,
                fractions=(VERDICT_FRACTION,),
                replicates=3,
                requests=requests,
                executor=executor,
            )
            verdict = result.verdicts[0]
            rows.append(
                {
                    "profile": profile_name,
                    "workload": workload_name,
                    "fluid_max_rate_per_s": result.fluid_max_rate_per_s,
                    **verdict.to_dict(),
                }
            )
    return rows


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
