"""CLI commands for tuning and capacity."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from fluidopt.cli.common import (
    add_executor_option,
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
from fluidopt.sim.policies import FLUID_POLICIES

if TYPE_CHECKING:
    from fluidopt.experiments.evaluate import Targets


def _add_run_options(p: argparse.ArgumentParser, replicates: int) -> None:
    p.add_argument("--p99-latency-s", type=float, help="target on the p99 end-to-end latency")
    p.add_argument("--p99-ttft-s", type=float, help="target on the p99 time to first token")
    p.add_argument("--replicates", type=int, default=replicates, help="replicates per configuration")
    p.add_argument("--requests", type=int, default=20_000, help="requests per replicate")
    p.add_argument("--seed", type=int, default=0, help="root seed (replicate seeds are spawned from it)")
    add_executor_option(p)
    p.add_argument("--scheduler", help="Dask scheduler address (implies --executor dask)")
    p.add_argument("--cache", help="folder caching finished simulation points (resumable)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument(
        "--conventions", default="fluidopt", help="fluidopt or vidur (docs/theory.md section 9), recorded in every run"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tune``, ``capacity`` and ``compare``."""
    from fluidopt.experiments.catalog import CAPACITY_POLICIES

    p = subparsers.add_parser(
        "compare", help="does fluid-guided chunked WAIT beat tuned vLLM / Sarathi here? per-load verdicts"
    )
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument("--fractions", default="0.7,0.85,0.95", help="loads as fractions of the fluid limit")
    _add_run_options(p, replicates=5)
    add_json_option(p)
    add_quiet_option(p)
    p.set_defaults(handler=cmd_compare, requests=10_000)

    p = subparsers.add_parser("tune", help="tune WAIT / Nested WAIT thresholds by simulation")
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument(
        "--policy",
        choices=("auto", *FLUID_POLICIES, "chunked"),
        default="auto",
        help="family to tune: the theory's wait / nested-wait (auto: both) or the chunked wait-cp / nested-wait-cp",
    )
    p.add_argument(
        "--objective",
        choices=("mean-latency", "max-rate"),
        default="mean-latency",
        help="what tuning minimises: mean latency at the rate, or maximises the stable rate",
    )
    _add_run_options(p, replicates=4)
    p.add_argument("--out", help="write the chosen thresholds file (TOML or .json)")
    add_json_option(p)
    add_quiet_option(p)
    p.set_defaults(handler=cmd_tune)

    p = subparsers.add_parser("capacity", help="largest rate each policy sustains under a target")
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument("--policies", default=",".join(CAPACITY_POLICIES), help="comma-separated policies")
    p.add_argument("--steps", type=int, default=8, help="bisection steps on the rate")
    _add_run_options(p, replicates=3)
    add_json_option(p)
    add_quiet_option(p)
    p.set_defaults(handler=cmd_capacity)


def _targets(args: argparse.Namespace) -> Targets:
    from fluidopt.experiments.evaluate import Targets

    return Targets(p99_latency_s=args.p99_latency_s, p99_ttft_s=args.p99_ttft_s)


def cmd_tune(args: argparse.Namespace) -> int:
    """Tune thresholds and print the chosen configuration."""
    from fluidopt.experiments.sweep import make_executor
    from fluidopt.experiments.tune import tune
    from fluidopt.sim.policies import NestedWaitPolicy, WaitCPPolicy
    from fluidopt.thresholds.io import write_thresholds

    workload, profile = workload_from_args(args), profile_from_args(args)
    result = tune(
        workload,
        profile,
        family=args.policy,
        objective=args.objective,
        targets=_targets(args),
        replicates=args.replicates,
        requests=args.requests,
        seed=args.seed,
        executor=make_executor(args.executor, scheduler=args.scheduler),
        cache_dir=args.cache,
        progress=args.progress,
        conventions=args.conventions,
    )
    if args.out and result.chosen is not None and isinstance(result.chosen.policy, WaitCPPolicy):
        document = {
            **result.chosen.policy.to_dict(),
            "workload": workload.name,
            "profile": profile.name,
            "rate_per_s": result.rate_per_s,
            "design": result.chosen.description,
            "tuning": result.chosen.to_dict(),
        }
        write_thresholds(args.out, document)
    elif args.out and result.chosen is not None:
        policy = result.chosen.policy
        document = {
            "policy": policy.name,
            "workload": workload.name,
            "profile": profile.name,
            "rate_per_s": result.rate_per_s,
            "thresholds": list(getattr(policy, "thresholds", ())),
            "design": result.chosen.description,
            "tuning": result.chosen.to_dict(),
        }
        if isinstance(policy, NestedWaitPolicy):
            document["boundaries"] = list(policy.boundaries)
        else:
            document["classes"] = list(workload.class_names)
        write_thresholds(args.out, document)
    if args.json:
        print_json(result.to_dict())
        return 0
    print(f"tuning for {workload.name} on {profile.name}: {result.message}")
    rows = []
    picks = [("chosen", result.chosen), *(("runner-up", e) for e in result.runners_up)]
    if result.chosen is None and result.best_found is not None:
        picks.append(("best found", result.best_found))
    for tag, evaluation in picks:
        if evaluation is None:
            continue
        low, high = evaluation.interval("mean_latency_s")
        rows.append(
            (
                tag,
                evaluation.policy.name,
                _settings(evaluation.policy),
                evaluation.mean("mean_latency_s"),
                low,
                high,
                evaluation.mean("p99_latency_s"),
                evaluation.meets,
            )
        )
    if rows:
        print(
            format_table(
                ["pick", "policy", "thresholds", "mean latency s", "95% low s", "95% high s", "p99 latency s", "meets"],
                rows,
                keys=2,
            )
        )
    if args.out and result.chosen is not None:
        print(f"wrote {args.out}")
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    """Print the capacity table."""
    from fluidopt.answers.capacity import capacity
    from fluidopt.experiments.sweep import make_executor

    workload, profile = workload_from_args(args), profile_from_args(args)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    result = capacity(
        workload,
        profile,
        policies=policies,
        targets=_targets(args),
        replicates=args.replicates,
        requests=args.requests,
        seed=args.seed,
        steps=args.steps,
        executor=make_executor(args.executor, scheduler=args.scheduler),
        cache_dir=args.cache,
        progress=args.progress,
        conventions=args.conventions,
    )
    document = result.to_dict()
    if args.json:
        print_json(document)
        return 0
    print_capacity(document)
    return 0


