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

from fluidopt.cli.common import add_executor_option, add_json_option, add_quiet_option, format_table, print_json
from fluidopt.cli.figures_command import DEFAULT_SHARED_DATA
from fluidopt.cli.recommend_command import KNOB_LABELS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser(
        "report",
        help="main job: engine settings, fluid-guided vs tuned, stability, the paper's policies, figures",
        description="The main job on the built-in defaults: (0) vLLM and SGLang settings from the fluid model for "
        "the engine-measured RTX 4090 Llama-3.1-8B and the attention-aware A100 Llama-3-8B profiles, against the "
        "engines' defaults on those GPUs; (1) whether the best fluid-derived chunked WAIT beats the best tuned "
        "baseline; (2) the fluid stability summary; (3) the paper's literal WAIT and Nested WAIT; and the figures "
        "at quick sizes.  Writes report.json and the figures into --out.",
    )
    p.add_argument(
        "--out",
        default="fluidopt-report",
        help="folder for the figures and report.json (default: ./fluidopt-report; never the committed figures/)",
    )
    p.add_argument(
        "--profile",
        action="append",
        help="profile preset(s) of sections 1-3 and the figures (default: a100-80gb-llama-3-8b-vidur and "
        "a100-80gb-llama-2-7b in section 1, a100-80gb-llama-3-8b and a100-80gb-llama-2-7b in sections 2-3 and the "
        "figures); section 0 always uses rtx4090-llama-3.1-8b-vllm and a100-80gb-llama-3-8b-vidur",
    )
    p.add_argument("--full", action="store_true", help="figures at the paper's sizes (slower)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--requests", type=int, default=20_000, help="requests per simulation in the comparison")
    add_executor_option(p)
    p.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    add_json_option(p)
    add_quiet_option(p)
    p.set_defaults(handler=cmd_report)


def _settings_text(configuration: dict) -> str:
    """A tuned configuration's knobs, whole (``name value`` pairs)."""
    return ", ".join(f"{k} {v}" for k, v in configuration.items() if k not in ("family", "conditions_hold"))


WIDTH = 100  # every line of the report fits a 100-column terminal; report.json has the details


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


