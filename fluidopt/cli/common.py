"""Shared pieces of the command-line interface: options, loading, output."""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from fluidopt.cli.tables import TABLE_WIDTH, format_table  # noqa: F401  (every command prints through it)
from fluidopt.errors import InputError
from fluidopt.fluid.constraints import Constraints
from fluidopt.profile import GPUProfile, load_profile
from fluidopt.workload import Workload, load_workload

DEFAULT_PROFILE = "a100-80gb-llama-3-8b"
DEFAULT_WORKLOAD = "p512d20"


def add_workload_options(parser: argparse.ArgumentParser, default: str | None = DEFAULT_WORKLOAD) -> None:
    """Options that select and rescale a workload."""
    parser.add_argument("--workload", "-w", default=default, help="preset name, workload TOML, or trace CSV")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--rate", type=float, help="total arrival rate in requests/s (keeps class shares)")
    group.add_argument("--scale", type=float, help="multiply every class rate by this factor")
    parser.add_argument(
        "--bins", default="8", help="trace CSV: number of equal-mass decode bins, or comma-separated edges"
    )
    parser.add_argument(
        "--prefill-statistic", choices=("mean", "max"), default="mean", help="trace CSV: prefill length of a bin"
    )


def add_profile_options(parser: argparse.ArgumentParser) -> None:
    """Options that select a GPU profile."""
    parser.add_argument("--profile", "-p", default=DEFAULT_PROFILE, help="preset name or profile TOML")
    parser.add_argument("--capacity-tokens", type=int, help="override the profile's KV capacity (tokens)")


def add_constraint_options(parser: argparse.ArgumentParser) -> None:
    """Options for the extra per-iteration limits of the fluid model."""
    parser.add_argument("--tbt-max-s", type=float, help="upper bound on the iteration time (s)")
    parser.add_argument("--max-batch-sequences", type=float, help="upper bound on sequences per iteration")
    parser.add_argument("--prefill-token-budget", type=float, help="upper bound on prefill tokens per iteration")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` switch."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def workload_from_args(args: argparse.Namespace) -> Workload:
    """Resolve the workload options."""
    bins: int | list[float]
    text = str(args.bins)
    try:
        bins = [float(v) for v in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise InputError("--bins", text, "must be a whole number or comma-separated edges") from None
    return load_workload(
        args.workload, rate_per_s=args.rate, scale=args.scale, bins=bins, prefill_statistic=args.prefill_statistic
    )


def profile_from_args(args: argparse.Namespace) -> GPUProfile:
    """Resolve the profile options."""
    return load_profile(args.profile, kv_capacity_tokens=args.capacity_tokens)


def constraints_from_args(args: argparse.Namespace) -> Constraints:
    """Resolve the constraint options."""
    return Constraints(
        tbt_max_s=args.tbt_max_s,
        max_batch_sequences=args.max_batch_sequences,
        prefill_token_budget=args.prefill_token_budget,
    )


def add_executor_option(parser: argparse.ArgumentParser) -> None:
    """The ``--executor`` option shared by every command that runs replicate simulations."""
    parser.add_argument(
        "--executor",
        choices=("serial", "processes", "dask"),
        default="processes",
        help="where replicate runs execute: one process, local worker processes, or a Dask cluster (--scheduler)",
    )


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON (NaN and infinities as null)."""
    print(json.dumps(_json_safe(data), indent=2, sort_keys=False))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_figure_atomic(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure through a temporary file, so a failure leaves nothing behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".png", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` for the commands that can run over a few seconds (they show progress on a terminal)."""
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (they are drawn on standard error only when it is a terminal)",
    )
