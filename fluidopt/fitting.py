"""Fitting GPU profiles from Vidur-format profiling measurements.

Vidur (microsoft/vidur, MIT licence) ships per-layer kernel timings in ``mlp.csv``.  Its
simulator computes the non-attention time of one iteration as ``layers x`` the sum of the
medians of the operators listed in :data:`NON_ATTENTION_OPS`.  We fit that time, as a function
of the number of tokens in the batch, by a convex piecewise-linear curve
``max(floor, intercept + slope * tokens)``: a flat weight-read floor for small batches and a
compute-bound slope for large ones.  The memory-bound decode attention is added from the KV
bytes per token and the HBM bandwidth (see :mod:`fluidopt.hardware`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from fluidopt.errors import InputError, require
from fluidopt.hardware import (
    GPUSpec,
    ModelShape,
    decode_attention_s_per_token,
    kv_capacity_tokens,
    vidur_kv_capacity_tokens,
)
from fluidopt.profile import AffinePiece, GPUProfile
from fluidopt.timing import MeasuredTiming

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
) -> GPUProfile:
    """Assemble a two-piece GPU profile from a non-attention fit and the hardware.

    Both pieces carry the decode-attention cost per KV token read.  The floor piece is the
    weight-read floor; the compute piece charges ``slope`` per prefill token and per sequence
    (a decode sequence processes one token; a prefill of ``l`` tokens is charged ``l + 1``,
    one token more than it processes).
    """
    per_kv = decode_attention_s_per_token(gpu, model, bandwidth_efficiency)
    intercept = max(fit.intercept_s, 0.0)
    pieces = (
        AffinePiece(fit.floor_s, per_kv, 0.0, 0.0),
        AffinePiece(intercept, per_kv, fit.slope_s_per_token, fit.slope_s_per_token),
    )
    capacity = kv_capacity_tokens(gpu, model, memory_utilisation)
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
    }
    return GPUProfile(name, capacity, pieces, description, fit_info)


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


# ------------------------------------------------------------------ attention-aware (measured) profiles
VIDUR_ATTENTION_COLUMNS = {
    "save": "time_stats.attn_kv_cache_save.median",
    "prefill": "time_stats.attn_prefill.median",
    "decode": "time_stats.attn_decode.median",
    "batch": "batch_size",
    "chunk": "prefill_chunk_size",
    "kv": "kv_cache_size",
    "is_prefill": "is_prefill",
}
SAMPLE_ATTENTION_COLUMNS = ("regime", "chunk", "kv", "batch", "save", "prefill", "decode")
BATCH_LOG_COLUMNS = ("prefill_tokens", "decode_sequences", "cached_tokens", "seconds")
# Every 16 tokens to 1,024 (the GEMM tiles make 16-token steps: 34.6 ms at 512 tokens, 40.0 at
# 528 on the A100 Llama-3-8B), every 64 to 4,096, then doubling.
DEFAULT_KNOTS = (
    (1, 8) + tuple(range(16, 1024, 16)) + tuple(range(1024, 4096, 64)) + (4096, 6144, 8192, 12288, 16384, 24576)
)


@dataclass(frozen=True)
class AttentionMeasurements:
    """Per-layer attention timings (seconds per iteration, i.e. times ``layers``).

    ``prefill_*`` rows: one request prefilling ``chunk`` tokens on top of ``kv`` cached ones;
    ``decode_*`` rows: ``batch`` requests decoding with ``kv`` cached tokens each.
    """

    prefill_chunk: np.ndarray
    prefill_kv: np.ndarray
    prefill_s: np.ndarray
    prefill_save_s: np.ndarray
    decode_batch: np.ndarray
    decode_kv: np.ndarray
    decode_s: np.ndarray
    decode_save_s: np.ndarray
    source: str


@dataclass(frozen=True)
class ComponentFit:
    """Quality of one fitted component against the measurements it came from."""

    name: str
    model: str
    mape: float
    max_abs_pct_error: float
    points: int

    def to_dict(self) -> dict[str, Any]:
        """TOML/JSON-ready mapping."""
        return {
            "model": self.model,
            "mape": self.mape,
            "max_abs_pct_error": self.max_abs_pct_error,
            "points": self.points,
        }


def _quality(name: str, model: str, predicted: np.ndarray, measured: np.ndarray) -> ComponentFit:
    error = np.abs(predicted - measured) / measured
    return ComponentFit(name, model, float(np.mean(error)), float(np.max(error)), int(measured.size))


def _open_csv(path: Path) -> tuple[Any, list[str]]:
    try:
        stream = path.open(newline="", encoding="utf-8")
        reader = csv.DictReader(stream)
        header = list(reader.fieldnames or [])
    except OSError as exc:
        raise InputError("path", str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(str(path), "not UTF-8", "must be a UTF-8 CSV file") from None
    return (stream, reader), header


def _number(row: dict[str, Any], column: str, where: str) -> float:
    raw = row.get(column)
    try:
        value = float(raw) if raw not in (None, "") else float("nan")
    except ValueError:
        raise InputError(f"{where} column {column}", raw, "must be a number") from None
    if not np.isfinite(value):
        raise InputError(f"{where} column {column}", raw, "must be a finite number")
    return value


def read_attention_csv(path: str | os.PathLike[str], layers: int, tensor_parallel: int = 1) -> AttentionMeasurements:
    """Read attention timings from a Vidur ``attention.csv`` or the shared sample format.

    Vidur's format has ``time_stats.attn_{prefill,decode,kv_cache_save}.median`` (ms per layer)
    with ``batch_size, prefill_chunk_size, kv_cache_size, is_prefill``; the sample format
    (``shared/data/profiles/vidur/a100/Meta-Llama-3-8B/attention-sample.csv``) has
    ``regime, chunk, kv, batch, save, prefill, decode``.  Times must be >= 0 and at least
    the fits need a handful of prefill and decode rows (:func:`fit_measured_timing`).
    """
    path = Path(path)
    (stream, reader), header = _open_csv(path)
    vidur = VIDUR_ATTENTION_COLUMNS["prefill"] in header
    needed = list(VIDUR_ATTENTION_COLUMNS.values()) if vidur else list(SAMPLE_ATTENTION_COLUMNS)
    pre: list[tuple[float, float, float, float]] = []
    dec: list[tuple[float, float, float, float]] = []
    with stream:
        for column in needed:
            if column not in header:
                raise InputError(f"{path.name}: columns", ",".join(header[:8]), f"must include {column!r}")
        for line, row in enumerate(reader, start=2):
            where = f"{path.name} row {line}"
            if vidur:
                if "num_tensor_parallel_workers" in row and row["num_tensor_parallel_workers"] not in (None, ""):
                    if int(_number(row, "num_tensor_parallel_workers", where)) != tensor_parallel:
                        continue
                is_prefill = str(row.get("is_prefill", "")).strip().lower() == "true"
                chunk = _number(row, "prefill_chunk_size", where)
                kv = _number(row, "kv_cache_size", where)
                batch = _number(row, "batch_size", where)
                save = _number(row, VIDUR_ATTENTION_COLUMNS["save"], where)
                value = _number(row, VIDUR_ATTENTION_COLUMNS["prefill" if is_prefill else "decode"], where)
            else:
                regime = str(row.get("regime", "")).strip()
                if regime not in ("P", "F", "D"):
                    raise InputError(f"{where} column regime", regime, "must be P, F or D")
                is_prefill = regime != "D"
                chunk = _number(row, "chunk", where)
                kv = _number(row, "kv", where)
                batch = _number(row, "batch", where)
                save = _number(row, "save", where)
                value = _number(row, "prefill" if is_prefill else "decode", where)
            for column, number in (("time", value), ("save", save), ("kv", kv), ("batch", batch), ("chunk", chunk)):
                if number < 0:
                    raise InputError(f"{where} column {column}", number, "must be >= 0")
            scale = layers / 1000.0
            if is_prefill:
                if chunk <= 0:
                    raise InputError(f"{where} column chunk", chunk, "must be > 0 for a prefill row")
                pre.append((chunk, kv, value * scale, save * scale))
            else:
                if batch <= 0:
                    raise InputError(f"{where} column batch", batch, "must be > 0 for a decode row")
                dec.append((batch, kv, value * scale, save * scale))
    pre_arr = np.asarray(pre, dtype=float).reshape(-1, 4)
    dec_arr = np.asarray(dec, dtype=float).reshape(-1, 4)
    return AttentionMeasurements(
        prefill_chunk=pre_arr[:, 0],
        prefill_kv=pre_arr[:, 1],
        prefill_s=pre_arr[:, 2],
        prefill_save_s=pre_arr[:, 3],
        decode_batch=dec_arr[:, 0],
        decode_kv=dec_arr[:, 1],
        decode_s=dec_arr[:, 2],
        decode_save_s=dec_arr[:, 3],
        source=str(path),
    )


def fit_linear_spline(
    tokens: np.ndarray, times: np.ndarray, knots: tuple[float, ...], smoothing: float = 1e-3
) -> np.ndarray:
    """Least-squares linear spline on fixed ``knots`` (relative residuals, light curvature penalty).

    Returns the values at the knots.  Knots outside the data are held by the penalty on second
    differences, so gaps in the measurements interpolate linearly.  Values are made
    non-decreasing (a bigger batch never costs less), then clipped at zero.
    """
    x = np.asarray(tokens, dtype=float)
    y = np.asarray(times, dtype=float)
    xs = np.asarray(knots, dtype=float)
    basis = np.zeros((x.size, xs.size))
    index = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, xs.size - 2)
    weight = np.clip((x - xs[index]) / (xs[index + 1] - xs[index]), 0.0, None)
    beyond = x > xs[-1]
    basis[np.arange(x.size), index] = 1 - weight
    basis[np.arange(x.size), index + 1] = weight
    basis[beyond] = 0.0
    slope = (x[beyond] - xs[-2]) / (xs[-1] - xs[-2])
    basis[beyond, -2] = 1 - slope
    basis[beyond, -1] = slope
    scale = 1.0 / np.maximum(y, 1e-12)
    rows = basis * scale[:, None]
    target = y * scale
    penalty = np.zeros((max(xs.size - 2, 0), xs.size))
    for r in range(penalty.shape[0]):
        penalty[r, r : r + 3] = (1.0, -2.0, 1.0)
    penalty *= smoothing / max(float(np.median(y)), 1e-12)
    system = np.vstack([rows, penalty])
    rhs = np.concatenate([target, np.zeros(penalty.shape[0])])
    values = np.linalg.lstsq(system, rhs, rcond=None)[0]
    return np.maximum(np.maximum.accumulate(values), 0.0)


def fit_prefill_attention(chunk: np.ndarray, kv: np.ndarray, seconds: np.ndarray) -> tuple[float, ...]:
    """Weighted least squares of ``p0 + p_c c + p_ck c k + p_cc c^2`` (relative residuals, non-negative slopes)."""
    from scipy.optimize import lsq_linear

    design = np.column_stack([np.ones_like(chunk), chunk, chunk * kv, chunk * chunk])
    scale = 1.0 / seconds
    norms = np.abs(design).max(axis=0)
    solution = lsq_linear(design * scale[:, None] / norms, seconds * scale, bounds=([-np.inf, 0, 0, 0], [np.inf] * 4))
    return tuple(float(v) for v in solution.x / norms)


def fit_decode_attention(batch: np.ndarray, kv: np.ndarray, seconds: np.ndarray) -> tuple[float, ...]:
    """Fit ``max(d0 + d_b B + d_kv B k, e0 + e_k k)`` by least squares on relative residuals."""
    design = np.column_stack([np.ones_like(batch), batch, batch * kv])
    first = np.linalg.lstsq(design / seconds[:, None], np.ones_like(seconds), rcond=None)[0]
    single = batch <= 2
    if single.sum() >= 2:
        floor = np.polyfit(kv[single], seconds[single], 1)
        second = np.array([floor[1], floor[0]])
    else:
        second = np.array([0.0, 0.0])
    start = np.concatenate([first, second])
    norms = np.array(
        [
            seconds.mean(),
            seconds.mean() / batch.mean(),
            seconds.mean() / (batch * kv).mean(),
            seconds.mean(),
            seconds.mean() / max(kv.mean(), 1.0),
        ]
    )

    def residuals(params: np.ndarray) -> np.ndarray:
        d0, db, dkv, e0, ek = params * norms
        predicted = np.maximum(d0 + db * batch + dkv * batch * kv, e0 + ek * kv)
        return (predicted - seconds) / seconds

    solution = least_squares(
        residuals, start / norms, bounds=([-np.inf, 0, 0, -np.inf, 0], [np.inf] * 5), x_scale="jac"
    )
    return tuple(float(v) for v in solution.x * norms)


def _require_rows(count: int, minimum: int, where: str) -> None:
    require(count >= minimum, where, count, f"need at least {minimum} rows to fit")


def fit_measured_timing(
    mlp: Measurements, attention: AttentionMeasurements, layers: int, knots: tuple[float, ...] = DEFAULT_KNOTS
) -> tuple[MeasuredTiming, dict[str, ComponentFit]]:
    """Fit every component of a :class:`~fluidopt.timing.MeasuredTiming` and report its error.

    Non-attention kernels and KV-cache save are linear splines in the batch's token count (the
    save rows of prefills count their chunk, those of decodes their batch, as Vidur learns it);
    prefill and decode attention are the parametric forms of :mod:`fluidopt.timing`.
    """
    _require_rows(mlp.tokens.size, 3, f"{Path(mlp.source).name}: non-attention rows")
    _require_rows(attention.prefill_s.size, 4, f"{Path(attention.source).name}: prefill rows")
    _require_rows(attention.decode_s.size, 5, f"{Path(attention.source).name}: decode rows")
    top = max(float(mlp.tokens.max()), 2.0)
    used = tuple(k for k in knots if k < top) + (top,)
    source = Path(attention.source).name
    non_attention = fit_linear_spline(mlp.tokens, mlp.time_s, used)
    save_ok = attention.prefill_save_s > 0
    _require_rows(int(save_ok.sum()), 3, f"{source}: prefill rows with a positive save time")
    save_chunk, save_cached = attention.prefill_chunk[save_ok], attention.prefill_kv[save_ok]
    save_rate = fit_linear_spline(
        save_chunk + save_cached, attention.prefill_save_s[save_ok] / save_chunk, used, smoothing=1.0
    )
    dsave_ok = attention.decode_save_s > 0
    _require_rows(int(dsave_ok.sum()), 2, f"{source}: decode rows with a positive save time")
    slope, intercept = np.polyfit(
        attention.decode_batch[dsave_ok], attention.decode_save_s[dsave_ok], 1, w=1 / attention.decode_save_s[dsave_ok]
    )
    decode_save = (float(intercept), float(max(slope, 0.0)))
    pre_ok = attention.prefill_s > 0
    dec_ok = attention.decode_s > 0
    _require_rows(int(pre_ok.sum()), 4, f"{source}: prefill rows with a positive attention time")
    _require_rows(int(dec_ok.sum()), 5, f"{source}: decode rows with a positive attention time")
    chunk, cached = attention.prefill_chunk[pre_ok], attention.prefill_kv[pre_ok]
    batch, kv = attention.decode_batch[dec_ok], attention.decode_kv[dec_ok]
    prefill = fit_prefill_attention(chunk, cached, attention.prefill_s[pre_ok])
    decode = fit_decode_attention(batch, kv, attention.decode_s[dec_ok])
    args = (layers, used, tuple(non_attention), tuple(save_rate), prefill, decode, decode_save)
    timing = MeasuredTiming(*args)  # type: ignore[arg-type]
    spline = f"linear spline on {len(used)} knots"
    quality = {
        "non_attention": _quality("non_attention", spline, timing.non_attention_time(mlp.tokens), mlp.time_s),
        "prefill_kv_save": _quality(
            "prefill_kv_save",
            "c r(k + c), r a linear spline in the cache position",
            timing.prefill_kv_save_time(save_chunk, save_cached),
            attention.prefill_save_s[save_ok],
        ),
        "decode_kv_save": _quality(
            "decode_kv_save",
            "s0 + s1 B",
            timing.decode_kv_save_time(attention.decode_batch[dsave_ok]),
            attention.decode_save_s[dsave_ok],
        ),
        "prefill_attention": _quality(
            "prefill_attention",
            "p0 + p_c c + p_ck c k + p_cc c^2",
            timing.prefill_attention_time(chunk, cached),
            attention.prefill_s[pre_ok],
        ),
        "decode_attention": _quality(
            "decode_attention",
            "max(d0 + d_b B + d_kv B k, e0 + e_k k)",
            timing.decode_attention_time(batch, batch * kv),
            attention.decode_s[dec_ok],
        ),
    }
    components = {name: q.to_dict() for name, q in quality.items()}
    return MeasuredTiming(*args, components), quality  # type: ignore[arg-type]


def fit_vidur_measured_profile(
    mlp_path: str | os.PathLike[str],
    attention_path: str | os.PathLike[str],
    gpu: GPUSpec,
    model: ModelShape,
    name: str,
    *,
    tensor_parallel: int = 1,
    memory_margin: float = 0.1,
    block_tokens: int = 16,
    max_request_tokens: int = 4096,
    source: str | None = None,
) -> tuple[GPUProfile, dict[str, ComponentFit]]:
    """An attention-aware GPU profile from Vidur-format ``mlp.csv`` and ``attention.csv`` files.

    The capacity follows Vidur's planner (:func:`fluidopt.hardware.vidur_kv_capacity_tokens`);
    the iteration time is :func:`fit_measured_timing`'s model.
    """
    mlp = read_vidur_mlp_csv(mlp_path, model.layers, tensor_parallel)
    attention = read_attention_csv(attention_path, model.layers, tensor_parallel)
    timing, quality = fit_measured_timing(mlp, attention, model.layers)
    capacity = vidur_kv_capacity_tokens(
        gpu, model, memory_margin=memory_margin, block_tokens=block_tokens, max_request_tokens=max_request_tokens
    )
    origin = source or f"{Path(mlp_path).as_posix()} + {Path(attention_path).as_posix()}"
    errors = ", ".join(
        f"{k} MAPE {100 * q.mape:.1f}% (worst {100 * q.max_abs_pct_error:.0f}%)" for k, q in quality.items()
    )
    description = (
        f"{model.name} on {gpu.name}, measured timing composed as in Vidur (docs/theory.md section 9): "
        f"{model.layers} layers x (non-attention + KV-cache save at the batch's tokens + prefill attention per "
        f"chunk + decode attention), fitted to Vidur-format measurements ({origin}; Vidur is MIT-licensed). "
        f"Fit: {errors}. KV capacity from Vidur's planner: margin {memory_margin:g}, {block_tokens}-token blocks, "
        f"whole {max_request_tokens}-token requests."
    )
    fit_info: dict[str, Any] = {
        "source": origin,
        "gpu": gpu.name,
        "model": model.name,
        "memory_margin": memory_margin,
        "max_request_tokens": max_request_tokens,
        "components": {k: q.to_dict() for k, q in quality.items()},
        "mape": max(q.mape for q in quality.values()),
    }
    profile = GPUProfile(name, capacity, (), description, fit_info, timing, block_tokens)
    return profile, quality


@dataclass(frozen=True)
class BatchLog:
    """Per-iteration timings from an engine's logs."""

    prefill_tokens: np.ndarray
    decode_sequences: np.ndarray
    cached_tokens: np.ndarray
    seconds: np.ndarray
    source: str


