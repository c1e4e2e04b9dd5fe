"""Fluid equilibrium of any increasing iteration-time model by a one-dimensional fixed point.

In the fluid equilibrium every stage of class j holds ``n_j = lambda_j dT`` requests, so the
whole batch is the arrival mix scaled by the iteration time ``x = dT``; the equilibrium is the
smallest root of ``x = tau(batch(lambda x))`` (docs/theory.md section 10).  For the affine pieces of
docs/theory.md section 8 the root is ``max_p base_p / (1 - K_p)``, the closed form; for the measured
model of :mod:`fluidopt.timing` it is found with :func:`scipy.optimize.brentq`.

With chunked prefill (``chunk_tokens``) stage 0 of class j becomes ``K_j = ceil(l_j / cs)``
prefill stages, chunk i (0-based) processing ``min(cs, l_j - i cs)`` tokens on top of ``i cs``
cached ones, and a request holds its whole prompt's blocks from admission (Vidur's reservation).
Under Vidur's conventions the prefill emits the first output token, so a class with ``l'_j``
output tokens runs decode stages ``2..l'_j``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fluidopt.errors import InputError, require, require_whole_number
from fluidopt.profile import GPUProfile
from fluidopt.timing import MeasuredTiming
from fluidopt.vidur_predictor import VidurPredictorTiming, round_up
from fluidopt.workload import Workload

GRID_POINTS = 400
GRID_SPAN = 1e6
# The fields of FluidBatch that are rate-weighted totals: they scale with the rates and add up
# over classes (every scaled or combined batch goes through this one list).
LINEAR_FIELDS = (
    "tokens",
    "prefill_tokens",
    "decodes",
    "decode_kv",
    "prefill_extra",
    "kv_touched",
    "sequences",
    "memory",
    "in_system",
    "prefill_requests",
    "prefill_kv_keys",
    "prefill_chunk_sq",
)


@dataclass(frozen=True)
class FluidBatch:
    """The equilibrium batch per unit of iteration time: every field is linear in ``x = dT``.

    With ``n_j = lambda_j x`` per stage, the batch processes ``x * tokens`` new tokens, holds
    ``x * decodes`` decoding requests reading ``x * decode_kv`` cached tokens, pays
    ``x * prefill_extra`` seconds of prefill attention and KV save, and keeps
    ``x * memory`` KV tokens resident; ``x * in_system`` requests hold KV.
    """

    tokens: float
    prefill_tokens: float
    decodes: float
    decode_kv: float
    prefill_extra: float
    kv_touched: float
    sequences: float
    memory: float
    in_system: float
    prefill_per_class: np.ndarray
    stages_per_class: np.ndarray
    prefill_requests: float = 0.0
    prefill_kv_keys: float = 0.0
    prefill_chunk_sq: float = 0.0

    def iteration_time(self, profile: GPUProfile, x: float | np.ndarray) -> float | np.ndarray:
        """``tau`` of the batch scaled by ``x`` (vectorised over ``x``)."""
        x = np.asarray(x, dtype=float)
        if profile.timing is None:
            times = [
                p.base_s
                + x * (p.per_kv_token_s * self.kv_touched + p.per_prefill_token_s * self.prefill_tokens)
                + x * p.per_sequence_s * self.sequences
                for p in profile.pieces
            ]
            result = np.maximum.reduce(times) if len(times) > 1 else times[0]
        elif isinstance(profile.timing, VidurPredictorTiming):
            result = self._predictor_time(profile.timing, x)
        else:
            timing = profile.timing
            assert isinstance(timing, MeasuredTiming)
            result = timing.non_attention_time(x * self.tokens) + x * self.prefill_extra
            result = result + timing.per_sequence_time(x * self.sequences)
            if self.decodes > 0:
                s0, s1 = timing.decode_kv_save
                d0, db, dkv, e0, ek = (
                    timing.mixed_decode_attention if self.prefill_tokens > 0 else timing.decode_attention
                )
                b = x * self.decodes
                save = np.maximum(s0 + s1 * b, 0.0)
                attention = np.maximum(d0 + db * b + dkv * x * self.decode_kv, e0 + ek * self.decode_kv / self.decodes)
                result = result + save + np.maximum(attention, 0.0)
        return float(result) if np.ndim(result) == 0 else result

    def _predictor_time(self, timing: VidurPredictorTiming, x: np.ndarray) -> np.ndarray:
        """Vidur's predictor on the scaled fluid batch (:mod:`fluidopt.vidur_predictor`), vectorised over ``x``."""
        tokens = x * self.tokens
        result = np.asarray(timing.non_attention_time(tokens) + timing.kv_save_time(tokens), dtype=float)
        if self.decodes > 0:
            d0, db, dkv, e0, ek = timing.decode_attention
            b = x * self.decodes
            kv = float(round_up(int(self.decode_kv / self.decodes), timing.kv_granularity))
            attention = np.maximum(np.maximum(d0 + db * b + dkv * b * kv, e0 + ek * kv), 0.0)
            result = result + attention * (1 + timing.decode_batching_overhead * (b > 1))
        if self.prefill_requests > 0:
            p0, pc, pck, pcc = timing.prefill_attention
            c = np.round(np.sqrt(x * self.prefill_chunk_sq))
            k = x * self.prefill_kv_keys
            attention = np.maximum(p0 + pc * c + pck * c * k + pcc * c * c, 0.0)
            result = result + attention * (1 + timing.prefill_batching_overhead * (x * self.prefill_requests > 1))
        return result


