"""Fitter: an ``affine`` timing from a log of engine iterations (one row per step).

A batch log has one row per engine step: its prefill tokens, decoding sequences, cached tokens
and measured seconds (:data:`BATCH_LOG_COLUMNS`).  The iteration time is fitted as the maximum
of 1-3 non-negative affine pieces, the count chosen by held-out error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluidopt.errors import InputError
from fluidopt.profile import GPUProfile
from fluidopt.timing.affine import AffinePiece
from fluidopt.timing.fit.common import ComponentFit, component_quality, csv_number, open_csv, require_rows

BATCH_LOG_COLUMNS = ("prefill_tokens", "decode_sequences", "cached_tokens", "seconds")


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
    (stream, reader), header = open_csv(path)
    rows: list[tuple[float, float, float, float]] = []
    with stream:
        for column in BATCH_LOG_COLUMNS:
            if column not in header:
                raise InputError(f"{path.name}: columns", ",".join(header[:8]), f"must include {column!r}")
        for line, row in enumerate(reader, start=2):
            where = f"{path.name} row {line}"
            values = tuple(csv_number(row, c, where) for c in BATCH_LOG_COLUMNS)
            for column, value in zip(BATCH_LOG_COLUMNS, values):
                if value < 0:
                    raise InputError(f"{where} column {column}", value, "must be >= 0")
            if values[3] <= 0:
                raise InputError(f"{where} column seconds", values[3], "must be > 0")
            if values[0] + values[1] <= 0:
                raise InputError(f"{where} column prefill_tokens", values[0], "an iteration needs some work")
            rows.append(values)  # type: ignore[arg-type]
    require_rows(len(rows), 8, f"{path.name}: iterations")
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
    quality = component_quality(
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
        block_tokens=block_tokens,
    )
    return profile, quality