def _configuration_text(configuration: Any) -> str:
    """A configuration's knobs as ``name value`` pairs, whole."""
    if not isinstance(configuration, dict):
        return "-" if configuration is None else str(configuration)
    return ", ".join(f"{k} {v}" for k, v in configuration.items() if k not in ("family", "source")) or "defaults"


def print_capacity(document: dict) -> None:
    """The capacity table from its JSON document; each policy's configuration and any failure below it."""
    print(
        f"capacity of {document['workload']} (shares kept) on {document['profile']}; fluid limit "
        f"{document['fluid_max_rate_per_s']:.4g} requests/s; status {document['status']}"
    )
    policies = document["policies"]
    print(
        format_table(
            ["policy", "status", "max rate/s", "mean latency s", "p99 latency s"],
            [
                (name, c["status"], c["max_rate_per_s"], c.get("mean_latency_s"), c.get("p99_latency_s"))
                for name, c in policies.items()
            ],
            notes=["max rate/s: the largest rate sustained (stable and meeting the targets); latencies there."],
        )
    )
    for name, c in policies.items():
        print(textwrap.fill(f"{name}: {_configuration_text(c.get('configuration'))}", 100, subsequent_indent="  "))
        if c["status"] != "ok":
            print(textwrap.fill(f"  {c['status']}: {c['message']}", 100, subsequent_indent="    "))


def _settings(policy) -> str:
    """The knobs of a tuned policy, whole."""
    from fluidopt.sim.policies import WaitCPPolicy

    if isinstance(policy, WaitCPPolicy):
        return f"tl {policy.tl}, cs {policy.chunk_tokens}, budget {policy.total_budget_tokens}"
    return str(list(policy.thresholds))


def cmd_compare(args: argparse.Namespace) -> int:
    """Per-load verdict: best fluid-guided chunked configuration against the best tuned baseline."""
    from fluidopt.experiments.compare import compare_policies
    from fluidopt.experiments.sweep import make_executor

    workload, profile = workload_from_args(args), profile_from_args(args)
    fractions = []
    for part in str(args.fractions).split(","):
        try:
            fractions.append(float(part))
        except ValueError:
            raise InputError("--fractions", args.fractions, "must be comma-separated numbers in (0, 1]") from None
    result = compare_policies(
        workload,
        profile,
        fractions=fractions,
        replicates=args.replicates,
        requests=args.requests,
        seed=args.seed,
        conventions=args.conventions,
        executor=make_executor(args.executor, scheduler=args.scheduler),
        cache_dir=args.cache,
        progress=args.progress,
    )
    document = result.to_dict()
    if args.json:
        print_json(document)
        return 0
    print_comparison(document)
    return 0


def print_comparison(document: dict) -> None:
    """The comparison from its JSON document: one row per configuration and rate, then each verdict."""
    print(
        f"{document['workload']} on {document['profile']} (conventions {document['conventions']}); fluid limit "
        f"{document['fluid_max_rate_per_s']:.4g} requests/s; status {document['status']}"
    )
    rows = []
    for v in document["verdicts"]:
        picks = [("fluid-guided", v["fluid_guided"]), ("tuned baseline", v["baseline"])]
        picks += [(f"{name} (paper default)", e) for name, e in v["paper_defaults"].items()]
        for tag, e in picks:
            if e is None:
                continue
            low, high = e["mean_latency_ci_s"]
            rows.append(
                (
                    v["rate_per_s"],
                    100 * v["fraction_of_limit"],
                    tag,
                    e["policy"],
                    e["stable"],
                    e["mean_latency_s"],
                    low,
                    high,
                    e["p99_latency_s"],
                )
            )
    print(
        format_table(
            ["rate/s", "% of limit", "pick", "policy", "stable", "mean s", "95% low s", "95% high s", "p99 s"],
            rows,
            keys=3,
            notes=["mean s / p99 s: end-to-end latency; the configurations follow."],
        )
    )
    for v in document["verdicts"]:
        print(textwrap.fill(f"{v['rate_per_s']:.4g} requests/s: {v['verdict']}", 100, subsequent_indent="  "))
        for tag, e in (("fluid-guided", v["fluid_guided"]), ("tuned baseline", v["baseline"])):
            if e is not None:
                text = f"{tag} {e['policy']}: {_configuration_text(e['configuration'])}"
                print(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="    "))
