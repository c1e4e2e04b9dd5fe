"""Up-front validation of the CLI's shared arguments: every value is checked before any work starts.

Each failure raises :class:`~fluidopt.errors.InputError` naming the option and the value, so the
CLI prints one line and exits with status 2, and nothing is computed or written first.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from fluidopt.errors import InputError

MAX_RATE_PER_S = 1e7
MAX_KAPPA_S = 1e6
MAX_SEED = 2**63 - 1

# option attribute -> smallest allowed value
POSITIVE_INTEGERS = {
    "replicates": 1,
    "requests": 1,
    "steps": 1,
    "segments": 1,
    "chunk_tokens": 1,
    "max_batch": 0,
    "token_budget": 1,
    "block_size": 1,
    "capacity_tokens": 1,
    "kv_capacity_tokens": 1,
    "tensor_parallel": 1,
}
POSITIVE_FLOATS = (
    "p99_latency_s",
    "p99_ttft_s",
    "horizon_s",
    "tbt_max_s",
    "max_batch_sequences",
    "prefill_token_budget",
    "delta",
    "zeta",
)


def validate_common_arguments(args: argparse.Namespace) -> None:
    """Check every shared option present on ``args`` (raises :class:`InputError`)."""
    values = vars(args)
    seed = values.get("seed")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InputError("--seed", seed, f"must be a whole number in [0, {MAX_SEED}]")
    for name, minimum in POSITIVE_INTEGERS.items():
        value = values.get(name)
        if value is None or not isinstance(value, int):
            continue
        if value < minimum:
            raise InputError(f"--{name.replace('_', '-')}", value, f"must be >= {minimum}")
    for name in POSITIVE_FLOATS:
        value = values.get(name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')}", value, "must be a finite number > 0")
    for name in ("warmup_s", "eta"):
        value = values.get(name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"--{name.replace('_', '-')}", value, "must be a finite number >= 0")
    rate = values.get("rate")
    if rate is not None and not (math.isfinite(rate) and 0 <= rate <= MAX_RATE_PER_S):
        raise InputError("--rate", rate, f"must be a finite number in [0, {MAX_RATE_PER_S:g}] requests/s")
    scale = values.get("scale")
    if scale is not None and not (math.isfinite(scale) and 0 <= scale <= MAX_RATE_PER_S):
        raise InputError("--scale", scale, "must be a finite number >= 0")
    kappa = values.get("kappa")
    if kappa is not None and not (math.isfinite(kappa) and 0 < kappa <= MAX_KAPPA_S):
        raise InputError("--kappa", kappa, f"must be a finite number in (0, {MAX_KAPPA_S:g}] seconds")
    slack = values.get("slack")
    if slack is not None and not (math.isfinite(slack) and 0 <= slack <= 1e3):
        raise InputError("--slack", slack, "must be a finite number in [0, 1000]")
    watermark = values.get("watermark")
    if watermark is not None and not (math.isfinite(watermark) and 0 <= watermark < 1):
        raise InputError("--watermark", watermark, "must be in [0, 1)")
    for option in ("out", "plot"):
        if isinstance(values.get(option), str):
            check_output_path(values[option], f"--{option}", folder=values.get("command") in ("figures", "report"))
    if isinstance(values.get("cache"), str):
        check_output_path(values["cache"], "--cache", folder=True)


def check_output_path(path: str, option: str, *, folder: bool = False) -> None:
    """Raise unless ``path`` can be written: a file (not a folder) in a writable folder, or a folder."""
    target = Path(path)
    if folder:
        existing = target
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        if existing.exists() and not existing.is_dir():
            raise InputError(option, path, "is not a folder")
        if not os.access(existing, os.W_OK):
            raise InputError(option, path, "cannot be written (no permission)")
        return
    if target.is_dir():
        raise InputError(option, path, "is a folder, not a file")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(option, path, "cannot be written: its folder does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InputError(option, path, "cannot be written (no permission)")
