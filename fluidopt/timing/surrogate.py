"""A convex piecewise-affine surrogate of any timing model, for the linear program's duals.

The linear program of docs/theory.md section 8 needs a convex piecewise-affine iteration time;
a measured model is not one.  :func:`affine_surrogate` fits two affine pieces to the model's own
step times over a grid of synthetic batches; the simulator and the fixed-point equilibrium keep
using the model itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluidopt.timing.affine import AffinePiece
from fluidopt.timing.protocol import StepTiming


def affine_surrogate(timing: Any, iterations: int = 20) -> tuple[AffinePiece, ...]:
    """Two affine pieces ``(base, per KV token, per prefill token, per sequence)`` whose maximum follows ``timing``.

    The linear program of docs/theory.md section 8 (and its duals) needs a convex piecewise-affine
    iteration time.  This fits one by alternating least squares (each synthetic batch is
    assigned to the piece that is largest on it, each piece is refitted on its batches) over
    decode-only, prefill-only and mixed batches spanning 1..4096 tokens and 64..4096 cached
    tokens.  It is a surrogate: the simulator and the fixed-point equilibrium use ``timing`` (any
    model with this module's ``batch_time``).
    """
    rows = []
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        for mean_kv in (64, 256, 512, 1024, 2048):
            rows.append((0, 0, batch, mean_kv))
    for chunk in (64, 128, 256, 512, 1024, 2048, 4096):
        rows.append((chunk, 0, 0, 0))
        for batch in (4, 16, 64):
            rows.append((chunk, 0, batch, 512))
    features = []
    times = []
    for chunk, cached, batch, mean_kv in rows:
        decode = np.full(batch, float(mean_kv))
        chunks = np.array([chunk], float) if chunk else np.zeros(0)
        times.append(timing.batch_time(chunks, np.full(chunks.size, float(cached)), decode))
        kv = (chunk + cached if chunk else 0) + batch * (mean_kv + 1)
        features.append((1.0, kv, float(chunk), float(batch + (1 if chunk else 0))))
    return tuple(AffinePiece(*row) for row in fit_max_affine(np.asarray(features), np.asarray(times), iterations))


def fit_max_affine(
    features: np.ndarray, times: np.ndarray, iterations: int = 20
) -> tuple[tuple[float, float, float, float], ...]:
    """Two non-negative affine pieces whose maximum fits ``times`` (relative least squares).

    ``features`` has columns (1, KV tokens, prefill tokens, sequences).  Alternating fit: each
    row is assigned to the piece that is larger on it and each piece is refitted on its rows,
    starting from a split at the median work (small batches: the floor; large: the slope).
    """
    x = np.asarray(features, dtype=float)
    y = np.asarray(times, dtype=float)
    tokens = x[:, 2] + x[:, 3]
    assign = tokens > np.median(tokens)
    coefs = np.zeros((2, 4))
    for _ in range(iterations):
        for piece in (0, 1):
            mask = assign == bool(piece)
            if mask.sum() < 4:
                continue
            weights = 1.0 / y[mask]
            solution = np.linalg.lstsq(x[mask] * weights[:, None], y[mask] * weights, rcond=None)[0]
            coefs[piece] = np.maximum(solution, 0.0)
        predicted = x @ coefs.T
        new_assign = predicted[:, 1] > predicted[:, 0]
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
    if coefs[:, 0].max() <= 0:
        coefs[0, 0] = float(y.min())
    order = np.argsort(coefs[:, 0])[::-1]  # the floor (largest base) first
    return tuple(tuple(float(v) for v in coefs[p]) for p in order)  # type: ignore[misc]


class SurrogateTiming(StepTiming):
    """Mixin for a kind that is not affine: the linear program reads its :func:`affine_surrogate`."""

    def affine_pieces(self) -> tuple[Any, ...]:
        """The convex two-piece surrogate the linear program uses (:func:`affine_surrogate`)."""
        return affine_surrogate(self)
