"""Fitter: attention-aware ``measured`` timings from Vidur-format kernel and attention tables.

Every component of :class:`~fluidopt.timing.measured.MeasuredTiming` is fitted to its own rows
and its error against them reported (:class:`ComponentFit`): non-attention kernels and the
KV-cache save rate as linear splines in the batch's tokens, prefill and decode attention as the
parametric forms of :mod:`fluidopt.timing.measured`.  The component fitters
(:func:`fit_linear_spline`, :func:`fit_prefill_attention`, :func:`fit_decode_attention`) are
shared with the engine-table fitter (:mod:`fluidopt.timing.fit.engine_tables`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from fluidopt.errors import InputError
from fluidopt.hardware import GPUSpec, ModelShape, vidur_kv_capacity_tokens
from fluidopt.profile import GPUProfile
from fluidopt.timing.fit.common import ComponentFit, component_quality, csv_number, open_csv, require_rows
from fluidopt.timing.fit.vidur_csv import Measurements, read_vidur_mlp_csv
from fluidopt.timing.measured import MeasuredTiming

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


def read_attention_csv(path: str | os.PathLike[str], layers: int, tensor_parallel: int = 1) -> AttentionMeasurements:
    """Read attention timings from a Vidur ``attention.csv`` or the shared sample format.

    Vidur's format has ``time_stats.attn_{prefill,decode,kv_cache_save}.median`` (ms per layer)
    with ``batch_size, prefill_chunk_size, kv_cache_size, is_prefill``; the sample format
    (``shared/data/profiles/vidur/a100/Meta-Llama-3-8B/attention-sample.csv``) has
    ``regime, chunk, kv, batch, save, prefill, decode``.  Times must be >= 0 and at least
    the fits need a handful of prefill and decode rows (:func:`fit_measured_timing`).
    """
    path = Path(path)
    (stream, reader), header = open_csv(path)
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
                    if int(csv_number(row, "num_tensor_parallel_workers", where)) != tensor_parallel:
                        continue
                is_prefill = str(row.get("is_prefill", "")).strip().lower() == "true"
                chunk = csv_number(row, "prefill_chunk_size", where)
                kv = csv_number(row, "kv_cache_size", where)
                batch = csv_number(row, "batch_size", where)
                save = csv_number(row, VIDUR_ATTENTION_COLUMNS["save"], where)
                value = csv_number(row, VIDUR_ATTENTION_COLUMNS["prefill" if is_prefill else "decode"], where)
            else:
                regime = str(row.get("regime", "")).strip()
                if regime not in ("P", "F", "D"):
                    raise InputError(f"{where} column regime", regime, "must be P, F or D")
                is_prefill = regime != "D"
                chunk = csv_number(row, "chunk", where)
                kv = csv_number(row, "kv", where)
                batch = csv_number(row, "batch", where)
                save = csv_number(row, "save", where)
                value = csv_number(row, "prefill" if is_prefill else "decode", where)
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


def fit_measured_timing(
    mlp: Measurements, attention: AttentionMeasurements, layers: int, knots: tuple[float, ...] = DEFAULT_KNOTS
) -> tuple[MeasuredTiming, dict[str, ComponentFit]]:
    """Fit every component of a :class:`~fluidopt.timing.measured.MeasuredTiming` and report its error.

    Non-attention kernels and KV-cache save are linear splines in the batch's token count (the
    save rows of prefills count their chunk, those of decodes their batch, as Vidur learns it);
    prefill and decode attention are the parametric forms of :mod:`fluidopt.timing`.
    """
    require_rows(mlp.tokens.size, 3, f"{Path(mlp.source).name}: non-attention rows")
    require_rows(attention.prefill_s.size, 4, f"{Path(attention.source).name}: prefill rows")
    require_rows(attention.decode_s.size, 5, f"{Path(attention.source).name}: decode rows")
    top = max(float(mlp.tokens.max()), 2.0)
    used = tuple(k for k in knots if k < top) + (top,)
    source = Path(attention.source).name
    non_attention = fit_linear_spline(mlp.tokens, mlp.time_s, used)
    save_ok = attention.prefill_save_s > 0
    require_rows(int(save_ok.sum()), 3, f"{source}: prefill rows with a positive save time")
    save_chunk, save_cached = attention.prefill_chunk[save_ok], attention.prefill_kv[save_ok]
    save_rate = fit_linear_spline(
        save_chunk + save_cached, attention.prefill_save_s[save_ok] / save_chunk, used, smoothing=1.0
    )
    dsave_ok = attention.decode_save_s > 0
    require_rows(int(dsave_ok.sum()), 2, f"{source}: decode rows with a positive save time")
    slope, intercept = np.polyfit(
        attention.decode_batch[dsave_ok], attention.decode_save_s[dsave_ok], 1, w=1 / attention.decode_save_s[dsave_ok]
    )
    decode_save = (float(intercept), float(max(slope, 0.0)))
    pre_ok = attention.prefill_s > 0
    dec_ok = attention.decode_s > 0
    require_rows(int(pre_ok.sum()), 4, f"{source}: prefill rows with a positive attention time")
    require_rows(int(dec_ok.sum()), 5, f"{source}: decode rows with a positive attention time")
    chunk, cached = attention.prefill_chunk[pre_ok], attention.prefill_kv[pre_ok]
    batch, kv = attention.decode_batch[dec_ok], attention.decode_kv[dec_ok]
    prefill = fit_prefill_attention(chunk, cached, attention.prefill_s[pre_ok])
    decode = fit_decode_attention(batch, kv, attention.decode_s[dec_ok])
    args = (layers, used, tuple(non_attention), tuple(save_rate), prefill, decode, decode_save)
    timing = MeasuredTiming(*args)  # type: ignore[arg-type]
    spline = f"linear spline on {len(used)} knots"
    quality = {
        "non_attention": component_quality("non_attention", spline, timing.non_attention_time(mlp.tokens), mlp.time_s),
        "prefill_kv_save": component_quality(
            "prefill_kv_save",
            "c r(k + c), r a linear spline in the cache position",
            timing.prefill_kv_save_time(save_chunk, save_cached),
            attention.prefill_save_s[save_ok],
        ),
        "decode_kv_save": component_quality(
            "decode_kv_save",
            "s0 + s1 B",
            timing.decode_kv_save_time(attention.decode_batch[dsave_ok]),
            attention.decode_save_s[dsave_ok],
        ),
        "prefill_attention": component_quality(
            "prefill_attention",
            "p0 + p_c c + p_ck c k + p_cc c^2",
            timing.prefill_attention_time(chunk, cached),
            attention.prefill_s[pre_ok],
        ),
        "decode_attention": component_quality(
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
    profile = GPUProfile(
        name, capacity, (), description, fit_info, timing, block_tokens, gpu=gpu.name, gpu_memory_gib=gpu.hbm_gib
    )
    return profile, quality
