"""Fitter: GPU profiles from Vidur's non-attention kernel timings (``mlp.csv``).

Vidur (microsoft/vidur, MIT licence) ships per-layer kernel timings in ``mlp.csv``.  Its
simulator computes the non-attention time of one iteration as ``layers x`` the sum of the
medians of the operators listed in :data:`NON_ATTENTION_OPS`.  We fit that time, as a function
of the number of tokens in the batch, by a convex piecewise-linear curve
``max(floor, intercept + slope * tokens)``: a flat weight-read floor for small batches and a
compute-bound slope for large ones.  The memory-bound decode attention is added from the KV
bytes per token and the HBM bandwidth (see :mod:`fluidopt.hardware`).  The result is an
``affine`` timing (:mod:`fluidopt.timing.affine`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from fluidopt.errors import InputError, require
from fluidopt.hardware import GPUSpec, ModelShape, decode_attention_s_per_token, kv_capacity_tokens, kv_heads_per_gpu
from fluidopt.profile import GPUProfile
from fluidopt.timing.affine import AffinePiece

NON_ATTENTION_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)


@dataclass(frozen=True)
class Measurements:
    """Non-attention iteration time (seconds) against tokens in the batch."""

    tokens: np.ndarray
    time_s: np.ndarray
    source: str


@dataclass(frozen=True)
class PiecewiseFit:
    """Fit ``time = max(floor_s, intercept_s + slope_s * tokens)`` and its quality."""

    floor_s: float
    intercept_s: float
    slope_s_per_token: float
    mape: float
    r2: float
    points: int

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        """Fitted time for the given token counts."""
        tokens = np.asarray(tokens, dtype=float)
        return np.maximum(self.floor_s, self.intercept_s + self.slope_s_per_token * tokens)

    @property
    def knee_tokens(self) -> float:
        """Token count where the compute-bound line crosses the floor."""
        return (self.floor_s - self.intercept_s) / self.slope_s_per_token


def read_vidur_mlp_csv(
    path: str | os.PathLike[str], layers: int, tensor_parallel: int = 1, max_tokens: int | None = None
) -> Measurements:
    """Read a Vidur ``mlp.csv`` into (tokens, non-attention time per iteration).

    Parameters
    ----------
    path : path
        The CSV file.
    layers : int
        Transformer layers of the model (times are per layer in the file).
    tensor_parallel : int
        Keep rows with this ``num_tensor_parallel_workers``.
    max_tokens : int, optional
        Drop rows with more tokens (the fitted range).

    """
    path = Path(path)
    try:
        stream = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError("path", str(path), f"cannot be read ({exc.strerror})") from None
    columns = [f"time_stats.{op}.median" for op in NON_ATTENTION_OPS]
    tokens: list[float] = []
    times: list[float] = []
    with stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        for column in [*columns, "num_tokens", "num_tensor_parallel_workers"]:
            if column not in header:
                raise InputError(f"{path.name}: columns", len(header), f"must include {column!r}")
        for line, row in enumerate(reader, start=2):
            try:
                tp = int(float(row["num_tensor_parallel_workers"]))
                count = float(row["num_tokens"])
                per_layer_ms = sum(float(row[c]) for c in columns)
            except (TypeError, ValueError):
                raise InputError(f"{path.name}:{line}", row.get("num_tokens"), "has a non-numeric value") from None
            if tp != tensor_parallel or (max_tokens is not None and count > max_tokens):
                continue
            tokens.append(count)
            times.append(layers * per_layer_ms / 1000.0)
    require(
        len(tokens) >= 3,
        f"{path.name}: rows with tensor_parallel={tensor_parallel}",
        len(tokens),
        "need at least 3 measurements to fit",
    )
    order = np.argsort(tokens, kind="stable")
    return Measurements(np.asarray(tokens)[order], np.asarray(times)[order], str(path))


def fit_piecewise(measurements: Measurements) -> PiecewiseFit:
    """Least-squares fit (relative residuals) of ``max(floor, intercept + slope * tokens)``.

    The breakpoint is initialised by a scan over the measured token counts, then all three
    parameters are refined with :func:`scipy.optimize.least_squares`.
    """
    x, y = measurements.tokens, measurements.time_s
    require(
        x.size >= 5,
        f"{Path(measurements.source).name}: rows",
        int(x.size),
        "need at least 5 token counts to fit a floor and a slope (each side of the knee needs two)",
    )
    best = None
    for split in range(2, x.size - 2):
        floor = float(np.median(y[:split]))
        slope, intercept = np.polyfit(x[split:], y[split:], 1, w=1 / y[split:])
        pred = np.maximum(floor, intercept + slope * x)
        loss = float(np.sum(((pred - y) / y) ** 2))
        if best is None or loss < best[0]:
            best = (loss, floor, intercept, slope)
    assert best is not None
    start = np.array(best[1:])

    def residuals(params: np.ndarray) -> np.ndarray:
        floor, intercept, slope = params
        return (np.maximum(floor, intercept + slope * x) - y) / y

    solution = least_squares(residuals, start, x_scale=np.abs(start) + 1e-9)
    floor, intercept, slope = (float(v) for v in solution.x)
    pred = np.maximum(floor, intercept + slope * x)
    mape = float(np.mean(np.abs(pred - y) / y))
    r2 = float(1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))
    return PiecewiseFit(floor, intercept, slope, mape, r2, int(x.size))


def profile_from_fit(
    name: str,
    fit: PiecewiseFit,
    gpu: GPUSpec,
    model: ModelShape,
    *,
    memory_utilisation: float = 0.9,
    bandwidth_efficiency: float = 1.0,
    source: str = "",
    tensor_parallel: int = 1,
) -> GPUProfile:
    """Assemble a two-piece GPU profile from a non-attention fit and the hardware.

    Both pieces carry the decode-attention cost per KV token read.  The floor piece is the
    weight-read floor; the compute piece charges ``slope`` per prefill token and per sequence
    (a decode sequence processes one token; a prefill of ``l`` tokens is charged ``l + 1``,
    one token more than it processes).
    """
    # Each GPU of a tensor-parallel group reads its share of every cached token's K and V.
    share = kv_heads_per_gpu(model, tensor_parallel) / model.kv_heads
    per_kv = decode_attention_s_per_token(gpu, model, bandwidth_efficiency) * share
    intercept = max(fit.intercept_s, 0.0)
    pieces = (
        AffinePiece(fit.floor_s, per_kv, 0.0, 0.0),
        AffinePiece(intercept, per_kv, fit.slope_s_per_token, fit.slope_s_per_token),
    )
    capacity = kv_capacity_tokens(gpu, model, memory_utilisation, tensor_parallel)
    description = (
        f"{model.name} on {gpu.name}. KV capacity from fluidopt's memory planner: "
        f"({gpu.hbm_gib:g} GiB x {memory_utilisation:g} - {model.parameters:.3g} params x 2 B) / "
        f"{model.kv_bytes_per_token} B per token. Iteration time: max of a weight-read floor and a "
        f"compute-bound line fitted to the non-attention kernel timings measured by Vidur "
        f"(microsoft/vidur, MIT licence){' in ' + source if source else ''}, plus decode attention at "
        f"{model.kv_bytes_per_token} B per KV token over {gpu.hbm_bandwidth_bytes_per_s / 1e12:g} TB/s HBM."
    )
    fit_info = {
        "mape": fit.mape,
        "r2": fit.r2,
        "points": fit.points,
        "floor_s": fit.floor_s,
        "intercept_s": fit.intercept_s,
        "slope_s_per_token": fit.slope_s_per_token,
        "knee_tokens": fit.knee_tokens,
        "source": source,
        "gpu": gpu.name,
        "model": model.name,
        **({"tensor_parallel": tensor_parallel} if tensor_parallel != 1 else {}),
    }
    return GPUProfile(name, capacity, pieces, description, fit_info, gpu=gpu.name, gpu_memory_gib=gpu.hbm_gib)


def fit_vidur_profile(
    path: str | os.PathLike[str],
    gpu: GPUSpec,
    model: ModelShape,
    name: str,
    *,
    tensor_parallel: int = 1,
    memory_utilisation: float = 0.9,
    bandwidth_efficiency: float = 1.0,
    source: str | None = None,
) -> GPUProfile:
    """Fit a GPU profile from a Vidur ``mlp.csv`` (see :func:`profile_from_fit`)."""
    measurements = read_vidur_mlp_csv(path, model.layers, tensor_parallel)
    fit = fit_piecewise(measurements)
    return profile_from_fit(
        name,
        fit,
        gpu,
        model,
        memory_utilisation=memory_utilisation,
        bandwidth_efficiency=bandwidth_efficiency,
        source=source if source is not None else Path(path).as_posix(),
        tensor_parallel=tensor_parallel,
    )


def transfer_fit(fit: PiecewiseFit, reference_from: PiecewiseFit, reference_to: PiecewiseFit) -> PiecewiseFit:
    """Carry a fit to another GPU by the ratios seen on a reference model measured on both.

    Used where no measurement exists (Llama-3-8B on H100): floor, intercept and slope are each
    multiplied by the reference model's H100/A100 ratio.  Fit quality fields are set to NaN
    because nothing was measured.
    """
    return PiecewiseFit(
        floor_s=fit.floor_s * reference_to.floor_s / reference_from.floor_s,
        intercept_s=fit.intercept_s * reference_to.intercept_s / reference_from.intercept_s,
        slope_s_per_token=fit.slope_s_per_token * reference_to.slope_s_per_token / reference_from.slope_s_per_token,
        mape=float("nan"),
        r2=float("nan"),
        points=0,
    )
