"""Fitter: Vidur's execution-time predictor (timing kind ``vidur-predictor``) from Vidur-format tables.

The predictor's lookups (:mod:`fluidopt.timing.predictor`) are built here: the non-attention
table from ``mlp.csv``'s rows, the pooled KV-save table from the attention rows (or from the
rows of Vidur's profiling grid, :func:`vidur_attention_grid`, with each row's save time from the
measured model fitted to the file), and the attention coefficients from that measured fit.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError
from fluidopt.hardware import GPUSpec, ModelShape, vidur_kv_capacity_tokens
from fluidopt.profile import GPUProfile
from fluidopt.timing.fit.attention import AttentionMeasurements, fit_measured_timing, read_attention_csv
from fluidopt.timing.fit.common import ComponentFit, component_quality
from fluidopt.timing.fit.vidur_csv import Measurements, read_vidur_mlp_csv
from fluidopt.timing.measured import MeasuredTiming
from fluidopt.timing.predictor import VidurPredictorTiming


def vidur_attention_grid(max_kv: int = 16_384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of Vidur's attention profiling grid as the shared sample's README describes it.

    Returns ``(prefill_chunk, prefill_kv, decode_batch)`` for the chunked-prefill rows (chunks
    64..128 step 16, 128..1024 step 32, 1024..4096 step 64, then step 128; cached
    ``0, c, 2c, ...`` below ``max_kv``), the full-prefill rows (chunks 32..1024 step 32,
    1024..4096 step 64, then step 128; nothing cached) and, for decodes, one row per batch size
    (1..128, then 136..512 step 8) and decode KV length (32..1024 step 32, 1088..4096 step 64,
    then step 256 up to ``max_kv``): the batch column is repeated once per KV length.  The grid
    is a reading of the profile's row order, not Vidur's profiler run again: the full file has
    about 27,000 rows, this grid 25,242.
    """
    chunk_sizes = np.unique(
        np.concatenate(
            [
                np.arange(64, 129, 16),
                np.arange(128, 1025, 32),
                np.arange(1024, 4097, 64),
                np.arange(4096 + 128, max_kv + 1, 128),
            ]
        )
    )
    prefill_chunk, prefill_kv = [], []
    for c in chunk_sizes:
        kv = np.arange(0, max_kv, c)
        prefill_chunk.append(np.full(kv.size, c))
        prefill_kv.append(kv)
    full = np.unique(
        np.concatenate([np.arange(32, 1025, 32), np.arange(1024, 4097, 64), np.arange(4096 + 128, max_kv + 1, 128)])
    )
    prefill_chunk.append(full)
    prefill_kv.append(np.zeros(full.size, dtype=int))
    batches = np.concatenate([np.arange(1, 129), np.arange(136, 513, 8)])
    kv_lengths = np.unique(
        np.concatenate([np.arange(32, 1025, 32), np.arange(1024, 4097, 64), np.arange(4096 + 256, max_kv + 1, 256)])
    )
    return (
        np.concatenate(prefill_chunk).astype(float),
        np.concatenate(prefill_kv).astype(float),
        np.tile(batches, kv_lengths.size).astype(float),
    )


def pooled_kv_save_table(
    prefill_chunk: np.ndarray, prefill_save_s: np.ndarray, decode_batch: np.ndarray, decode_save_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vidur's KV-save table: the mean save of all rows at each key ``max(chunk, batch)``, both kinds pooled."""
    keys = np.concatenate([np.asarray(prefill_chunk, float), np.asarray(decode_batch, float)])
    values = np.concatenate([np.asarray(prefill_save_s, float), np.asarray(decode_save_s, float)])
    tokens, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse)
    return tokens, sums / counts


def _mean_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(np.asarray(keys, float), return_inverse=True)
    return unique, np.bincount(inverse, weights=np.asarray(values, float)) / np.bincount(inverse)