def read_batch_log_csv(path: str | os.PathLike[str]) -> BatchLog:
    """Read a plain per-batch timing CSV: ``prefill_tokens, decode_sequences, cached_tokens, seconds``.

    One row per iteration: prompt tokens processed, decoding sequences, cached KV tokens read
    (over all requests) and the iteration's wall time in seconds.
    """
    path = Path(path)
    (stream, reader), header = _open_csv(path)
    rows: list[tuple[float, float, float, float]] = []
    with stream:
        for column in BATCH_LOG_COLUMNS:
            if column not in header:
                raise InputError(f"{path.name}: columns", ",".join(header[:8]), f"must include {column!r}")
        for line, row in enumerate(reader, start=2):
            where = f"{path.name} row {line}"
            values = tuple(_number(row, c, where) for c in BATCH_LOG_COLUMNS)
            for column, value in zip(BATCH_LOG_COLUMNS, values):
                if value < 0:
                    raise InputError(f"{where} column {column}", value, "must be >= 0")
            if values[3] <= 0:
                raise InputError(f"{where} column seconds", values[3], "must be > 0")
            if values[0] + values[1] <= 0:
                raise InputError(f"{where} column prefill_tokens", values[0], "an iteration needs some work")
            rows.append(values)  # type: ignore[arg-type]
    _require_rows(len(rows), 8, f"{path.name}: iterations")
    data = np.asarray(rows, dtype=float)
    return BatchLog(data[:, 0], data[:, 1], data[:, 2], data[:, 3], str(path))


