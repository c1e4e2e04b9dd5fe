"""Nested WAIT thresholds, segment design and the safety buffer.

From arXiv:2504.11320, section 5, and docs/theory.md section 6.
Output lengths are hidden from the scheduler; classes sorted by output length
``l'_1 < ... < l'_m`` are cut into segments.  Segment k ends at decode stage ``r_k``; the rate
reaching it is ``Lambda_k`` and ``p_k = Lambda_k / Lambda_{k-1}`` is the probability that a
request surviving segment k-1 continues.  Thresholds satisfy ``dT(n) < n_1 / Lambda_1`` and
``p_k < n_k / n_{k-1} < 1``; the memory needed is the base ``M^pi`` plus, for every boundary
queue, a deterministic carry-over and a logarithmic buffer sized by the Cramer-Lundberg
exponent ``theta_k`` of the increments ``Binomial(n_{k-1}, p_k) - n_k``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number, require_whole_number
from fluidopt.fluid.constraints import check_fits
from fluidopt.profile import GPUProfile
from fluidopt.thresholds.conditions import Condition, ConditionsReport, ConditionsStatus
from fluidopt.workload import Workload

CutMethod = Literal["equal-width", "equal-mass", "optimal"]
MAX_RATIO = 0.99
MAX_COMBINATIONS = 50_000


def cramer_lundberg_theta(n_prev: int, n_next: int, p: float) -> float:
    """Positive root of ``exp(-theta n_k) (1 - p + p e^theta)^(n_{k-1}) = 1``.

    Solves ``f(theta) = -theta n_k + n_{k-1} ln(1 - p + p e^theta) = 0`` on ``theta > 0`` with
    :func:`scipy.optimize.brentq` (f is convex, ``f(0) = 0`` and ``f'(0) = n_{k-1} p - n_k < 0``).

    Raises
    ------
    InputError
        Unless ``p n_{k-1} < n_k < n_{k-1}`` (the root exists only then).

    """
    from scipy.optimize import brentq

    p = require_finite_number(p, "p")
    require(0 <= p <= 1, "p", p, "must be a probability")
    require(n_next < n_prev, "n_k", n_next, f"must be < n_(k-1) = {n_prev} for theta to exist")
    require(n_next > p * n_prev, "n_k", n_next, f"must be > p n_(k-1) = {p * n_prev:.6g} for theta to exist")
    if p == 0:
        return math.inf

    def f(theta: float) -> float:
        # ln(1 - p + p e^theta) = theta + ln(p + (1 - p) e^-theta), stable for large theta
        return -theta * n_next + n_prev * (theta + math.log(p + (1 - p) * math.exp(-theta)))

    upper = 1.0
    while f(upper) <= 0:
        upper *= 2
    lower = upper
    while lower > 1e-12 and f(lower) >= 0:
        lower /= 2
    return float(brentq(f, lower, upper, xtol=1e-14, rtol=1e-12))


def theta_lower_bound(n_prev: int, n_next: int, p: float) -> float:
    """The bound ``theta_k >= 8 (n_k - n_{k-1} p_k) / n_{k-1}`` (docs/theory.md section 6)."""
    return 8 * (n_next - n_prev * p) / n_prev


@dataclass(frozen=True)
class Segments:
    """Segments of output-length classes.

    Attributes
    ----------
    boundaries : tuple of int
        ``r_k``: the last decode stage of each segment.
    rates : tuple of float
        ``Lambda_k``: rate of requests reaching segment k.
    prefill : tuple of int
        Largest prompt among the classes reaching segment k (the conservative prefill).
    cut_points : tuple of int
        ``h_k``: index (1-based, over distinct sorted output lengths) of the last class of segment k.

    """

    boundaries: tuple[int, ...]
    rates: tuple[float, ...]
    prefill: tuple[int, ...]
    cut_points: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of segments L."""
        return len(self.boundaries)

    @property
    def continuation(self) -> tuple[float, ...]:
        """``p_k = Lambda_k / Lambda_{k-1}`` for k >= 2."""
        return tuple(self.rates[k] / self.rates[k - 1] for k in range(1, self.count))

    @property
    def lengths(self) -> np.ndarray:
        """``delta_k``: stages per segment (``r_1 + 1`` for the first, which includes the prefill)."""
        r = np.asarray(self.boundaries, dtype=float)
        return np.diff(np.concatenate([[-1.0], r]))

    @property
    def mean_stage(self) -> np.ndarray:
        """``sbar_k``: mean decode stage in segment k."""
        r = np.asarray(self.boundaries, dtype=float)
        previous = np.concatenate([[-1.0], r[:-1]])
        return (previous + 1 + r) / 2

    def kv_per_unit(self) -> np.ndarray:
        """KV tokens one unit of ``n_k`` holds across segment k: ``(l_k + sbar_k) delta_k``."""
        return (np.asarray(self.prefill, dtype=float) + self.mean_stage) * self.lengths


def _distinct_classes(workload: Workload) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct output lengths (sorted) with their total rates and largest prompt."""
    decode = workload.decode.astype(int)
    lengths = np.unique(decode)
    rates = np.array([workload.rates[decode == d].sum() for d in lengths])
    prefill = np.array([workload.prefill[decode == d].max() for d in lengths]).astype(int)
    return lengths, rates, prefill


def make_segments(workload: Workload, cut_points: Any) -> Segments:
    """Segments from cut points ``h_1 < ... < h_L = m`` over the distinct sorted output lengths."""
    lengths, rates, prefill = _distinct_classes(workload)
    m = lengths.size
    cuts = tuple(int(c) for c in cut_points)
    require(len(cuts) > 0 and cuts[-1] == m, "cut_points", list(cuts), f"must end at m = {m}")
    require(all(b > a for a, b in zip((0, *cuts), cuts)), "cut_points", list(cuts), "must increase from >= 1")
    boundaries, segment_rates, segment_prefill = [], [], []
    previous = 0
    for cut in cuts:
        boundaries.append(int(lengths[cut - 1]))
        segment_rates.append(float(rates[previous:].sum()))
        segment_prefill.append(int(prefill[previous:].max()))
        previous = cut
    return Segments(tuple(boundaries), tuple(segment_rates), tuple(segment_prefill), cuts)


def choose_cut_points(
    workload: Workload, segments: int, method: CutMethod = "equal-mass", **design: Any
) -> tuple[int, ...]:
    """Cut points for ``segments`` coarse segments.

    Parameters
    ----------
    workload : Workload
        The classes (sorted by output length internally).
    segments : int
        Number of segments L.
    method : {"equal-width", "equal-mass", "optimal"}
        Equal spacing in output length, equal shares of the arrival rate, or the cuts that
        minimise the required memory (exhaustive over all cuts; ``design`` is passed to
        :func:`nested_wait_thresholds`).

    """
    lengths, rates, _ = _distinct_classes(workload)
    m = lengths.size
    count = require_whole_number(segments, "segments", 1)
    require(count <= m, "segments", count, f"cannot exceed the number of distinct output lengths ({m})")
    if method == "equal-width":
        targets = lengths[-1] * np.arange(1, count + 1) / count
        raw = [int(np.searchsorted(lengths, target, side="right")) for target in targets]
    elif method == "equal-mass":
        shares = np.cumsum(rates) / rates.sum()
        raw = [int(np.searchsorted(shares, k / count - 1e-12, side="left")) + 1 for k in range(1, count + 1)]
    elif method == "optimal":
        return _optimal_cuts(workload, count, **design)
    else:
        raise InputError("method", method, "must be equal-width, equal-mass or optimal")
    return _repair_cuts(raw, m)


def _repair_cuts(raw: list[int], m: int) -> tuple[int, ...]:
    """Make cut points strictly increasing in ``1..m`` ending at m, keeping their count if possible."""
    count = len(raw)
    cuts: list[int] = []
    for k, value in enumerate(raw):
        low = cuts[-1] + 1 if cuts else 1
        high = m - (count - 1 - k)
        cuts.append(min(max(value, low), high))
    cuts[-1] = m
    return tuple(cuts)


def _optimal_cuts(workload: Workload, count: int, **design: Any) -> tuple[int, ...]:
    m = _distinct_classes(workload)[0].size
    if math.comb(m - 1, count - 1) > MAX_COMBINATIONS:
        raise InputError("segments", count, f"too many cut combinations for m = {m}; use equal-mass or equal-width")
    best: tuple[float, tuple[int, ...]] | None = None
    for inner in itertools.combinations(range(1, m), count - 1):
        cuts = (*inner, m)
        required = _required_memory_for(workload, cuts, design)
        if best is None or required < best[0]:
            best = (required, cuts)
    assert best is not None
    return best[1]


def _required_memory_for(workload: Workload, cuts: tuple[int, ...], design: dict[str, Any]) -> float:
    profile = design["profile"]
    options = {k: v for k, v in design.items() if k != "profile"}
    try:
        return nested_wait_thresholds(workload, profile, cut_points=cuts, **options).memory_required_tokens
    except InputError:
        return math.inf


@dataclass(frozen=True)
class NestedWaitThresholds(ConditionsStatus):
    """A Nested WAIT design: segments, thresholds, buffer and required memory.

    The decomposition ``memory_required = base + carry_over + buffer`` is what
    :func:`memory_against_segments` plots against the number of segments.
    """

    segments: Segments
    thresholds: tuple[int, ...]
    eta: float
    theta: tuple[float, ...]
    theta_lower_bounds: tuple[float, ...]
    iteration_time_s: float
    memory_base_tokens: float
    memory_carry_over_tokens: float
    memory_buffer_tokens: float
    horizon_s: float
    delta: float
    zeta: float
    conditions: ConditionsReport

    @property
    def memory_required_tokens(self) -> float:
        """``M_req = M^pi + sum_k (l + r_{k-1} + 1) (n_k + ln(L (1 + zeta T / d0) / delta) / theta_k)``."""
        return self.memory_base_tokens + self.memory_carry_over_tokens + self.memory_buffer_tokens

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "policy": "nested-wait",
            "segments": [
                {"last_stage": r, "rate_per_s": lam, "prefill_tokens": l}
                for r, lam, l in zip(self.segments.boundaries, self.segments.rates, self.segments.prefill)
            ],
            "boundaries": list(self.segments.boundaries),
            "thresholds": list(self.thresholds),
            "continuation_probabilities": list(self.segments.continuation),
            "theta": list(self.theta),
            "theta_lower_bounds": list(self.theta_lower_bounds),
            "eta": self.eta,
            "iteration_time_s": self.iteration_time_s,
            "memory_base_tokens": self.memory_base_tokens,
            "memory_carry_over_tokens": self.memory_carry_over_tokens,
            "memory_buffer_tokens": self.memory_buffer_tokens,
            "memory_required_tokens": self.memory_required_tokens,
            "horizon_s": self.horizon_s,
            "delta": self.delta,
            "zeta": self.zeta,
            "conditions": self.conditions.to_list(),
        }


def nested_batch_time(segments: Segments, thresholds: Any, profile: GPUProfile) -> float:
    """``dT(n)``: iteration time of a full Nested WAIT batch (``n_k`` at every stage of segment k)."""
    n = np.asarray(thresholds, dtype=float)
    kv = float(n @ segments.kv_per_unit())
    prefill = float(n[0] * segments.prefill[0])
    sequences = float(n @ segments.lengths)
    return float(profile.iteration_time(kv, prefill, sequences))


def nested_conditions(segments: Segments, thresholds: Any, profile: GPUProfile, required: float) -> ConditionsReport:
    """The Nested WAIT conditions (docs/theory.md section 6) for given thresholds."""
    n = [int(v) for v in thresholds]
    conditions = [
        Condition("dT(n) < n_1 / Lambda_1", nested_batch_time(segments, n, profile), n[0] / segments.rates[0], True)
    ]
    for k in range(1, segments.count):
        p = segments.continuation[k - 1]
        conditions.append(Condition(f"p_{k + 1} < n_{k + 1} / n_{k}", p, n[k] / n[k - 1], True))
        conditions.append(Condition(f"n_{k + 1} / n_{k} < 1", n[k] / n[k - 1], 1.0, True))
    conditions.append(Condition("M_req <= C", required, float(profile.kv_capacity_tokens)))
    return ConditionsReport(tuple(conditions))


def nested_wait_thresholds(
    workload: Workload,
    profile: GPUProfile,
    *,
    segments: int | None = None,
    cut_points: Any = None,
    method: CutMethod = "equal-mass",
    eta: float = 0.05,
    horizon_s: float = 600.0,
    delta: float = 0.01,
    zeta: float = 1.0,
    thresholds: Any = None,
    max_first_threshold: int = 100_000,
) -> NestedWaitThresholds:
    """Design Nested WAIT: segments, thresholds with margin ``eta``, theta, and required memory.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        Classes (output lengths hidden from the scheduler) and GPU.
    segments : int, optional
        Number of coarse segments L (default: one per distinct output length).
    cut_points : sequence of int, optional
        Explicit cuts (overrides ``segments`` and ``method``).
    method : {"equal-width", "equal-mass", "optimal"}
        How to place ``segments`` cuts.
    eta : float
        Ratio margin: ``n_k / n_{k-1}`` aims at ``min(p_k + eta, 0.99)``.
    horizon_s, delta, zeta : float
        Horizon T, failure probability and scale of the safety buffer.
    thresholds : sequence of int, optional
        Use these thresholds instead of designing them (they are checked, not changed).
    max_first_threshold : int
        Give up searching for ``n_1`` beyond this.

    Returns
    -------
    NestedWaitThresholds
        The design and its conditions report.

    """
    check_fits(workload, profile)
    require(workload.total_rate_per_s > 0, "rate", workload.total_rate_per_s, "must be > 0 to design thresholds")
    eta = require_finite_number(eta, "eta")
    require(eta > 0, "eta", eta, "must be > 0")
    horizon_s = require_finite_number(horizon_s, "horizon_s")
    require(horizon_s > 0, "horizon_s", horizon_s, "must be > 0")
    delta = require_finite_number(delta, "delta")
    require(0 < delta < 1, "delta", delta, "must be in (0, 1)")
    zeta = require_finite_number(zeta, "zeta")
    require(zeta >= 1, "zeta", zeta, "must be >= 1")
    if cut_points is None:
        m = _distinct_classes(workload)[0].size
        count = m if segments is None else segments
        design = {"profile": profile, "eta": eta, "horizon_s": horizon_s, "delta": delta, "zeta": zeta}
        cut_points = choose_cut_points(workload, count, method, **(design if method == "optimal" else {}))
    segs = make_segments(workload, cut_points)
    if thresholds is None:
        thresholds = _design_thresholds(segs, profile, eta, max_first_threshold)
    thresholds = tuple(require_whole_number(v, f"thresholds[{i}]", 1) for i, v in enumerate(thresholds))
    require(len(thresholds) == segs.count, "thresholds", list(thresholds), f"needs {segs.count} entries")
    n = np.asarray(thresholds, dtype=float)
    base = float(n @ segs.kv_per_unit())
    d0 = float(profile.coefficient_matrix()[:, 0].max())
    log_term = math.log(segs.count * (1 + zeta * horizon_s / d0) / delta)
    carry, buffer = 0.0, 0.0
    thetas, bounds = [], []
    for k in range(1, segs.count):
        p = segs.continuation[k - 1]
        # A request waiting at the boundary is about to run stage r_{k-1} + 1; fluidopt charges
        # it l + r_{k-1} + 1 tokens (the paper writes l + l'_{k-1}, without the next token's slot).
        held = segs.prefill[k] + segs.boundaries[k - 1] + 1
        try:
            theta = cramer_lundberg_theta(thresholds[k - 1], thresholds[k], p)
        except InputError:
            theta = 0.0
        thetas.append(theta)
        bounds.append(theta_lower_bound(thresholds[k - 1], thresholds[k], p))
        carry += held * thresholds[k]
        buffer += held * log_term / theta if theta > 0 else math.inf
    required = base + carry + buffer
    return NestedWaitThresholds(
        segments=segs,
        thresholds=thresholds,
        eta=eta,
        theta=tuple(thetas),
        theta_lower_bounds=tuple(bounds),
        iteration_time_s=nested_batch_time(segs, thresholds, profile),
        memory_base_tokens=base,
        memory_carry_over_tokens=carry,
        memory_buffer_tokens=buffer,
        horizon_s=horizon_s,
        delta=delta,
        zeta=zeta,
        conditions=nested_conditions(segs, thresholds, profile, required),
    )


def _design_thresholds(segs: Segments, profile: GPUProfile, eta: float, limit: int) -> tuple[int, ...]:
    """Smallest ``n_1`` whose rounded chain ``n_k = ceil(min(p_k + eta, 0.99) n_{k-1})`` meets the conditions."""
    ratios = [min(p + eta, MAX_RATIO) for p in segs.continuation]
    first = 1
    while first <= limit:
        chain = [first]
        for k, ratio in enumerate(ratios):
            nxt = max(1, math.ceil(ratio * chain[-1] - 1e-9))
            if nxt >= chain[-1] and chain[-1] - 1 > segs.continuation[k] * chain[-1]:
                nxt = chain[-1] - 1
            chain.append(nxt)
        report = nested_conditions(segs, chain, profile, 0.0)
        timing_and_ratios = [c for c in report.conditions if c.name != "M_req <= C"]
        if all(c.holds for c in timing_and_ratios):
            return tuple(chain)
        first += 1 if first < 64 else max(1, first // 16)
    raise InputError("rate", segs.rates[0], "no Nested WAIT thresholds meet the conditions (the load is too high)")


def memory_against_segments(
    workload: Workload, profile: GPUProfile, *, method: CutMethod = "optimal", **design: Any
) -> dict[int, NestedWaitThresholds | None]:
    """The best design for every number of segments ``L = 1..m`` (None where no thresholds exist).

    Plotting ``memory_required_tokens`` (and its base / carry-over / buffer parts) against L
    shows the U shape of docs/theory.md section 6.
    """
    m = _distinct_classes(workload)[0].size
    out: dict[int, NestedWaitThresholds | None] = {}
    for count in range(1, m + 1):
        try:
            out[count] = nested_wait_thresholds(workload, profile, segments=count, method=method, **design)
        except InputError:
            out[count] = None
    return out
