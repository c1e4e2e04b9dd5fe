"""``fluidopt figures``: regenerate every figure with its data and config."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fluidopt.cli.common import add_executor_option, add_quiet_option

DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``figures`` command."""
    from fluidopt.experiments.catalog import PAPER_PROFILE

    p = subparsers.add_parser("figures", help="regenerate the figures (PNG + CSV data + JSON config)")
    p.add_argument("--quick", action="store_true", help="small sizes: every figure in seconds")
    p.add_argument("--only", action="append", help="only this figure (repeatable; an unknown name lists the figures)")
    p.add_argument("--out", default="figures", help="output folder (default: figures)")
    p.add_argument("--profile", default=PAPER_PROFILE, help="GPU profile of the paper's experiment figures")
    p.add_argument("--seed", type=int, default=0, help="root seed of every figure's simulations")
    add_executor_option(p)
    p.add_argument(
        "--timing",
        choices=("measured", "vidur-predictor"),
        default="measured",
        help="iteration time of the paper-* figures: the measured model, or Vidur's execution-time predictor "
        "(then only the paper-* figures, saved as NAME-vidur-predictor)",
    )
    p.add_argument("--scheduler", help="Dask scheduler address")
    p.add_argument(
        "--shared-data",
        default=str(DEFAULT_SHARED_DATA),
        help="folder with the public measurements and traces (used when present)",
    )
    add_quiet_option(p)
    p.set_defaults(handler=cmd_figures)


def cmd_figures(args: argparse.Namespace) -> int:
    """Regenerate the figures and list the files written."""
    from fluidopt.experiments.figures import make_figures
    from fluidopt.experiments.sweep import make_executor

    start = time.perf_counter()
    written = make_figures(
        args.out,
        quick=args.quick,
        only=args.only,
        profile=args.profile,
        seed=args.seed,
        executor=make_executor(args.executor, scheduler=args.scheduler),
        shared_data=args.shared_data,
        timing=args.timing,
    )
    for name, paths in written.items():
        print(f"{name}: " + ", ".join(str(p) for p in paths))
    print(f"{len(written)} figures in {time.perf_counter() - start:.1f} s")
    return 0