def fit_vidur_predictor_profile(
    mlp_path: str | os.PathLike[str],
    attention_path: str | os.PathLike[str],
    gpu: GPUSpec,
    model: ModelShape,
    name: str,
    *,
    pooling: str = "auto",
    memory_margin: float = 0.1,
    block_tokens: int = 16,
    max_request_tokens: int = 4096,
    source: str | None = None,
) -> tuple[GPUProfile, dict[str, ComponentFit]]:
    """A ``vidur-predictor`` GPU profile from Vidur-format ``mlp.csv`` and attention rows.

    Parameters
    ----------
    mlp_path, attention_path : path
        Vidur's ``mlp.csv`` and ``attention.csv`` (or the shared sample format).
    gpu, model : GPUSpec, ModelShape
        For the layer count and Vidur's KV-capacity planner.
    name : str
        Profile name.
    pooling : {"auto", "rows", "grid"}
        How the KV-save table is pooled: ``rows`` averages the file's own rows (a complete Vidur
        profile), ``grid`` the rows of Vidur's profiling grid (:func:`vidur_attention_grid`) with
        each row's save time from the measured model fitted to the file (a sample of the grid:
        the shared file holds 401 of about 27,000 rows).  ``auto``: ``grid`` for the sample
        format, ``rows`` for Vidur's.

    Returns
    -------
    (GPUProfile, dict)
        The profile and, per lookup, its error against the rows it came from.

    Raises
    ------
    fluidopt.errors.InputError
        When the attention file lacks the prefill or the decode rows a table needs (names the file).

    """
    if pooling not in ("auto", "rows", "grid"):
        raise InputError("pooling", pooling, "must be one of auto, rows, grid")
    mlp = read_vidur_mlp_csv(mlp_path, model.layers)
    attention = read_attention_csv(attention_path, model.layers)
    _require_both_kinds_of_rows(attention)
    measured, _ = fit_measured_timing(mlp, attention, model.layers)
    mode = _pooling_mode(attention, pooling)
    save_tokens, save_s = _kv_save_table(attention, measured, mode)
    compute_tokens, compute_s = _mean_by_key(mlp.tokens, mlp.time_s)
    timing = VidurPredictorTiming(
        layers=model.layers,
        compute_tokens=tuple(compute_tokens),
        compute_s=tuple(compute_s),
        save_tokens=tuple(save_tokens),
        save_s=tuple(save_s),
        prefill_attention=measured.prefill_attention,
        decode_attention=measured.decode_attention,
    )
    quality = _lookup_quality(timing, mlp, attention, mode)
    capacity = vidur_kv_capacity_tokens(
        gpu, model, memory_margin=memory_margin, block_tokens=block_tokens, max_request_tokens=max_request_tokens
    )
    origin = source or f"{Path(mlp_path).as_posix()} + {Path(attention_path).as_posix()}"
    description = (
        f"{model.name} on {gpu.name}, iteration time as Vidur's execution-time predictor composes it "
        f"(docs/theory.md section 13): {model.layers} layers x (non-attention at tokens rounded up to 8 + "
        f"KV-cache save from one table pooling prefill and decode rows by max(chunk, batch) + prefill and "
        f"decode attention at Vidur's rounded keys x 1.1 batching overhead), no CPU overhead; from {origin} "
        f"(Vidur is MIT-licensed), KV-save table pooled over the {mode}. KV capacity from Vidur's planner: "
        f"margin {memory_margin:g}, {block_tokens}-token blocks, whole {max_request_tokens}-token requests."
    )
    fit_info: dict[str, Any] = {
        "source": origin,
        "gpu": gpu.name,
        "model": model.name,
        "pooling": mode,
        "memory_margin": memory_margin,
        "max_request_tokens": max_request_tokens,
        "components": {k: q.to_dict() for k, q in quality.items()},
    }
    timing = replace(timing, fit={k: q.to_dict() for k, q in quality.items()})
    profile = GPUProfile(
        name, capacity, (), description, fit_info, timing, block_tokens, gpu=gpu.name, gpu_memory_gib=gpu.hbm_gib
    )
    return profile, quality


def _require_both_kinds_of_rows(attention: AttentionMeasurements) -> None:
    """The pooled KV-save table needs prefill and decode rows (at least 5 each); the error names the file."""
    missing = [
        label
        for label, count in (
            ("prefill rows (regime P or F, or is_prefill = True)", attention.prefill_s.size),
            ("decode rows (regime D, or is_prefill = False)", attention.decode_s.size),
        )
        if count < 5
    ]
    if missing:
        raise InputError(
            f"{Path(attention.source).name}: attention rows",
            f"{attention.prefill_s.size} prefill, {attention.decode_s.size} decode",
            f"the predictor's KV-save table pools both kinds; missing {' and '.join(missing)} (at least 5 each)",
        )


def _pooling_mode(attention: AttentionMeasurements, pooling: str) -> str:
    """``grid`` for the shared sample format (a ``regime`` column), ``rows`` for Vidur's own, unless given."""
    if pooling != "auto":
        return pooling
    with Path(attention.source).open(encoding="utf-8") as stream:
        sample_format = "regime" in stream.readline()
    return "grid" if sample_format else "rows"


def _kv_save_table(
    attention: AttentionMeasurements, measured: MeasuredTiming, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled KV-save table over the file's rows or over Vidur's grid (save times from ``measured``)."""
    if mode == "grid":
        grid_chunk, grid_kv, grid_batch = vidur_attention_grid()
        prefill_save = measured.prefill_kv_save_time(grid_chunk, grid_kv)
        decode_save = measured.decode_kv_save_time(grid_batch)
        return pooled_kv_save_table(grid_chunk, prefill_save, grid_batch, decode_save)
    return pooled_kv_save_table(
        attention.prefill_chunk, attention.prefill_save_s, attention.decode_batch, attention.decode_save_s
    )


def _lookup_quality(
    timing: VidurPredictorTiming, mlp: Measurements, attention: AttentionMeasurements, mode: str
) -> dict[str, ComponentFit]:
    """Each lookup's error against the rows it came from."""
    pre_ok = attention.prefill_s > 0
    dec_ok = attention.decode_s > 0
    prefill = [
        timing.prefill_attention_time([c], [k])
        for c, k in zip(attention.prefill_chunk[pre_ok], attention.prefill_kv[pre_ok])
    ]
    decode = [
        timing.decode_attention_time(int(b), k)
        for b, k in zip(attention.decode_batch[dec_ok], attention.decode_kv[dec_ok])
    ]
    return {
        "non_attention": component_quality(
            "non_attention",
            "nearest profiled count at tokens rounded up to 8",
            timing.non_attention_time(mlp.tokens),
            mlp.time_s,
        ),
        "kv_save_prefill_rows": component_quality(
            "kv_save_prefill_rows",
            f"pooled table ({mode}) at the chunk",
            timing.kv_save_time(attention.prefill_chunk),
            attention.prefill_save_s,
        ),
        "kv_save_decode_rows": component_quality(
            "kv_save_decode_rows",
            f"pooled table ({mode}) at the batch",
            timing.kv_save_time(attention.decode_batch),
            attention.decode_save_s,
        ),
        "prefill_attention": component_quality(
            "prefill_attention", "p(c, ceil64(k)), one request", np.array(prefill), attention.prefill_s[pre_ok]
        ),
        "decode_attention": component_quality(
            "decode_attention", "d(B, ceil64(k)) x 1.1 for B > 1", np.array(decode), attention.decode_s[dec_ok]
        ),
    }
