"""Fitter: an ``engine-grid`` timing from per-operator tables measured through an engine.

The non-attention operators, the MoE layers, the tensor-parallel all-reduces and the
once-per-sequence operators are composed exactly as for the ``measured`` kind
(:func:`~fluidopt.timing.fit.engine_tables.fit_engine_timing`); the attention keeps the
measured grid of ``attention.csv`` (times the layers) instead of parametric fits
(:mod:`fluidopt.timing.grid`).  Grid cells the profiler skipped take the nearest measured
cell's value (index distance, scipy's Euclidean distance transform).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt

from fluidopt.errors import require
from fluidopt.timing.fit.common import ComponentFit, component_quality
from fluidopt.timing.grid import AXES, GridTiming


def attention_grid(rows: np.ndarray, layers: int) -> tuple[tuple[tuple[float, ...], ...], np.ndarray, int]:
    """``(axes, grid, filled)`` of attention rows ``(chunk, cached, decodes, decode_kv, seconds)`` times ``layers``.

    ``filled`` counts the grid cells no row measured (given their nearest measured cell's value).
    """
    require(rows.shape[0] >= 2, "attention.csv rows", rows.shape[0], "need at least 2 for a grid")
    axes = tuple(tuple(float(v) for v in np.unique(rows[:, d])) for d in range(len(AXES)))
    for name, axis in zip(AXES, axes):
        require(len(axis) >= 2, f"attention.csv: {name}", list(axis), "needs at least two measured values")
    grid = np.full([len(a) for a in axes], np.nan)
    index = tuple(np.searchsorted(np.asarray(axes[d]), rows[:, d]) for d in range(len(AXES)))
    grid[index] = layers * rows[:, 4]
    missing = np.isnan(grid)
    if missing.any():
        nearest = distance_transform_edt(missing, return_distances=False, return_indices=True)
        grid = grid[tuple(nearest)]
    return axes, grid, int(missing.sum())


def grid_engine_timing(
    tables: Any, measured: Any, quality: dict[str, ComponentFit]
) -> tuple[GridTiming, dict[str, ComponentFit]]:
    """The engine-grid timing of ``tables``, taking ``f`` and ``g`` from their ``measured`` composition."""
    layers = measured.layers
    axes, grid, filled = attention_grid(tables.attention, layers)
    timing = GridTiming(
        layers=layers,
        knots_tokens=measured.knots_tokens,
        non_attention_s=measured.non_attention_s,
        per_sequence_s=measured.per_sequence_s,
        axes=axes,
        attention_s=tuple(float(v) for v in grid.reshape(-1)),
    )
    rows = tables.attention
    means = np.where(rows[:, 2] > 0, rows[:, 3], 0.0)
    predicted = timing.attention_time(rows[:, 0], rows[:, 1], rows[:, 2], means)
    kept = {k: v for k, v in quality.items() if k in ("non_attention", "per_sequence")}
    kept["attention"] = component_quality(
        "attention",
        f"the measured grid ({grid.size} cells, {filled} filled from the nearest)",
        predicted,
        layers * rows[:, 4],
    )
    fit = {**measured.fit, "components": {name: q.to_dict() for name, q in kept.items()}, "grid_cells_filled": filled}
    fit["attention"] = "measured grid, multilinear (fluidopt.timing.grid)"
    fit["folder"] = Path(tables.folder).name
    return GridTiming(
        timing.layers,
        timing.knots_tokens,
        timing.non_attention_s,
        timing.per_sequence_s,
        timing.axes,
        timing.attention_s,
        fit,
    ), kept
