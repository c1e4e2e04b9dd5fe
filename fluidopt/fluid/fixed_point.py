"""Fluid equilibrium of any increasing iteration-time model by a one-dimensional fixed point.

In the fluid equilibrium every stage of class j holds ``n_j = lambda_j dT`` requests, so the
whole batch is the arrival mix scaled by the iteration time ``x = dT``; the equilibrium is the
smallest root of ``x = tau(batch(lambda x))`` (docs/theory.md section 10).  For the affine pieces of
docs/theory.md section 8 the root is ``max_p base_p / (1 - K_p)``, the closed form; for any other timing kind
(:mod:`fluidopt.timing`, which evaluates the fluid batch) it is found with :func:`scipy.optimize.brentq`.

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
from fluidopt.timing.protocol import LINEAR_FIELDS, FluidBatch
from fluidopt.workload import Workload

GRID_POINTS = 400
GRID_SPAN = 1e6
__all__ = ["LINEAR_FIELDS", "FixedPointResult", "FluidBatch", "fluid_batch", "solve_fixed_point"]


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
    terms = np.zeros(len(timing.prefill_terms([1], [0])))
    for j, request_class in enumerate(workload.classes):
        rate = request_class.rate_per_s
        prompt = request_class.prefill_tokens
        size = chunk_tokens or prompt
        chunks = [min(size, prompt - start) for start in range(0, prompt, size)]
        cached = [i * size for i in range(len(chunks))]
        stages = np.arange(first_decode, request_class.decode_tokens + 1, dtype=float)
        reserved = math.ceil(prompt / block) * block
        terms = terms + rate * np.asarray(timing.prefill_terms(chunks, cached), dtype=float)
        decode_memory = float(np.sum(np.ceil((prompt + stages) / block) * block))
        totals["tokens"] += rate * (prompt + stages.size)
        totals["prefill_tokens"] += rate * prompt
        totals["decodes"] += rate * stages.size
        totals["decode_kv"] += rate * float(np.sum(prompt + stages - 1))
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
        terms=terms,
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
    return batch.scaled(theta)


def tangent_costs(workload: Workload, profile: GPUProfile, result: FixedPointResult) -> tuple[float, np.ndarray]:
    """Supporting hyperplane of ``tau`` at the fixed point: ``tau(n) ~ base + costs @ n``.

    ``costs[j]`` is the derivative of the iteration time with respect to the per-stage count
    of class j (central difference on the per-class unit batches) and ``base`` makes the plane
    pass through ``tau(n*) = dT*``.  The linear program of docs/theory.md section 8 on this plane has
    the same optimum as the measured model, and its duals are the local sensitivities.
    """
    units = [fluid_batch(Workload(c.name, (replace(c, rate_per_s=1.0),)), profile) for c in workload.classes]

    def tau(counts: np.ndarray) -> float:
        combined = FluidBatch.combine(units, counts)
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
