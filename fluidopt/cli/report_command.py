"""``fluidopt report``: the main job on the built-in defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from fluidopt.cli.common import add_json_option, format_table, print_json, save_figure_atomic
from fluidopt.fluid.equilibrium import equilibrium
from fluidopt.fluid.stability import max_stable_scale, peer_max_scales, stability_boundary
from fluidopt.profile import preset_profile
from fluidopt.workload import preset_workload

REPORT_PROFILES = ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b")
REPORT_WORKLOADS = ("p512d20", "mix-p512d20-p512d50", "p512d1000", "lmsys-like")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser("report", help="main job: stability summary for the default GPUs and workloads")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    p.add_argument("--profile", action="append", help="profile preset(s) (default: A100 Llama-3-8B and Llama-2-7B)")
    add_json_option(p)
    p.set_defaults(handler=cmd_report)


def stability_summary(profiles: tuple[str, ...], workloads: tuple[str, ...]) -> list[dict]:
    """Equilibrium at the preset rate and largest stable rate for every (profile, workload)."""
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


def cmd_report(args: argparse.Namespace) -> int:
    """Print the stability summary and write the 2-class region figure."""
    profiles = tuple(args.profile or REPORT_PROFILES)
    rows = stability_summary(profiles, REPORT_WORKLOADS)
    out = Path(args.out)
    written = []
    mix = preset_workload("mix-p512d20-p512d50")
    for profile_name in profiles:
        boundary = stability_boundary(mix, preset_profile(profile_name), directions=91)
        from fluidopt.plotting import plot_stability_region

        figure = plot_stability_region(boundary, title=f"{mix.name} on {profile_name}")
        written.append(str(save_figure_atomic(figure, out / f"stability-region-{profile_name}.png")))
        plt.close(figure)
    if args.json:
        print_json({"stability": rows, "figures": written})
        return 0
    print("Fluid stability summary (arXiv:2504.11320; fluidopt GPU profiles)\n")
    table = [
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
        for r in rows
    ]
    print(
        format_table(
            ["profile", "workload", "rate/s", "stable", "dT* ms", "M* tokens", "max rate/s", "regime", "mem. elast."],
            table,
        )
    )
    print()
    for path in written:
        print(f"wrote {path}")
    return 0
