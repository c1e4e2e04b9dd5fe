"""Timing kind ``engine-grid``: measured operator tables used as measured, attention on its own grid.

One step of ``T`` new tokens for ``n`` sequences costs

``tau = f(T) + g(n) + A(P, K_p, D, K_d / D)``

- ``f`` and ``g``: the non-attention operators by new tokens and the once-per-sequence operators
  (LM head, sampler), linear splines through the measured counts (as in the ``measured`` kind);
- ``A``: the attention of all layers, read off the measured grid at the step's prompt tokens
  ``P`` (the prefill chunks together), their cached prefix ``K_p`` (together), the ``D``
  decodes and their mean cached tokens ``K_d / D``: multilinear interpolation between the
  measured points on each axis, clamped below the first point and extrapolated linearly from
  the last two beyond the last.  A multi-prefill step is looked up as one chunk of their total
  on their total prefix, the coordinates the profiler measured for a varlen batch.

The ``measured`` kind fits parametric forms to the same attention rows (10-25 % error on the
mixed rows); this kind keeps the measurements, so what the engine was measured doing is what
the simulator charges, on any GPU whose tables it is given.  Grid cells the profiler did not
measure take the value of the nearest measured cell (index distance) when the grid is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from fluidopt._jit import kernel_function
from fluidopt.errors import reject_unknown_keys, require, require_whole_number
from fluidopt.timing.protocol import FluidBatch
from fluidopt.timing.surrogate import SurrogateTiming
from fluidopt.timing.values import number_tuple

KIND = "engine-grid"
AXES = ("prefill_tokens", "prefill_cached", "decodes", "decode_mean_cached")
ITERATION_TIME_KEYS = ("layers", "tokens", "attention")
TOKENS_KEYS = ("knots", "non_attention_s", "per_sequence_s")
ATTENTION_KEYS = (*AXES, "seconds")
HEADER_ROWS = 7  # knots, f, g, then the four axes; the grid's rows follow


@dataclass(frozen=True)
class GridTiming(SurrogateTiming):
    """Step time from splines of the operator tables and the attention grid (module docstring).

    Parameters
    ----------
    layers : int
        Transformer layers the per-layer attention was multiplied by (provenance).
    knots_tokens, non_attention_s, per_sequence_s : tuple of float
        ``f`` and ``g`` at the knots (seconds per step, all layers).
    axes : tuple of tuple of float
        The grid's points on each of :data:`AXES` (increasing, >= 0).
    attention_s : tuple of float
        Attention of all layers at every grid point, C order over :data:`AXES` (seconds).
    fit : dict
        Provenance (ignored by equality).

    """

    layers: int
    knots_tokens: tuple[float, ...]
    non_attention_s: tuple[float, ...]
    per_sequence_s: tuple[float, ...]
    axes: tuple[tuple[float, ...], ...]
    attention_s: tuple[float, ...]
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = KIND
    exact_affine: ClassVar[bool] = False
    lp_refusal: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", require_whole_number(self.layers, "iteration_time.layers", 1))
        knots = _increasing(self.knots_tokens, "iteration_time.tokens.knots")
        object.__setattr__(self, "knots_tokens", knots)
        for name in ("non_attention_s", "per_sequence_s"):
            values = number_tuple(getattr(self, name), f"iteration_time.tokens.{name}")
            require(len(values) == len(knots), f"iteration_time.tokens.{name}", len(values), "needs one per knot")
            require(min(values) >= 0, f"iteration_time.tokens.{name}", min(values), "must be >= 0")
            object.__setattr__(self, name, values)
        require(len(self.axes) == len(AXES), "iteration_time.attention", len(self.axes), f"needs {len(AXES)} axes")
        axes = tuple(_increasing(a, f"iteration_time.attention.{name}") for a, name in zip(self.axes, AXES))
        object.__setattr__(self, "axes", axes)
        values = number_tuple(self.attention_s, "iteration_time.attention.seconds")
        size = int(np.prod([len(a) for a in axes]))
        require(len(values) == size, "iteration_time.attention.seconds", len(values), f"needs {size} values")
        require(min(values) >= 0, "iteration_time.attention.seconds", min(values), "must be >= 0")
        object.__setattr__(self, "attention_s", values)

    # ---------------------------------------------------------------- evaluation
    def prefill_terms(self, chunks: Any, cached: Any) -> np.ndarray:
        """One term: the cached tokens of the chunks' prefixes (the grid's ``prefill_cached`` axis)."""
        return np.array([float(np.sum(np.asarray(cached, dtype=float)))])

    def fluid_time(self, batch: FluidBatch, x: Any) -> Any:
        """``f(x T) + g(x n) + A(x P, x K_p, x D, K_d / D)`` (vectorised over ``x``)."""
        x = np.asarray(x, dtype=float)
        cached = float(batch.terms[0]) if len(batch.terms) else 0.0
        mean = batch.decode_kv / batch.decodes if batch.decodes > 0 else 0.0
        knots = np.asarray(self.knots_tokens)
        result = _spline(x * batch.tokens, knots, np.asarray(self.non_attention_s))
        sequences = x * batch.sequences
        result = result + np.where(sequences > 0, _spline(sequences, knots, np.asarray(self.per_sequence_s)), 0.0)
        points = [x * batch.prefill_tokens, x * cached, x * batch.decodes, np.full_like(x, mean)]
        result = result + _multilinear(self.grid, self.axes, points)
        return float(result) if np.ndim(result) == 0 else result

    def non_attention_time(self, tokens: Any) -> Any:
        """``f(T)``: the non-attention operators for ``T`` new tokens (linear beyond the last knot)."""
        return _spline(tokens, np.asarray(self.knots_tokens), np.asarray(self.non_attention_s))

    def attention_time(self, prefill: Any, cached: Any, decodes: Any, mean_cached: Any) -> np.ndarray:
        """``A``: the attention of all layers at the given coordinates (arrays broadcast together)."""
        return _multilinear(self.grid, self.axes, [prefill, cached, decodes, mean_cached])

    @cached_property
    def grid(self) -> np.ndarray:
        """The attention values as a 4-D array over :data:`AXES`."""
        return np.asarray(self.attention_s).reshape([len(a) for a in self.axes])

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(axis lengths, table)``: rows knots, f, g, the four axes, then one row per grid line (last axis)."""
        return self._kernel_arrays

    @cached_property
    def _kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        sizes = [len(self.knots_tokens), *(len(a) for a in self.axes)]
        width = max(sizes)
        lines = self.grid.reshape(-1, sizes[-1])
        table = np.zeros((HEADER_ROWS + lines.shape[0], width))
        for row, values in enumerate((self.knots_tokens, self.non_attention_s, self.per_sequence_s, *self.axes)):
            table[row, : len(values)] = values
        table[HEADER_ROWS:, : sizes[-1]] = lines
        return np.array(sizes, dtype=float), np.ascontiguousarray(table)

    # ---------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """Mapping in the profile TOML schema (``[iteration_time]`` with ``kind = "engine-grid"``)."""
        return {
            "kind": KIND,
            "layers": self.layers,
            "tokens": {
                "knots": list(self.knots_tokens),
                "non_attention_s": list(self.non_attention_s),
                "per_sequence_s": list(self.per_sequence_s),
            },
            "attention": {
                **{name: list(axis) for name, axis in zip(AXES, self.axes)},
                "seconds": list(self.attention_s),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fit: dict[str, Any] | None = None) -> GridTiming:
        """Build the model from the ``[iteration_time]`` table of an engine-grid profile."""
        reject_unknown_keys(data, ("kind", *ITERATION_TIME_KEYS), where)
        for key, keys in (("tokens", TOKENS_KEYS), ("attention", ATTENTION_KEYS)):
            require(isinstance(data.get(key), dict), f"{where}.{key}", data.get(key), "must be a table")
            reject_unknown_keys(data[key], keys, f"{where}.{key}")
            for name in keys:
                require(name in data[key], f"{where}.{key}.{name}", None, "is required")
        require("layers" in data, f"{where}.layers", None, "is required")
        tokens, attention = data["tokens"], data["attention"]
        return cls(
            layers=data["layers"],
            knots_tokens=number_tuple(tokens["knots"], f"{where}.tokens.knots"),
            non_attention_s=number_tuple(tokens["non_attention_s"], f"{where}.tokens.non_attention_s"),
            per_sequence_s=number_tuple(tokens["per_sequence_s"], f"{where}.tokens.per_sequence_s"),
            axes=tuple(number_tuple(attention[name], f"{where}.attention.{name}") for name in AXES),
            attention_s=number_tuple(attention["seconds"], f"{where}.attention.seconds"),
            fit=dict(fit or {}),
        )


def _increasing(values: Any, where: str) -> tuple[float, ...]:
    numbers = number_tuple(values, where)
    require(len(numbers) >= 2, where, list(numbers), "needs at least two points")
    require(
        numbers[0] >= 0 and all(b > a for a, b in zip(numbers, numbers[1:])),
        where,
        list(numbers),
        "must be >= 0 and strictly increasing",
    )
    return numbers


def _bracket(axis: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower index and weight of the upper point on ``axis`` (clamped below, extrapolated above)."""
    lo = np.clip(np.searchsorted(axis, query, side="right") - 1, 0, axis.size - 2)
    weight = (query - axis[lo]) / (axis[lo + 1] - axis[lo])
    return lo, np.where(query <= axis[0], 0.0, weight)


def _multilinear(grid: np.ndarray, axes: tuple[tuple[float, ...], ...], points: list[np.ndarray]) -> np.ndarray:
    """Multilinear interpolation of ``grid`` at ``points`` (one array per axis, broadcast together)."""
    points = list(np.broadcast_arrays(*[np.asarray(p, dtype=float) for p in points]))
    brackets = [_bracket(np.asarray(axis), p) for axis, p in zip(axes, points)]
    total = np.zeros(points[0].shape)
    for corner in range(1 << len(axes)):
        weight = np.ones(points[0].shape)
        index = []
        for d, (lo, w) in enumerate(brackets):
            upper = (corner >> d) & 1
            weight = weight * (w if upper else 1.0 - w)
            index.append(lo + upper)
        total = total + weight * grid[tuple(index)]
    return total


def _spline(x: Any, knots: np.ndarray, values: np.ndarray) -> Any:
    """Linear spline: flat below the first knot, linear beyond the last (the kernel's ``interp_row``)."""
    arr = np.asarray(x, dtype=float)
    slope = (values[-1] - values[-2]) / (knots[-1] - knots[-2])
    return np.where(arr > knots[-1], values[-1] + slope * (arr - knots[-1]), np.interp(arr, knots, values))


# ------------------------------------------------------------------ the step formula (compiled into the kernel)
@kernel_function
def grid_axis(table, row, count, query):
    """``(lower index, weight)`` of ``query`` on the axis in ``table[row, :count]`` (binary search)."""
    if query <= table[row, 0]:
        return 0, 0.0
    lo = 0
    hi = count - 1
    if query >= table[row, hi]:
        lo = count - 2
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if table[row, mid] <= query:
                lo = mid
            else:
                hi = mid
    return lo, (query - table[row, lo]) / (table[row, lo + 1] - table[row, lo])


@kernel_function
def spline_row(table, row, count, x):
    """Linear spline ``table[row, :count]`` over knots ``table[0, :count]`` (flat below, linear beyond)."""
    lo, w = grid_axis(table, 0, count, x)
    return table[row, lo] * (1.0 - w) + table[row, lo + 1] * w


@kernel_function
def grid_attention(tcoef, table, prefill, cached, decodes, mean):
    """Multilinear interpolation of the attention grid at one step's coordinates."""
    n1 = int(tcoef[1])
    n2 = int(tcoef[2])
    n3 = int(tcoef[3])
    n4 = int(tcoef[4])
    a, wa = grid_axis(table, 3, n1, prefill)
    b, wb = grid_axis(table, 4, n2, cached)
    c, wc = grid_axis(table, 5, n3, decodes)
    d, wd = grid_axis(table, 6, n4, mean)
    total = 0.0
    for ua in range(2):
        weight_a = wa if ua else 1.0 - wa
        if weight_a == 0.0:
            continue
        for ub in range(2):
            weight_b = weight_a * (wb if ub else 1.0 - wb)
            if weight_b == 0.0:
                continue
            line = HEADER_ROWS + ((a + ua) * n2 + (b + ub)) * n3 + c
            # The decodes axis, then the last axis interpolated along the grid line.
            low = table[line, d] * (1.0 - wd) + table[line, d + 1] * wd
            high = table[line + 1, d] * (1.0 - wd) + table[line + 1, d + 1] * wd
            total += weight_b * (low * (1.0 - wc) + high * wc)
    return total


@kernel_function
def step_grid(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """One step (module docstring): splines of tokens and sequences plus the attention grid."""
    knots = int(tcoef[0])
    tau = spline_row(ttable, 1, knots, float(prefill + decodes))
    if sequences > 0:
        tau += spline_row(ttable, 2, knots, float(sequences))
    cached = 0.0
    for i in range(n_prefill):
        cached += float(pcached[i])
    mean = float(decode_kv) / decodes if decodes > 0 else 0.0
    return tau + grid_attention(tcoef, ttable, float(prefill), cached, float(decodes), mean)


TIMING = GridTiming
STEP = step_grid
