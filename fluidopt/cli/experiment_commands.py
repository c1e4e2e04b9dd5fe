"""CLI commands for tuning and capacity."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fluidopt.cli.common import (
    add_executor_option,
    add_json_option,
    add_profile_options,
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
    p.set_defaults(handler=cmd_tune)

    p = subparsers.add_parser("capacity", help="largest rate each policy sustains under a target")
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument("--policies", default=",".join(CAPACITY_POLICIES), help="comma-separated policies")
    p.add_argument("--steps", type=int, default=8, help="bisection steps on the rate")
    _add_run_options(p, replicates=3)
    add_json_option(p)
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
    for tag, evaluation in [("chosen", result.chosen), *(("runner-up", e) for e in result.runners_up)]:
        if evaluation is None:
            continue
        low, high = evaluation.interval("mean_latency_s")
        rows.append(
            (
                tag,
                evaluation.policy.name,
                _settings(evaluation.policy),
                f"{evaluation.mean('mean_latency_s'):.4g} [{low:.4g}, {high:.4g}]",
                evaluation.mean("p99_latency_s"),
                "yes" if evaluation.meets else "no",
            )
        )
    if result.chosen is None and result.best_found is not None:
        e = result.best_found
        rows.append(
            (
                "best found",
                e.policy.name,
                _settings(e.policy),
                f"{e.mean('mean_latency_s'):.4g}",
                e.mean("p99_latency_s"),
                "no",
            )
        )
    if rows:
        print(format_table(["", "policy", "thresholds", "mean latency s [95% CI]", "p99 latency s", "meets"], rows))
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
    if args.json:
        print_json(result.to_dict())
        return 0
    print(
        f"capacity of {workload.name} (shares kept) on {profile.name} under {result.targets.describe()}; "
        f"fluid limit {result.fluid_max_rate_per_s:.4g} requests/s"
    )
    rows = [
        (
            name,
            c.max_rate_per_s,
            c.to_dict().get("mean_latency_s", float("nan")),
            c.to_dict().get("p99_latency_s", float("nan")),
            str(c.to_dict().get("configuration", "-")),
        )
        for name, c in result.policies.items()
    ]
    print(format_table(["policy", "max rate/s", "mean latency s", "p99 latency s", "configuration"], rows))
    for name, c in result.policies.items():
        if c.status != "ok":
            print(f"{name}: {c.status}: {c.message}")
    return 0


def _settings(policy) -> str:
    """The knobs of a tuned policy in one short string."""
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
    if args.json:
        print_json(result.to_dict())
        return 0
    print(
        f"{workload.name} on {profile.name} (conventions {result.conventions}); fluid limit "
        f"{result.fluid_max_rate_per_s:.4g} requests/s"
    )
    rows = []
    for v in result.verdicts:
        for tag, e in (
            ("fluid-guided", v.fluid_guided),
            ("tuned baseline", v.baseline),
            ("vllm (paper default)", v.paper_defaults.get("vllm")),
            ("sarathi (paper default)", v.paper_defaults.get("sarathi")),
        ):
            if e is None:
                continue
            low, high = e.interval("mean_latency_s")
            rows.append(
                (
                    f"{v.rate_per_s:.4g} ({100 * v.fraction_of_limit:.0f}%)",
                    tag,
                    f"{e.policy.name} {_settings_short(e)}",
                    f"{e.mean('mean_latency_s'):.4g} [{low:.4g}, {high:.4g}]",
                    f"{e.mean('p99_latency_s'):.4g}",
                    "yes" if e.stable else "no",
                )
            )
    print(format_table(["rate/s", "", "configuration", "mean latency s [95% CI]", "p99 s", "stable"], rows))
    for v in result.verdicts:
        print(f"{v.rate_per_s:.4g} requests/s: {v.verdict}")
    return 0


def _settings_short(evaluation) -> str:
    d = evaluation.description
    if "tl" in d:
        return f"(tl {d['tl']}, cs {d['chunk_tokens']}, slack {d['slack']})"
    return "(" + ", ".join(f"{k} {v}" for k, v in d.items() if k != "family") + ")"