def _fresh_mean(row: dict, label: str) -> float | None:
    evaluation = row["evaluations"].get(label)
    return None if not evaluation else evaluation["mean_latency_s"]


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
    executor = make_executor(args.executor, scheduler=args.scheduler)
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
    """Section 0: the status of every cell first, the setting handed out, its command only where it meets the SLO."""
    from fluidopt.answers.report import ENGINE_FRACTION, verdict_sentence

    print(
        _wrap(
            f"0. Which settings should my engine run?  vLLM V1 / SGLang settings from the fluid model at "
            f"{100 * ENGINE_FRACTION:.0f}% of each fluid limit, SLO p99 TPOT <= 100 ms, simulated against the "
            "engine's defaults on the profile's GPU and a grid over the same knobs; details in report.json"
        )
        + "\n"
    )
    print(
        format_table(
            [
                "profile",
                "workload",
                "engine",
                "rate/s",
                "limit/s",
                "status",
                "handed out",
                "E2E s rec",
                "E2E s dflt",
                "SLO max/s rec",
                "SLO max/s dflt",
            ],
            [
                (
                    r["profile"],
                    r["workload_name"],
                    r["engine"],
                    r["rate_per_s"],
                    r["fluid_max_rate_per_s"],
                    r["status"],
                    r["source"] if r["success"] else "none",
                    _fresh_mean(r, "recommended (fresh seeds)"),
                    _fresh_mean(r, "engine defaults (fresh seeds)"),
                    r["max_rate_recommended_per_s"] if r["recommended"] else None,
                    r["max_rate_default_per_s"],
                )
                for r in engines
            ],
            notes=[
                "rate/s: the rate each cell was evaluated at; limit/s: the fluid stability limit; status: ok, "
                "or no-configuration (no setting meets the SLO at that rate: nothing is handed out), or unstable; "
                "rec: the setting handed out (the best one tried where none meets the SLO); dflt: the engine's "
                "defaults on the profile's GPU; E2E s: mean end-to-end latency on fresh seeds; SLO max/s: the "
                "largest rate at which that setting meets the SLO."
            ],
            keys=3,
        )
    )
    knobs = [k for k in KNOB_LABELS if any(k in r["recommended"] for r in engines)]
    print()
    print(
        format_table(
            ["profile", "workload", "engine", *(KNOB_LABELS[k] for k in knobs)],
            [
                (r["profile"], r["workload_name"], r["engine"], *(r["recommended"].get(k) for k in knobs))
                for r in engines
            ],
            notes=[
                "The setting handed out (or, where none meets the SLO, the best one tried): "
                + "; ".join(f"{KNOB_LABELS[k]} = {k}" for k in knobs)
                + "; 0 = the engine's own choice; - = not an option of that engine."
            ],
            keys=3,
        )
    )
    print()
    for r in engines:
        print(_wrap(f"{r['profile']} / {r['workload_name']} / {r['engine']}: {verdict_sentence(r)}", "  "))
        if r["recommended"] and r["success"]:
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
    rows = []
    for r in verdicts:
        fluid, base = r["fluid_guided"] or {}, r["baseline"] or {}
        rows.append(
            (
                r["profile"],
                r["workload"],
                r["fluid_max_rate_per_s"],
                r["rate_per_s"],
                fluid.get("policy"),
                fluid.get("mean_latency_s"),
                fluid.get("stable"),
                base.get("policy"),
                base.get("mean_latency_s"),
                base.get("stable"),
            )
        )
    print(
        format_table(
            [
                "profile",
                "workload",
                "limit/s",
                "rate/s",
                "fluid-guided",
                "mean s",
                "stable",
                "tuned baseline",
                "mean s ",
                "stable ",
            ],
            rows,
            notes=["mean s: mean end-to-end latency; the settings of each pick follow."],
            keys=2,
        )
    )
    for r in verdicts:
        fluid, base = r["fluid_guided"] or {}, r["baseline"] or {}
        print(_wrap(f"{r['profile']} / {r['workload']}: {r['verdict']}", "  "))
        if fluid:
            print(_wrap(f"fluid-guided {fluid['policy']}: {_settings_text(fluid['configuration'])}", "    "))
        if base:
            print(_wrap(f"tuned {base['policy']}: {_settings_text(base['configuration'])}", "    "))


def _print_stability(stability: list[dict]) -> None:
    """Section 2: the fluid stability summary."""
    print("\n2. Fluid stability (arXiv:2504.11320; fluidopt GPU profiles)\n")
    print(
        format_table(
            [
                "profile",
                "workload",
                "rate/s",
                "stable",
                "dT* ms",
                "M* tokens",
                "max rate/s",
                "binds at limit",
                "mem. elasticity",
                "regime",
            ],
            [
                (
                    r["profile"],
                    r["workload"],
                    r["rate_per_s"],
                    r["stable"],
                    _times(r["iteration_time_s"], 1e3),
                    r["memory_tokens"],
                    r["max_rate_per_s"],
                    ", ".join(r["binding"]) or None,
                    r["memory_elasticity"],
                    r["regime"],
                )
                for r in stability
            ],
            notes=[
                "dT*: equilibrium iteration time; M*: its KV memory; binds at limit: the constraint that ends the "
                "stability region; mem. elasticity: d ln(max rate) / d ln(KV capacity); regime: compute-bound when "
                "that elasticity is below 0.5 (a larger KV cache barely raises the limit, even where memory is what "
                "binds at the edge), memory-bound above."
            ],
            keys=2,
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
                    r["mean_latency_s"],
                    r["status"],
                )
                for r in tuned
            ],
        )
    )
    print("\n3b. Policy comparison at the preset rates (2 replicates)\n")
    print(
        format_table(
            ["profile", "workload", "rate/s", "policy", "stable", "mean s", "p99 s", "TTFT s", "done/s", "restarts %"],
            [
                (
                    r["profile"],
                    r["workload"],
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
            notes=[
                "stable: at most 2% of the requests unfinished at the end; mean s / p99 s: end-to-end latency; TTFT "
                "s: mean time to first token; done/s: completions per second; restarts %: evictions per arrived "
                "request x 100 (an evicted request starts over; above 100 % requests restart more than once)."
            ],
            keys=4,
        )
    )