MAX_BATCH_LOG_PIECES = 3


def fit_max_affine_nnls(features: np.ndarray, times: np.ndarray, pieces: int, iterations: int = 30) -> np.ndarray:
    """``pieces`` non-negative affine pieces whose maximum fits ``times`` (relative residuals).

    Alternating fit: every row goes to the piece that is largest on it, and each piece is refitted
    by non-negative least squares (:func:`scipy.optimize.nnls`) on its rows.  A coefficient whose
    unconstrained estimate is negative is thus refitted at zero with the others re-estimated,
    where clipping it would leave the others where the negative value had put them.  The start
    splits the rows into equal groups by work (prefill tokens plus sequences).
    """
    from scipy.optimize import nnls

    x = np.asarray(features, dtype=float)
    y = np.asarray(times, dtype=float)
    work = x[:, 2] + x[:, 3]
    ranks = np.argsort(np.argsort(work, kind="stable"), kind="stable")
    assign = np.minimum(ranks * pieces // max(len(y), 1), pieces - 1)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)
    coefs = np.zeros((pieces, x.shape[1]))
    for _ in range(iterations):
        for piece in range(pieces):
            mask = assign == piece
            if mask.sum() < x.shape[1]:
                continue
            weights = 1.0 / y[mask]
            solution, _ = nnls(x[mask] / scale * weights[:, None], y[mask] * weights)
            coefs[piece] = solution / scale
        new_assign = np.argmax(x @ coefs.T, axis=1)
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
    return coefs


def _held_out_error(features: np.ndarray, times: np.ndarray, pieces: int, folds: int = 5) -> float:
    """Mean relative error of a ``pieces``-piece fit on rows held out in turn (interleaved folds)."""
    errors = []
    index = np.arange(len(times))
    for fold in range(folds):
        test = index % folds == fold
        coefs = fit_max_affine_nnls(features[~test], times[~test], pieces)
        predicted = np.max(features[test] @ coefs.T, axis=1)
        errors.append(np.abs(predicted - times[test]) / times[test])
    return float(np.mean(np.concatenate(errors)))


def check_batch_log_units(log: BatchLog) -> None:
    """Refuse a log whose ``seconds`` column looks like another unit (one iteration is 1 ms - 10 s)."""
    median = float(np.median(log.seconds))
    name = Path(log.source).name
    if median > 10.0:
        raise InputError(
            f"{name}: column seconds",
            median,
            "has a median iteration of more than 10 s: the times look like milliseconds; give seconds",
        )
    if median < 1e-4:
        raise InputError(
            f"{name}: column seconds",
            median,
            "has a median iteration below 0.1 ms: the times look like another unit; give seconds",
        )


def batch_log_features(log: BatchLog) -> np.ndarray:
    """Rows ``(1, KV tokens touched, prefill tokens, sequences)`` of each logged iteration.

    KV tokens touched are ``cached + prefill + decode`` and a prefill counts as one sequence, as in
    :class:`~fluidopt.profile.AffinePiece`.
    """
    sequences = log.decode_sequences + (log.prefill_tokens > 0)
    kv = log.cached_tokens + log.prefill_tokens + log.decode_sequences
    return np.column_stack([np.ones_like(kv), kv, log.prefill_tokens, sequences])


def batch_log_predictions(log: BatchLog, profile: GPUProfile) -> tuple[np.ndarray, np.ndarray]:
    """The profile's time for each logged iteration (s), and the index of the piece that sets it."""
    coefs = np.array([[p.base_s, p.per_kv_token_s, p.per_prefill_token_s, p.per_sequence_s] for p in profile.pieces])
    values = batch_log_features(log) @ coefs.T
    return values.max(axis=1), values.argmax(axis=1)


def fit_batch_log_profile(
    log: BatchLog, name: str, kv_capacity_tokens: int, *, block_tokens: int = 1
) -> tuple[GPUProfile, ComponentFit]:
    """Fit an affine profile (the maximum of 1-3 non-negative pieces) to per-iteration timings.

    Features are those of :class:`~fluidopt.profile.AffinePiece`: KV tokens touched
    (``cached + prefill + decode``), prefill tokens and sequences.  Each piece is fitted by
    non-negative least squares (:func:`fit_max_affine_nnls`), and the number of pieces is the
    one with the least error on held-out rows (5 interleaved folds).  A per-batch log does not
    say how prompt tokens split into requests, so a measured (attention-aware) model cannot be
    identified from it; a convex piecewise-affine fit is what such data supports.
    """
    check_batch_log_units(log)
    features = batch_log_features(log)
    held_out = {k: _held_out_error(features, log.seconds, k) for k in range(1, MAX_BATCH_LOG_PIECES + 1)}
    count = min(held_out, key=lambda k: (held_out[k], k))
    coefs = fit_max_affine_nnls(features, log.seconds, count)
    pieces = tuple(tuple(float(v) for v in row) for row in coefs if row.any()) or ((float(log.seconds.min()), 0, 0, 0),)
    predicted = np.max(features @ np.asarray(pieces).T, axis=1)
    quality = _quality(
        "iteration_time",
        f"max of {len(pieces)} non-negative affine pieces (held-out error {100 * held_out[count]:.1f}%)",
        predicted,
        log.seconds,
    )
    profile = GPUProfile(
        name,
        kv_capacity_tokens,
        tuple(AffinePiece(*row) for row in pieces),
        f"Affine profile fitted to {log.seconds.size} logged iterations in {Path(log.source).name} "
        f"(MAPE {100 * quality.mape:.1f}%, worst {100 * quality.max_abs_pct_error:.0f}%).",
        {"source": log.source, "components": {"iteration_time": quality.to_dict()}, "mape": quality.mape},
        None,
        block_tokens,
    )
    return profile, quality
