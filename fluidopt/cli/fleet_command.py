"""CLI command ``fleet``: the cheapest mix of GPU types and replicas that holds a traffic under an SLO."""

from __future__ import annotations

import argparse
import math
from typing import Any

from fluidopt.cli.common import add_json_option, add_workload_options, format_table, print_json
from fluidopt.errors import InputError, require


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fleet``."""
    p = subparsers.add_parser(
        "fleet",
        help="plan replicas per GPU type for a traffic under p99 TTFT / TPOT targets, validated in simulation",
        description="Each deployment's per-replica SLO region (its fluid stability polytope in the class rates, "
        "derated by simulation), a mixed-integer program for replicas and class routing at least cost, the plan "
        "run in a multi-replica simulation (replicas added where the SLO binds), and the baselines on the same work: "
        "every homogeneous fleet and a throughput-per-class plan in Melange's manner.",
    )
    add_workload_options(p)
    p.add_argument("--deployments", required=True, help="FLEET.toml: [[deployment]] name, profile or gpu + model, ...")
    p.add_argument("--p99-ttft-s", type=float, help="target p99 time to first token (s)")
    p.add_argument("--p99-tpot-s", type=float, help="target p99 time per output token (s)")
    p.add_argument("--evaluate", help="NAME=COUNT,...: run this fleet and say whether it meets the SLO")
    p.add_argument(
        "--trace",
        help="a trace CSV with arrival times (Vidur's columns): a plan per --window-s window, an autoscaling schedule "
        "(the trace gives the classes, --bins of them, and their rates)",
    )
    p.add_argument("--window-s", type=float, default=3600.0, help="with --trace: the schedule's window (default 1 h)")
    p.add_argument("--out", help="with --trace: folder for schedule.json and schedule.png")
    p.add_argument(
        "--requests", type=int, default=3000, help="arrivals per simulated replicate (at least 300 per replica)"
    )
    p.add_argument("--replicates", type=int, default=3, help="independent seeds per simulated fleet (default 3)")
    p.add_argument("--seed", type=int, default=0, help="root seed of the simulations")
    p.add_argument("--no-baselines", action="store_true", help="skip the homogeneous and Melange-style baselines")
    p.add_argument(
        "--executor",
        choices=("serial", "processes", "dask"),
        default="serial",
        help="where the replicate simulations run: this process (default: small fleets), local processes, or Dask",
    )
    p.add_argument("--scheduler", help="Dask scheduler address (implies --executor dask)")
    add_json_option(p)
    p.set_defaults(handler=cmd_fleet)


def _counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = entry.partition("=")
        require(bool(sep) and name.strip() != "", "--evaluate", entry, "must read NAME=COUNT")
        try:
            count = int(value)
        except ValueError:
            raise InputError("--evaluate", entry, "COUNT must be a whole number") from None
        require(count >= 0, "--evaluate", entry, "COUNT must be >= 0")
        counts[name.strip()] = count
    require(bool(counts), "--evaluate", text, "must name at least one deployment")
    return counts


def cmd_fleet(args: argparse.Namespace) -> int:
    """Plan (or evaluate) a fleet and print it with its validation and baselines."""
    from fluidopt.answers.fleet import evaluate_counts, plan_fleet
    from fluidopt.answers.fleet_model import read_fleet
    from fluidopt.answers.fleet_program import Simulation
    from fluidopt.cli.common import workload_from_args
    from fluidopt.experiments.runs import Targets

    for flag, value in (("--p99-ttft-s", args.p99_ttft_s), ("--p99-tpot-s", args.p99_tpot_s)):
        if value is not None:
            require(math.isfinite(value) and value > 0, flag, value, "must be a time > 0 s")
    require(args.p99_ttft_s is not None or args.p99_tpot_s is not None, "--p99-ttft-s", None, "or --p99-tpot-s needed")
    require(args.requests >= 100, "--requests", args.requests, "must be >= 100")
    require(1 <= args.replicates <= 50, "--replicates", args.replicates, "must be in 1..50")
    targets = Targets(p99_ttft_s=args.p99_ttft_s, p99_tpot_s=args.p99_tpot_s)
    from fluidopt.experiments.sweep import make_executor

    executor = make_executor(args.executor, scheduler=args.scheduler)
    simulation = Simulation(requests=args.requests, replicates=args.replicates, seed=args.seed, executor=executor)
    deployments = read_fleet(args.deployments)
    if args.trace:
        return _schedule(args, deployments, targets, simulation)
    require(args.out is None, "--out", args.out, "applies to --trace")
    workload = workload_from_args(args)
    if args.evaluate:
        plan, line = evaluate_counts(workload, deployments, _counts(args.evaluate), targets, simulation)
        if args.json:
            print_json({"slo_met": bool(plan and plan.slo_met), "message": line, **_plan_json(plan)})
            return 0
        print(line)
        if plan is not None:
            _print_plan(plan, deployments)
        return 0
    answer = plan_fleet(workload, deployments, targets, simulation, baselines=not args.no_baselines)
    if args.json:
        print_json(answer.to_dict())
        return 0
    print(f"status: {answer.status}: {answer.message}")
    print(
        f"{workload.name} at {workload.total_rate_per_s:g} requests/s; SLO {targets.describe()}; "
        f"planned in {answer.wall_time_s:.1f} s"
    )
    if answer.plan is not None:
        _print_plan(answer.plan, deployments)
    if answer.baselines:
        rows = [
            (
                b["name"],
                "" if b["total_cost_per_hour"] is None else f"{b['total_cost_per_hour']:.2f}",
                _replica_text(b["replicas"]),
                "yes" if b["slo_met"] else "no",
            )
            for b in answer.baselines
        ]
        print(format_table(["baseline", "cost/h", "replicas", "meets SLO"], rows))
    return 0


def _schedule(args: argparse.Namespace, deployments: list[Any], targets: Any, simulation: Any) -> int:
    """``--trace``: a plan per window, the day's cost against static provisioning for the peak, and the figure."""
    from fluidopt.answers.fleet_schedule import plan_schedule, write_schedule
    from fluidopt.trace import read_trace

    require(args.evaluate is None, "--evaluate", args.evaluate, "does not combine with --trace")
    require(args.rate is None and args.scale is None, "--rate", args.rate, "does not combine with --trace")
    try:
        bins = int(str(args.bins))
    except ValueError:
        raise InputError("--bins", args.bins, "must be a whole number with --trace") from None
    require(1 <= bins <= 16, "--bins", bins, "must be in 1..16 with --trace")
    schedule = plan_schedule(
        read_trace(args.trace), deployments, targets, simulation, window_s=args.window_s, bins=bins
    )
    written = write_schedule(schedule, deployments, args.out) if args.out else []
    if args.json:
        print_json({**schedule.to_dict(), **({"written": [str(p) for p in written]} if written else {})})
        return 0
    rows = []
    for row in schedule.to_dict()["windows"]:
        replicas = ", ".join(f"{k} {v}" for k, v in row["replicas"].items()) or "none"
        cost = "" if row["cost_per_hour"] is None else f"{row['cost_per_hour']:.2f}"
        estimate = row["homogeneous_estimate_cost_per_hour"]
        rows.append(
            (
                f"{row['start_s'] / 3600:.2f}",
                f"{row['rate_per_s']:.2f}",
                replicas,
                cost,
                "yes" if row["slo_met"] else "no",
                "" if not math.isfinite(estimate) else f"{estimate:.2f}",
            )
        )
    print(format_table(["start h", "rate/s", "replicas", "cost/h", "meets SLO", "1 type (fluid) cost/h"], rows))
    saving = 1 - schedule.scheduled_cost / schedule.static_cost if schedule.static_cost > 0 else math.nan
    print(
        f"scheduled {schedule.scheduled_cost:.2f} against static provisioning for the peak "
        f"{schedule.static_cost:.2f} over the trace ({100 * saving:.0f} % less)"
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def _replica_text(replicas: Any) -> str:
    if replicas is None:
        return "none meets"
    if isinstance(replicas, dict):
        return ", ".join(f"{k} {v}" for k, v in replicas.items())
    return str(replicas)


def _plan_json(plan: Any) -> dict[str, Any]:
    from fluidopt.answers.fleet import validation_json

    if plan is None:
        return {}
    return {
        "plan": [
            {"name": k, "replicas": v, "class_shares": [float(s) for s in plan.shares[k]]}
            for k, v in plan.counts.items()
        ],
        "total_cost_per_hour": plan.cost_per_hour,
        "validation": validation_json(plan),
    }


def _print_plan(plan: Any, deployments: list[Any]) -> None:
    by_name = {d.name: d for d in deployments}
    rows = []
    for name, replicas in plan.counts.items():
        d = by_name[name]
        shares = " ".join(f"{100 * s:.0f}%" for s in plan.shares[name])
        rows.append((name, str(replicas), f"{d.cost_per_hour * replicas:.2f}", shares, f"{plan.utilisation[name]:.2f}"))
    print(format_table(["deployment", "replicas", "cost/h", "class shares", "fluid load"], rows))
    for name in plan.counts:
        print(f"  {name}: {by_name[name].command()}")
    ttft, tpot = plan.p99_ttft_s, plan.p99_tpot_s
    verdict = "meets" if plan.slo_met else "misses"
    print(
        f"simulated: p99 TTFT {ttft[0]:.3g} s [{ttft[1]:.3g}, {ttft[2]:.3g}], p99 TPOT {1e3 * tpot[0]:.3g} ms "
        f"[{1e3 * tpot[1]:.3g}, {1e3 * tpot[2]:.3g}] (95 % intervals): {verdict} the SLO; "
        f"total {plan.cost_per_hour:.2f}/h"
    )
