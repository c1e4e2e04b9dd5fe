"""``fluidopt report``: the main job on the built-in defaults.

Leads with the user's question (which settings should my engine run, and what do they get?):
vLLM and SGLang settings from the fluid model for the shipped engine-measured profile and the
attention-aware A100 profile, validated against the engines' defaults and a grid; then whether
fluid guidance beats tuned baselines, the fluid stability summary, and, in a section of their
own, the paper's theory-only algorithms (literal WAIT / Nested WAIT: tuned thresholds and a
policy comparison); and writes the figures into a folder of its own (never over figures/).
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

from fluidopt.cli.common import add_executor_option, add_json_option, format_table, print_json
from fluidopt.cli.figures_command import DEFAULT_SHARED_DATA


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser(
        "report", help="main job: engine settings, fluid-guided vs tuned, stability, the paper's policies, figures"
    )
    p.add_argument(
        "--out",
        default="fluidopt-report",
        help="folder for the figures and report.json (default: ./fluidopt-report; never the committed figures/)",
    )
    p.add_argument("--profile", action="append", help="profile preset(s) (default: A100 Llama-3-8B and Llama-2-7B)")
    p.add_argument("--full", action="store_true", help="figures at the paper's sizes (slower)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--requests", type=int, default=20_000, help="requests per simulation in the comparison")
    add_executor_option(p)
    add_json_option(p)
    p.set_defaults(handler=cmd_report)


def _describe(summary: dict | None) -> str:
    if summary is None:
        return "-"
    config = summary["configuration"]
    short = {
        "max_num_seqs": "seqs",
        "max_num_batched_tokens": "tok",
        "max_running_requests": "run",
        "schedule_conservativeness": "c",
        "token_budget": "budget",
        "max_batch": "cap",
    }
    if "tl" in config:
        knobs = f"tl {config['tl']} cs {config['chunk_tokens']}"
    else:
        knobs = " ".join(f"{short.get(k, k)} {v}" for k, v in config.items() if k != "family")
    flag = "" if summary["stable"] else " UNSTABLE"
    return f"{summary['mean_latency_s']:.3g} s {summary['policy']} ({knobs}){flag}"


def _knobs(knobs: dict) -> str:
    shown = (
        "max_num_seqs",
        "max_num_batched_tokens",
        "long_prefill_token_threshold",
        "max_running_requests",
        "chunked_prefill_size",
        "max_prefill_tokens",
        "schedule_conservativeness",
    )
    short = {
        "max_num_seqs": "seqs",
        "max_num_batched_tokens": "tok",
        "long_prefill_token_threshold": "cs",
        "max_running_requests": "run",
        "chunked_prefill_size": "cs",
        "schedule_conservativeness": "c",
    }
    parts = [f"{short[k]} {v if v else 'auto'}" for k, v in knobs.items() if k in shown and k in short]
    return " ".join(parts)[:24] or "-"


WIDTH = 120  # every line of the report fits a 120-column terminal; report.json has the details


def _wrap(text: str, indent: str = "") -> str:
    """``text`` folded to :data:`WIDTH` columns, continuation lines indented by ``indent`` and two spaces."""
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)


def _command(command: str, indent: str = "    ") -> str:
    """A shell command folded at option boundaries with backslash continuations, within :data:`WIDTH`."""
    lines, line = [], indent
    for word in command.replace(" --", "\0--").split("\0"):
        if len(line) + len(word) + 3 > WIDTH and line.strip():
            lines.append(line.rstrip() + " \\")
            line = indent + "  "
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def _latency(row: dict) -> str:
    fresh = row["evaluations"].get("recommended (fresh seeds)")
    default = row["evaluations"].get("engine defaults (fresh seeds)")
    if not fresh or not default:
        return "-"
    return f"{fresh['mean_latency_s']:.3g} / {default['mean_latency_s']:.3g}"


def _rates(row: dict) -> str:
    if not row["recommended"]:
        return "-"
    return f"{row['max_rate_recommended_per_s']:.3g} / {row['max_rate_default_per_s']:.3g}"


def cmd_report(args: argparse.Namespace) -> int:
    """Print the verdict and the three tables and write the figures."""
    from fluidopt.answers.report import (
        REPORT_PROFILES,
        REPORT_WORKLOADS,
        VERDICT_PROFILES,
        engine_recommendations,
        policy_comparison,
        stability_summary,
        tuned_thresholds,
        verdict_summary,
    )
    from fluidopt.experiments.figures import make_figures
    from fluidopt.experiments.sweep import make_executor

    start = time.perf_counter()
    profiles = tuple(args.profile or REPORT_PROFILES)
    executor = make_executor(args.executor)
    engines = engine_recommendations(requests=min(args.requests, 3000))
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
    document = {
        "engine_settings": engines,
        "verdict": verdicts,
        "stability": stability,
        "tuned_thresholds": tuned,
        "policy_comparison": comparison,
        "figures": {k: [str(p) for p in v] for k, v in written.items()},
        "wall_time_s": elapsed,
    }
    from fluidopt.cli.common import _json_safe
    from fluidopt.tomlio import write_text_atomic

    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(args.out) / "report.json", json.dumps(_json_safe(document), indent=2) + "\n")
    if args.json:
        print_json(document)
        return 0
    print_report(_json_safe(document), args.out, args.full)
    return 0


def _times(value: float | None, factor: float) -> float:
    """``value x factor``; a missing value (JSON null for inf or NaN) is NaN, printed as ``-``."""
    return float("nan") if value is None else value * factor


def print_report(document: dict, out: str, full: bool) -> None:
    """Print the report's tables from its JSON document (every line within :data:`WIDTH` columns)."""
    _print_engine_settings(document["engine_settings"])
    _print_verdicts(document["verdict"])
    _print_stability(document["stability"])
    _print_theory(document["tuned_thresholds"], document["policy_comparison"])
    written = document["figures"]
    if written:
        print(
            "\n"
            + _wrap(
                f"4. Figures ({'paper sizes' if full else 'quick sizes; --full for the paper sizes'}) "
                f"and report.json in {out}/: " + ", ".join(written)
            )
        )
    print(f"\nreport finished in {document['wall_time_s']:.1f} s")


