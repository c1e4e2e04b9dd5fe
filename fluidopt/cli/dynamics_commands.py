"""CLI commands for fluid trajectories and the asymptotic experiments."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

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

if TYPE_CHECKING:
    from fluidopt.fluid.dynamics import FluidSystem


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``trajectory`` and ``asymptotics``."""
    p = subparsers.add_parser("trajectory", help="fluid trajectory (iteration map or ODE) from a start state")
    add_workload_options(p)
    add_profile_options(p)
    p.add_argument(
        "--policy",
        choices=("wait", "wait-nowait", "nested-wait", "fcfs"),
        default="wait",
        help="policy whose fluid trajectory is traced",
    )
    p.add_argument("--boundaries", help="nested-wait: comma-separated last stage of each segment")
    p.add_argument("--thresholds", help="comma-separated n_j (default: WAIT thresholds from the fluid model)")
    p.add_argument("--horizon-s", type=float, default=60.0, help="length of the fluid trajectory (s)")
    p.add_argument("--method", choices=("map", "ode"), default="map", help="iteration map, or the ODE solved by scipy")
    p.add_argument(
        "--start",
        default="empty",
        help="empty, or 'queue=Q' (Q waiting per class), or 'stage:S=N' pairs like 'stage:0=6,stage:1=3'",
    )
    add_json_option(p)
    p.set_defaults(handler=cmd_trajectory)

    p = subparsers.add_parser("asymptotics", help="scaling experiments: fitted rates against the theory")
    p.add_argument("--quick", action="store_true", help="fewer zetas and replicates (seconds, for checks)")
    p.add_argument("--seed", type=int, default=0, help="root seed (replicate seeds are spawned from it)")
    add_executor_option(p)
    p.add_argument("--scheduler", help="Dask scheduler address")
    p.add_argument("--cache", help="folder caching finished simulation points")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    add_json_option(p)
    add_quiet_option(p)
    p.set_defaults(handler=cmd_asymptotics)


def _start_state(text: str, system: FluidSystem) -> tuple[np.ndarray, np.ndarray]:
    queue, stages = system.empty_state()
    if text == "empty":
        return queue, stages
    for part in text.split(","):
        try:
            key, value = part.split("=")
            amount = float(value)
            if not (amount >= 0 and amount < float("inf")):
                raise InputError("--start", text, f"amounts must be finite and >= 0, not {value}")
            if key == "queue":
                queue[:] = amount
            elif key.startswith("stage:"):
                stages[:, int(key.split(":")[1])] = amount
            else:
                raise ValueError
        except (ValueError, IndexError):
            raise InputError("--start", text, "must be 'empty', 'queue=Q' or 'stage:S=N' pairs") from None
    return queue, stages


def cmd_trajectory(args: argparse.Namespace) -> int:
    """Print a fluid trajectory summary (or the whole trajectory as JSON)."""
    from fluidopt.fluid.dynamics import FluidSystem, iterate_map, solve_ode
    from fluidopt.thresholds.nested import nested_wait_thresholds
    from fluidopt.thresholds.wait import wait_thresholds

    workload, profile = workload_from_args(args), profile_from_args(args)
    if args.thresholds:
        try:
            thresholds = tuple(float(v) for v in args.thresholds.split(","))
        except ValueError:
            raise InputError("--thresholds", args.thresholds, "must be comma-separated numbers") from None
    elif args.policy == "fcfs":
        thresholds = ()
    elif args.policy == "nested-wait":
        design = nested_wait_thresholds(workload, profile)
        thresholds = tuple(float(v) for v in design.thresholds)
    else:
        thresholds = tuple(float(v) for v in wait_thresholds(workload, profile).thresholds)
    boundaries: tuple[int, ...] = ()
    if args.policy == "nested-wait":
        if args.boundaries:
            try:
                boundaries = tuple(int(v) for v in args.boundaries.split(","))
            except ValueError:
                raise InputError("--boundaries", args.boundaries, "must be comma-separated stages") from None
        else:
            boundaries = nested_wait_thresholds(workload, profile).segments.boundaries
    system = FluidSystem(workload, profile, args.policy, thresholds, boundaries)
    queue, stages = _start_state(args.start, system)
    if args.method == "map":
        trajectory = iterate_map(system, horizon_s=args.horizon_s, queue=queue, stages=stages)
    else:
        trajectory = solve_ode(system, horizon_s=args.horizon_s, queue=queue, stages=stages)
    if args.json:
        print_json(
            {"method": args.method, "policy": args.policy, "thresholds": list(thresholds), **trajectory.to_dict()}
        )
        return 0
    picks = np.unique(np.linspace(0, trajectory.times_s.size - 1, 12).astype(int))
    rows = [
        (trajectory.times_s[i], trajectory.queue[i].sum(), trajectory.memory_tokens[i], trajectory.completed[i])
        for i in picks
    ]
    print(f"fluid {args.method} trajectory, {args.policy} on {profile.name}, workload {workload.name}")
    print(format_table(["time s", "queue", "memory tokens", "completed"], rows))
    print(
        f"throughput over the second half: {trajectory.throughput_per_s(args.horizon_s / 2):.6g} requests/s "
        f"(arrival rate {workload.total_rate_per_s:.6g})"
    )
    return 0


def cmd_asymptotics(args: argparse.Namespace) -> int:
    """Run the scaling experiments and print fitted slopes against the theory."""
    from fluidopt.experiments.asymptotics import run_asymptotics
    from fluidopt.experiments.sweep import make_executor

    result = run_asymptotics(
        quick=args.quick,
        seed=args.seed,
        executor=make_executor(args.executor, scheduler=args.scheduler),
        cache_dir=args.cache,
        progress=args.progress,
    )
    scaling = {name: r.to_dict() for name, r in result["scaling"].items()}
    if args.json:
        print_json(
            {"experiments": scaling, "sample_paths": result["sample_paths"].to_dict(), "settings": result["settings"]}
        )
        return 0
    rows = []
    for name, data in scaling.items():
        for metric in ("gap_slope", "latency_slope"):
            slope = data[metric]
            rows.append(
                (
                    name,
                    metric.replace("_slope", ""),
                    slope["slope"],
                    f"[{slope['ci'][0]:.3f}, {slope['ci'][1]:.3f}]",
                    "-" if slope["theory"] is None else slope["theory"],
                    {True: "yes", False: "no", None: "-"}[slope["covers_theory"]],
                )
            )
    print(format_table(["experiment", "metric", "slope", "95% CI", "theory", "covers"], rows))
    paths = result["sample_paths"]
    print(
        "scaled sample paths: sup |Q(t)/zeta - fluid q(t)| = "
        + ", ".join(f"{d:.3g} (zeta {z:g})" for z, d in zip(paths.zetas, paths.distances))
    )
    return 0