def fluid_batch(
    workload: Workload,
    profile: GPUProfile,
    *,
    chunk_tokens: int | None = None,
    conventions: str = "fluidopt",
    block_tokens: int = 1,
) -> FluidBatch:
    """The equilibrium batch per unit of iteration time (see :class:`FluidBatch`)."""
    if conventions not in ("fluidopt", "vidur"):
        raise InputError("conventions", conventions, "must be one of fluidopt, vidur")
    if chunk_tokens is not None:
        chunk_tokens = require_whole_number(chunk_tokens, "chunk_tokens", 1)
    block = require_whole_number(block_tokens, "block_tokens", 1)
    first_decode = 2 if conventions == "vidur" else 1
    totals = dict.fromkeys(LINEAR_FIELDS, 0.0)
    timing = profile.timing
    prefill_per_class = np.zeros(workload.num_classes)
    stages_per_class = np.zeros(workload.num_classes)
    for j, request_class in enumerate(workload.classes):
        rate = request_class.rate_per_s
        prompt = request_class.prefill_tokens
        size = chunk_tokens or prompt
        chunks = [min(size, prompt - start) for start in range(0, prompt, size)]
        cached = [i * size for i in range(len(chunks))]
        stages = np.arange(first_decode, request_class.decode_tokens + 1, dtype=float)
        reserved = math.ceil(prompt / block) * block
        extra = 0.0
        if isinstance(timing, VidurPredictorTiming):
            granularity = timing.kv_granularity
            totals["prefill_requests"] += rate * len(chunks)
            totals["prefill_kv_keys"] += rate * float(sum(-(-k // granularity) * granularity for k in cached))
            totals["prefill_chunk_sq"] += rate * float(sum(c * c for c in chunks))
        elif timing is not None:
            extra = float(
                np.sum(timing.prefill_attention_time(chunks, cached))
                + np.sum(timing.prefill_kv_save_time(chunks, cached))
            )
        decode_memory = float(np.sum(np.ceil((prompt + stages) / block) * block))
        totals["tokens"] += rate * (prompt + stages.size)
        totals["prefill_tokens"] += rate * prompt
        totals["decodes"] += rate * stages.size
        totals["decode_kv"] += rate * float(np.sum(prompt + stages - 1))
        totals["prefill_extra"] += rate * extra
        totals["kv_touched"] += rate * (float(np.sum(np.add(chunks, cached))) + float(np.sum(prompt + stages)))
        totals["sequences"] += rate * (len(chunks) + stages.size)
        totals["memory"] += rate * (len(chunks) * reserved + decode_memory)
        totals["in_system"] += rate * (len(chunks) + stages.size)
        prefill_per_class[j] = len(chunks)
        stages_per_class[j] = len(chunks) + stages.size
    return FluidBatch(
        **totals,
        prefill_per_class=prefill_per_class,
        stages_per_class=stages_per_class,
    )


@dataclass(frozen=True)
class FixedPointResult:
    """Smallest root of ``x = tau(batch(lambda x))`` and what it implies."""

    stable: bool
    iteration_time_s: float
    per_stage: np.ndarray
    memory_tokens: float
    in_system: float
    reason: str
    batch: FluidBatch


def solve_fixed_point(
    workload: Workload,
    profile: GPUProfile,
    *,
    chunk_tokens: int | None = None,
    conventions: str = "fluidopt",
    block_tokens: int = 1,
    batch: FluidBatch | None = None,
) -> FixedPointResult:
    """Equilibrium iteration time as the smallest fixed point ``dT = tau(batch(lambda dT))``.

    Returns ``stable=False`` with a reason when no fixed point exists (compute-bound: the work
    arriving per second of iteration grows faster than time) or when the equilibrium memory
    exceeds the KV capacity.  ``tau`` must be increasing in the batch, which holds for every
    profile fluidopt builds (non-negative slopes, non-decreasing token tables).
    """
    from scipy.optimize import brentq

    batch = batch or fluid_batch(
        workload, profile, chunk_tokens=chunk_tokens, conventions=conventions, block_tokens=block_tokens
    )
    empty = np.full(workload.num_classes, np.nan)
    if workload.total_rate_per_s == 0:
        base = float(batch.iteration_time(profile, 0.0))
        return FixedPointResult(True, base, np.zeros(workload.num_classes), 0.0, 0.0, "empty load", batch)
    start = float(batch.iteration_time(profile, 0.0))
    require(start > 0, "iteration_time", start, "an empty batch must take positive time")
    grid = start * np.geomspace(1.0, GRID_SPAN, GRID_POINTS)
    gap = grid - batch.iteration_time(profile, grid)
    above = np.nonzero(gap >= 0)[0]
    if above.size == 0:
        return FixedPointResult(
            False,
            math.nan,
            empty,
            math.nan,
            math.nan,
            "compute-bound: the iteration time grows faster than the time it takes (no fixed point)",
            batch,
        )
    i = int(above[0])
    if i == 0:
        root = grid[0]
    else:
        root = brentq(
            lambda x: x - float(batch.iteration_time(profile, x)), grid[i - 1], grid[i], xtol=1e-15, rtol=1e-14
        )
    memory = root * batch.memory
    per_stage = workload.rates * root
    if memory > profile.kv_capacity_tokens * (1 + 1e-12):
        return FixedPointResult(
            False,
            float(root),
            per_stage,
            float(memory),
            float(root * batch.in_system),
            f"memory-bound: the equilibrium needs {memory:.6g} KV tokens of {profile.kv_capacity_tokens}",
            batch,
        )
    return FixedPointResult(True, float(root), per_stage, float(memory), float(root * batch.in_system), "", batch)


def max_stable_scale_bisection(
    workload: Workload,
    profile: GPUProfile,
    *,
    chunk_tokens: int | None = None,
    conventions: str = "fluidopt",
    block_tokens: int = 1,
    is_feasible=None,
    relative_tolerance: float = 1e-9,
) -> float:
    """Largest ``theta`` with a stable fixed point for ``theta * lambda`` (bisection on the scale).

    ``is_feasible(result, theta)`` may add limits (iteration time, batch size, budgets).
    """
    if workload.total_rate_per_s == 0:
        return math.inf
    batch = fluid_batch(
        workload, profile, chunk_tokens=chunk_tokens, conventions=conventions, block_tokens=block_tokens
    )

    def stable(theta: float) -> bool:
        scaled = workload.scaled(theta)
        result = solve_fixed_point(scaled, profile, batch=_scaled_batch(batch, theta))
        return result.stable and (is_feasible is None or is_feasible(result, theta))

    low, high = 0.0, 1.0
    while stable(high):
        low, high = high, high * 2
        if high > 1e12:
            return math.inf
    while high - low > relative_tolerance * high:
        mid = 0.5 * (low + high)
        if stable(mid):
            low = mid
        else:
            high = mid
    return low


def _scaled_batch(batch: FluidBatch, theta: float) -> FluidBatch:
    """The per-unit batch of the mix scaled by ``theta`` (every rate-weighted total scales)."""
    return replace(batch, **{name: getattr(batch, name) * theta for name in LINEAR_FIELDS})


def tangent_costs(workload: Workload, profile: GPUProfile, result: FixedPointResult) -> tuple[float, np.ndarray]:
    """Supporting hyperplane of ``tau`` at the fixed point: ``tau(n) ~ base + costs @ n``.

    ``costs[j]`` is the derivative of the iteration time with respect to the per-stage count
    of class j (central difference on the per-class unit batches) and ``base`` makes the plane
    pass through ``tau(n*) = dT*``.  The linear program of docs/theory.md section 8 on this plane has
    the same optimum as the measured model, and its duals are the local sensitivities.
    """
    units = [fluid_batch(Workload(c.name, (replace(c, rate_per_s=1.0),)), profile) for c in workload.classes]

    def tau(counts: np.ndarray) -> float:
        combined = _combine(units, counts)
        return float(combined.iteration_time(profile, 1.0))

    counts = np.asarray(result.per_stage, dtype=float)
    costs = np.zeros(counts.size)
    for j in range(counts.size):
        step = max(1e-6, 1e-4 * counts[j])
        up, down = counts.copy(), counts.copy()
        up[j] += step
        down[j] = max(down[j] - step, 0.0)
        costs[j] = (tau(up) - tau(down)) / (up[j] - down[j])
    base = result.iteration_time_s - float(costs @ counts)
    return base, costs


def _combine(units: list[FluidBatch], counts: np.ndarray) -> FluidBatch:
    """The batch holding ``counts[j]`` requests per stage of class j (unit batches weighted)."""
    totals = {f: float(sum(c * getattr(u, f) for c, u in zip(counts, units))) for f in LINEAR_FIELDS}
    return FluidBatch(
        **totals,
        prefill_per_class=np.concatenate([u.prefill_per_class for u in units]),
        stages_per_class=np.concatenate([u.stages_per_class for u in units]),
    )