def _print_engine_settings(engines: list[dict]) -> None:
    """Section 0: the engine settings from the fluid model against the defaults, with a verdict and a command."""
    from fluidopt.answers.report import ENGINE_FRACTION, verdict_sentence

    print(
        _wrap(
            f"0. Which settings should my engine run?  vLLM V1 / SGLang settings from the fluid model at "
            f"{100 * ENGINE_FRACTION:.0f}% of each fluid limit, SLO p99 TPOT <= 100 ms, simulated against the "
            "engine's defaults (dflt) and a grid over the same knobs; details in report.json"
        )
        + "\n"
    )
    print(
        format_table(
            ["profile", "workload", "engine", "limit/s", "recommended", "E2E s rec/dflt", "max/s rec/dflt", "from"],
            [
                (
                    r["profile"][:20],
                    r["workload_name"][:13],
                    r["engine"],
                    f"{r['fluid_max_rate_per_s']:.3g}",
                    _knobs(r["recommended"]),
                    _latency(r),
                    _rates(r),
                    r["source"].split()[0].removesuffix("-derived"),
                )
                for r in engines
            ],
        )
    )
    for r in engines:
        print(_wrap(f"{r['profile']} / {r['workload_name']} / {r['engine']}: {verdict_sentence(r)}", "  "))
        if r["recommended"]:
            print(_command(r["command"]))


def _print_verdicts(verdicts: list[dict]) -> None:
    """Section 1: the best fluid-derived chunked WAIT against the best tuned baseline."""
    from fluidopt.answers.report import VERDICT_FRACTION

    print(
        "\n"
        + _wrap(
            f"1. Does fluid guidance beat tuned baselines here?  At {100 * VERDICT_FRACTION:.0f}% of each fluid "
            "limit: the best fluid-derived chunked WAIT against the best tuned vLLM / Sarathi, 3 fresh replicates, "
            "paired 95% interval"
        )
        + "\n"
    )
    print(
        format_table(
            ["profile", "workload", "limit/s", "rate/s", "fluid-guided", "tuned baseline"],
            [
                (
                    r["profile"][:20],
                    r["workload"][:13],
                    f"{r['fluid_max_rate_per_s']:.4g}",
                    f"{r['rate_per_s']:.4g}",
                    _describe(r["fluid_guided"])[:38],
                    _describe(r["baseline"])[:38],
                )
                for r in verdicts
            ],
        )
    )
    for r in verdicts:
        print(_wrap(f"{r['profile']} / {r['workload']}: {r['verdict']}", "  "))


def _print_stability(stability: list[dict]) -> None:
    """Section 2: the fluid stability summary."""
    print("\n2. Fluid stability (arXiv:2504.11320; fluidopt GPU profiles)\n")
    print(
        format_table(
            ["profile", "workload", "rate/s", "stable", "dT* ms", "M* tokens", "max rate/s", "regime", "mem. elast."],
            [
                (
                    r["profile"],
                    r["workload"],
                    r["rate_per_s"],
                    "yes" if r["stable"] else "no",
                    _times(r["iteration_time_s"], 1e3),
                    r["memory_tokens"],
                    r["max_rate_per_s"],
                    r["regime"],
                    r["memory_elasticity"],
                )
                for r in stability
            ],
        )
    )


def _print_theory(tuned: list[dict], comparison: list[dict]) -> None:
    """Section 3: the paper's literal WAIT / Nested WAIT: tuned thresholds and a policy comparison."""
    print(
        "\n"
        + _wrap(
            "3. The paper's algorithms, literal WAIT and Nested WAIT (theory: asymptotics and the paper's "
            "Algorithms 1-2; no engine runs them)"
        )
        + "\n\n3a. Tuned thresholds (simulation-verified, least mean latency)\n"
    )
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
    print("\n3b. Policy comparison at the preset rates (2 replicates)\n")
    print(
        format_table(
            [
                "profile",
                "workload",
                "rate/s",
                "policy",
                "stable",
                "mean s",
                "p99 s",
                "TTFT s",
                "done/s",
                "restart%",
            ],
            [
                (
                    r["profile"],
                    r["workload"][:13],
                    r["rate_per_s"],
                    r["policy"],
                    "yes" if r["unfinished_fraction"] <= 0.02 else "NO: overload",
                    r["mean_latency_s"],
                    r["p99_latency_s"],
                    r["mean_ttft_s"],
                    r["completed_per_s"],
                    _times(r["restart_fraction"], 100),
                )
                for r in comparison
            ],
        )
    )
