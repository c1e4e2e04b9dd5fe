"""Chunked WAIT thresholds from the fluid model (docs/theory.md section 10).

The chunked pipeline of the paper's experiments (WAIT-CP, docs/theory.md section 9) is the fluid
equilibrium made integral.  With per-stage counts ``n_j = kappa lambda_j`` and chunk size
``cs`` (a prompt of ``l_j`` tokens takes ``K_j = ceil(l_j / cs)`` prefill stages), one iteration
of the fluid batch holds

- ``tl = sum_j n_j (K_j + d_j)`` requests in the system (``d_j`` decode iterations),
- ``sum_j n_j l_j`` prefill tokens (the prefill budget),
- per decode segment, ``sum over its stages of n`` decode steps (the segment's decode budget),

and the WAIT conditions carry over: ``tau(batch(n)) <= kappa`` and
``M^pi = kappa * memory per unit <= C (1 - watermark)``, i.e.
``kappa in [dT*, C (1 - watermark) / memory per unit]`` where ``dT*`` is the fixed point of the
same timing model (:mod:`fluidopt.fluid.fixed_point`).  ``kappa = dT*`` is the boundary case;
a larger ``kappa`` buys slack (bigger batches amortise the per-iteration intercept) at the price
of latency.  Integer rounding (ceilings) is re-checked.

For unknown output lengths (``nested``) the segments of docs/theory.md section 6 are used, with
``n_k = n_{k-1} min(p_k + eta, 0.99)`` from ``n_1 = kappa Lambda_1`` (``eta = 0`` in the paper's
figure runs, which gives ``n_k = kappa Lambda_k``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number, require_whole_number
from fluidopt.fluid.constraints import check_fits
from fluidopt.fluid.fixed_point import FluidBatch, fluid_batch, solve_fixed_point
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import WaitCPPolicy
from fluidopt.thresholds.conditions import Condition, ConditionsReport, ConditionsStatus
from fluidopt.workload import Workload

DEFAULT_CHUNK_TOKENS = 256
DEFAULT_WATERMARK = 0.01
ROUNDING_STEP = 1.01


@dataclass(frozen=True)
class WaitCPThresholds(ConditionsStatus):
    """Chunked WAIT settings derived from the fluid model, and their conditions.

    Attributes
    ----------
    tl : int
        In-system cap.
    chunk_tokens : int
        Chunk size ``cs``.
    prefill_budget_tokens, total_budget_tokens : int
        Per-iteration budgets.
    decode_budgets : tuple of int
        Per-segment decode budgets.
    boundaries : tuple of int
        Last decode stage of each segment.
    per_stage : tuple of float
        The fluid per-stage reals ``n_k`` of each segment.
    kappa : float
        The chosen ``kappa`` (seconds).
    interval : tuple of float
        ``[dT*, C (1 - watermark) / memory per unit]``.
    binding_end : str
        ``boundary`` (kappa at dT*), ``memory`` (at the upper end) or ``slack`` (inside).
    utilisation, best_utilisation : float
        ``tau / kappa`` at the chosen kappa and at the memory end, ``tau`` of the rounded budgets
        (or of the fluid batch when the rounded ones leave no margin within C): the pipeline's
        load (1 = critical; the design keeps it at most halfway between the best and 1).
    iteration_time_s : float
        ``tau`` of the rounded batch.
    memory_tokens : float
        ``M^pi`` of the fluid batch at ``kappa`` (block-rounded).
    conventions : str
        ``fluidopt`` or ``vidur`` (decode iterations per request).
    conditions : ConditionsReport
        Each condition, whether it holds and by how much.

    """

    policy_name: str
    tl: int
    chunk_tokens: int
    prefill_budget_tokens: int
    total_budget_tokens: int
    decode_budgets: tuple[int, ...]
    boundaries: tuple[int, ...]
    per_stage: tuple[float, ...]
    kappa: float
    interval: tuple[float, float]
    binding_end: str
    iteration_time_s: float
    memory_tokens: float
    utilisation: float
    best_utilisation: float
    conventions: str
    block_tokens: int
    watermark: float
    conditions: ConditionsReport
    design_rate_per_s: float = float("nan")

    def policy(self, *, wait_gate: bool = False) -> WaitCPPolicy:
        """The simulator policy with these settings."""
        return WaitCPPolicy(
            tl=self.tl,
            chunk_tokens=self.chunk_tokens,
            prefill_budget_tokens=self.prefill_budget_tokens,
            total_budget_tokens=self.total_budget_tokens,
            decode_budgets=self.decode_budgets,
            boundaries=self.boundaries,
            per_stage=self.per_stage,
            wait_gate=wait_gate,
            block_size=self.block_tokens,
            watermark=self.watermark,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the CLI's ``--json`` output and thresholds files)."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "policy": self.policy_name,
            "tl": self.tl,
            "chunk_tokens": self.chunk_tokens,
            "prefill_budget_tokens": self.prefill_budget_tokens,
            "decode_budgets": list(self.decode_budgets),
            "total_budget_tokens": self.total_budget_tokens,
            "boundaries": list(self.boundaries),
            "per_stage": list(self.per_stage),
            "kappa": self.kappa,
            "kappa_interval": list(self.interval),
            "binding_end": self.binding_end,
            "iteration_time_s": self.iteration_time_s,
            "utilisation": self.utilisation,
            "best_utilisation": self.best_utilisation,
            "memory_tokens": self.memory_tokens,
            "conventions": self.conventions,
            "design_rate_per_s": self.design_rate_per_s,
            "block_size": self.block_tokens,
            "watermark": self.watermark,
            "conditions": self.conditions.to_list(),
            "conditions_hold": self.conditions.all_hold,
        }


def wait_cp_thresholds(
    workload: Workload,
    profile: GPUProfile,
    *,
    kappa: float | None = None,
    slack: float | None = None,
    chunk_tokens: int | None = None,
    conventions: str = "fluidopt",
    watermark: float = DEFAULT_WATERMARK,
    block_tokens: int | None = None,
    nested: bool = False,
    segments: int | None = None,
    eta: float = 0.0,
) -> WaitCPThresholds:
    """Chunked WAIT (or, with ``nested``, Nested WAIT-CP) settings from the fluid model.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        Traffic and GPU (affine or measured timing).
    kappa : float, optional
        Seconds of arrivals each iteration serves; default the boundary ``dT*``, moved up in 1 %
        steps until the rounded budgets meet every condition (``binding_end`` then says ``slack``).
    slack : float, optional
        Instead of ``kappa``: ``kappa = dT* (1 + slack)``.
    chunk_tokens : int, optional
        Chunk size ``cs`` (>= 1, at most the longest prompt); default 256 tokens, or the longest
        prompt when all prompts are shorter.
    conventions : {"fluidopt", "vidur"}
        Decode iterations per request: ``l'`` (fluidopt, the default of every command) or
        ``l' - 1`` (Vidur: the prefill emits the first token).  Under ``vidur`` the design uses the
        delivered rate, 1.052 x the workload's (Vidur's capped-gap arrivals; ``design_rate_per_s``
        records it).
    watermark : float
        Fraction of blocks admission keeps free (the memory condition uses ``C (1 - watermark)``).
    block_tokens : int, optional
        KV block size (default the profile's, at least 16 for paged serving).
    nested : bool
        Unknown output lengths: segments over the classes' output lengths (docs/theory.md section 6).
    segments : int, optional
        Number of segments when ``nested`` (default one per distinct output length).
    eta : float
        Ratio margin of the nested per-stage counts.

    Raises
    ------
    InputError
        For a bad chunk size, kappa or slack, or when the load has no chunked equilibrium
        (the interval is empty); the message says which end fails.

    """
    check_fits(workload, profile)
    workload = _design_workload(workload, conventions)
    chunk = _chunk_size(workload, chunk_tokens)
    require(workload.total_rate_per_s > 0, "rate_per_s", 0, "chunked thresholds need a positive rate")
    if kappa is not None and slack is not None:
        raise InputError("kappa/slack", (kappa, slack), "give at most one of kappa and slack")
    block = require_whole_number(
        block_tokens if block_tokens is not None else max(profile.block_tokens, 16), "block_tokens", 1
    )
    mark = require_finite_number(watermark, "watermark")
    require(0 <= mark < 1, "watermark", watermark, "must be in [0, 1)")
    batch = fluid_batch(workload, profile, chunk_tokens=chunk, conventions=conventions, block_tokens=block)
    usable = profile.kv_capacity_tokens * (1 - mark)
    low, high = _kappa_interval(workload, profile, batch, usable)
    scan = kappa is None
    kappa, slack_value = _requested_kappa(kappa, slack, low, high)

    def rounded(k: float) -> _RoundedDesign:
        return _rounded_design(workload, profile, batch, chunk, k, conventions, nested, segments, eta)

    utilisation, best, target = _utilisation_rule(profile, batch, high, rounded)

    def short(k: float) -> bool:
        return utilisation(k) > target * (1 + 1e-12)

    if scan and slack_value is not None:
        # Slack is measured from the smallest kappa whose budgets keep up with that margin.
        base = low
        while short(base) and base * ROUNDING_STEP <= high:
            base *= ROUNDING_STEP
        kappa = min(base * (1 + slack_value), high)
    design = rounded(kappa)
    # Rounding up (whole chunks, whole decode steps) can make the rounded batch slower than
    # kappa; as for WAIT, move to the first kappa whose budgets keep up with the margin.
    while scan and short(kappa) and kappa * ROUNDING_STEP <= high:
        kappa *= ROUNDING_STEP
        design = rounded(kappa)
    memory = kappa * batch.memory
    conditions = ConditionsReport(
        (
            Condition("tau(batch(n)) <= kappa (fluid batch)", float(batch.iteration_time(profile, kappa)), kappa),
            Condition("M^pi <= C (1 - watermark)", float(memory), float(usable)),
            Condition("tau(rounded budgets) <= kappa", float(design.time), kappa),
            Condition(
                "utilisation tau / kappa <= (1 + best) / 2",
                float(utilisation(kappa)),
                float(max(target, 1e-12)),
            ),
        )
    )
    return WaitCPThresholds(
        policy_name="nested-wait-cp" if nested and len(design.boundaries) > 1 else "wait-cp",
        tl=int(design.cap),
        chunk_tokens=chunk,
        prefill_budget_tokens=int(design.prefill),
        total_budget_tokens=int(design.prefill + sum(design.budgets)),
        decode_budgets=design.budgets,
        boundaries=design.boundaries,
        per_stage=tuple(float(n) for n in design.reals),
        kappa=float(kappa),
        interval=(float(low), float(high)),
        binding_end=_binding_end(kappa, low, high),
        iteration_time_s=float(design.time),
        memory_tokens=float(memory),
        utilisation=float(utilisation(kappa)),
        best_utilisation=float(best),
        conventions=conventions,
        block_tokens=block,
        watermark=mark,
        conditions=conditions,
        design_rate_per_s=workload.total_rate_per_s,
    )


def _design_workload(workload: Workload, conventions: str) -> Workload:
    """The workload the design carries: under ``vidur``, the rate Vidur's capped-gap arrivals deliver."""
    if conventions != "vidur":
        return workload
    from fluidopt.conventions import VIDUR_MAX_GAP_FACTOR
    from fluidopt.sim.arrivals import PoissonArrivals

    # Vidur's capped-gap Poisson process delivers 1 / (1 - e^-3) = 1.052 x the nominal rate:
    # the fluid batch must carry the delivered rate.
    return workload.scaled(PoissonArrivals(max_gap_factor=VIDUR_MAX_GAP_FACTOR).rate_multiplier)


def _chunk_size(workload: Workload, chunk_tokens: int | None) -> int:
    """The chunk size: the given one (at most the longest prompt), default 256 or the longest prompt."""
    longest = int(workload.prefill.max())
    if chunk_tokens is None:
        chunk_tokens = min(DEFAULT_CHUNK_TOKENS, longest)
    chunk = require_whole_number(chunk_tokens, "chunk_tokens", 1)
    require(
        chunk <= longest,
        "chunk_tokens",
        chunk_tokens,
        f"is larger than every prompt (longest {longest} tokens): chunking would never apply",
    )
    return chunk


def _kappa_interval(workload: Workload, profile: GPUProfile, batch: FluidBatch, usable: float) -> tuple[float, float]:
    """``[dT*, C (1 - watermark) / M]``: the equilibrium end and the memory end; an empty one is an error."""
    exact = solve_fixed_point(workload, profile, batch=batch)
    if not np.isfinite(exact.iteration_time_s):
        raise InputError("rate_per_s", workload.total_rate_per_s, f"has no chunked equilibrium ({exact.reason})")
    low = exact.iteration_time_s
    high = usable / batch.memory
    if low > high:
        raise InputError(
            "rate_per_s",
            workload.total_rate_per_s,
            f"has no chunked equilibrium: dT* = {low:.4g} s exceeds the memory end C(1-watermark)/M = {high:.4g} s",
        )
    return low, high


def _requested_kappa(kappa: float | None, slack: float | None, low: float, high: float) -> tuple[float, float | None]:
    """The kappa asked for (given, from the slack, or the boundary ``dT*``), checked against the interval."""
    slack_value: float | None = None
    if slack is not None:
        slack_value = require_finite_number(slack, "slack")
        require(slack_value >= 0, "slack", slack, "must be >= 0")
        kappa = low * (1 + slack_value)
        slack_value = float(slack_value)
    if kappa is None:
        kappa = low
    kappa = require_finite_number(kappa, "kappa")
    require(kappa > 0, "kappa", kappa, "must be > 0")
    require(
        kappa <= high * (1 + 1e-12),
        "kappa",
        kappa,
        f"exceeds the memory end of the interval ({high:.6g} s): the batch would not fit in C (1 - watermark)",
    )
    if kappa < low * (1 - 1e-9):
        raise InputError("kappa", kappa, f"is below dT* = {low:.6g} s: arrivals per iteration would not fit")
    return kappa, slack_value


@dataclass(frozen=True)
class _RoundedDesign:
    """The budgets of one kappa, rounded up to whole chunks and decode steps, and the time of a full batch."""

    boundaries: tuple[int, ...]
    reals: list[float]
    budgets: tuple[int, ...]
    prefill: int
    cap: int
    time: float


def _rounded_design(
    workload: Workload,
    profile: GPUProfile,
    batch: FluidBatch,
    chunk: int,
    kappa: float,
    conventions: str,
    nested: bool,
    segments: int | None,
    eta: float,
) -> _RoundedDesign:
    """Per-segment decode budgets, the prefill budget and the in-system cap at ``kappa``, rounded up."""
    bounds, stage_counts, reals = _segments(workload, kappa, conventions, nested, segments, eta)
    budgets = tuple(max(1, math.ceil(n * s - 1e-9)) for n, s in zip(reals, stage_counts))
    prefill = max(chunk, math.ceil(kappa * batch.prefill_tokens - 1e-9))
    in_prefill = float(np.dot(workload.rates, batch.prefill_per_class)) * kappa
    cap = max(len(bounds), math.ceil(in_prefill + sum(n * c for n, c in zip(reals, stage_counts)) - 1e-9))
    time = _rounded_batch_time(workload, profile, chunk, prefill, budgets, bounds, conventions)
    return _RoundedDesign(bounds, reals, budgets, prefill, cap, time)


def _utilisation_rule(
    profile: GPUProfile, batch: FluidBatch, high: float, rounded: Callable[[float], _RoundedDesign]
) -> tuple[Callable[[float], float], float, float]:
    """The utilisation the design controls, the best the memory allows, and the target margin.

    The pipeline serves kappa seconds of arrivals per iteration of tau(rounded budgets): its
    utilisation is tau / kappa.  At kappa = dT* it is 1, a critically loaded queue that no
    finite run keeps stable, so the design asks for the margin halfway between 1 and the best
    utilisation the memory allows, tau(high) / high: stable by construction wherever the
    fluid model says the load is (then that best is below 1).  The rounded budgets assume every
    iteration full (a whole chunk of prefill, every decode budget used); when even at the memory
    end they cannot leave a margin, the margin is taken on the fluid batch, which is what an
    iteration carries on average (memory-bound loads of long outputs, e.g. p512d1000).
    """

    def rounded_utilisation(k: float) -> float:
        return float(rounded(k).time) / k

    def fluid_utilisation(k: float) -> float:
        return float(batch.iteration_time(profile, k)) / k

    utilisation = rounded_utilisation
    best = utilisation(high)
    if best >= 1.0:
        utilisation = fluid_utilisation
        best = utilisation(high)
    target = (1.0 + best) / 2.0 if best < 1.0 else 1.0
    return utilisation, best, target


def _binding_end(kappa: float, low: float, high: float) -> str:
    """Which end of the interval the chosen kappa sits at (``boundary``, ``memory``) or ``slack`` between."""
    if kappa <= low * (1 + 1e-9):
        return "boundary"
    if kappa >= high * (1 - 1e-9):
        return "memory"
    return "slack"


def _segments(
    workload: Workload, kappa: float, conventions: str, nested: bool, segments: int | None, eta: float
) -> tuple[tuple[int, ...], list[int], list[float]]:
    """Segment boundaries (decode stages), decode stages per segment and per-stage reals ``n_k``."""
    first = 2 if conventions == "vidur" else 1
    longest = int(workload.decode.max())
    if not nested:
        steps = sum(max(int(c.decode_tokens) - first + 1, 0) * c.rate_per_s for c in workload.classes)
        count = max(longest - first + 1, 1)
        # One segment: the per-stage real is the rate-weighted decode steps per stage.
        return (longest,), [count], [float(kappa * steps / count)]
    from fluidopt.thresholds.nested import choose_cut_points, make_segments

    distinct = len({int(c.decode_tokens) for c in workload.classes})
    count = require_whole_number(segments if segments is not None else distinct, "segments", 1)
    require(count <= distinct, "segments", count, f"must be <= the distinct output lengths ({distinct})")
    margin = require_finite_number(eta, "eta")
    require(margin >= 0, "eta", eta, "must be >= 0")
    segs = make_segments(workload, choose_cut_points(workload, count, "equal-mass"))
    per_stage = [kappa * segs.rates[0]]
    for p in segs.continuation:
        per_stage.append(per_stage[-1] * min(p + margin, 0.99))
    edges = [first - 1, *segs.boundaries]
    stages = [max(b - a, 1) for a, b in zip(edges, edges[1:])]
    return tuple(int(b) for b in segs.boundaries), stages, per_stage


def _rounded_batch_time(
    workload: Workload,
    profile: GPUProfile,
    chunk: int,
    prefill_budget: int,
    decode_budgets: tuple[int, ...],
    boundaries: tuple[int, ...],
    conventions: str,
) -> float:
    """Iteration time of a full batch at the rounded budgets: whole chunks, decodes at mean positions."""
    prompt = float(np.average(workload.prefill, weights=workload.rates))
    chunks, cached = [], []
    left = prefill_budget
    position = 0.0
    while left > 0:
        size = min(chunk, left)
        chunks.append(size)
        cached.append(position % max(prompt, 1.0))
        position += size
        left -= size
    first = 2 if conventions == "vidur" else 1
    decode_cached: list[float] = []
    edges = [first - 1, *boundaries]
    for budget, (a, b) in zip(decode_budgets, zip(edges, edges[1:])):
        mean_stage = 0.5 * (a + 1 + b)
        decode_cached.extend([prompt + mean_stage - 1] * budget)
    return profile.batch_time(chunks, cached, decode_cached)
