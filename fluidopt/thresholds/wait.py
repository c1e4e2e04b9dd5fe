"""WAIT thresholds from the fluid model (arXiv:2504.11320, section 4; docs/theory.md section 4).

With ``n_j = kappa * lambda_j`` the conditions ``dT(n) <= n_j / lambda_j`` for every j and
``M* <= M^pi <= C`` become ``kappa in [dT*, C / a]`` for the paper's linear model.  For a
profile with affine pieces, ``dT(n) = max_p (base_p + kappa K_p)`` gives the lower end
``max_p base_p / (1 - K_p) = dT*``; a limit on the iteration time lowers the upper end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number
from fluidopt.fluid.constraints import Constraints, check_fits, class_costs
from fluidopt.profile import GPUProfile
from fluidopt.thresholds.conditions import Condition, ConditionsReport, ConditionsStatus
from fluidopt.workload import Workload


@dataclass(frozen=True)
class KappaInterval:
    """The admissible ``kappa`` range ``[low, high]`` (empty when ``low > high``)."""

    low: float
    high: float

    @property
    def empty(self) -> bool:
        """True when no kappa satisfies the conditions (the load is unstable)."""
        return not self.low <= self.high


@dataclass(frozen=True)
class WaitThresholds(ConditionsStatus):
    """A WAIT threshold choice and its memory and timing figures.

    Attributes
    ----------
    thresholds : tuple of int
        ``n_j`` per class (entry threshold and per-stage cap).
    kappa : float
        The kappa the thresholds were rounded from.
    interval : KappaInterval
        Admissible kappa range.
    case : {"boundary", "slack"}
        Boundary when some ``dT(n) = n_j / lambda_j``, slack when every inequality is strict.
    memory_base_tokens : float
        ``M^pi = sum_j n_j S_j`` (the most memory WAIT ever uses).
    iteration_time_s : float
        ``dT(n)``, the longest iteration.
    conditions : ConditionsReport
        Each condition, whether it holds and by how much.

    """

    class_names: tuple[str, ...]
    thresholds: tuple[int, ...]
    kappa: float
    interval: KappaInterval
    case: str
    memory_base_tokens: float
    iteration_time_s: float
    conditions: ConditionsReport

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "policy": "wait",
            "classes": list(self.class_names),
            "thresholds": list(self.thresholds),
            "kappa": self.kappa,
            "kappa_interval": [self.interval.low, self.interval.high],
            "case": self.case,
            "memory_base_tokens": self.memory_base_tokens,
            "memory_required_tokens": self.memory_base_tokens,
            "iteration_time_s": self.iteration_time_s,
            "conditions": self.conditions.to_list(),
        }


def batch_time(workload: Workload, profile: GPUProfile, per_stage: Any) -> float:
    """``dT(n)``: the iteration time of a full batch with ``n_j`` requests at every stage of class j."""
    costs = class_costs(workload, profile)
    bases = profile.coefficient_matrix()[:, 0]
    return float(np.max(bases + costs @ np.asarray(per_stage, dtype=float)))


def fluid_iteration_time(workload: Workload, profile: GPUProfile) -> float:
    """``dT* = max_p base_p / (1 - K_p)``, or inf when some ``K_p >= 1`` (compute-bound overload)."""
    loads = class_costs(workload, profile) @ workload.rates
    bases = profile.coefficient_matrix()[:, 0]
    if np.any(loads >= 1):
        return math.inf
    return float(np.max(bases / (1 - loads)))


def kappa_interval(workload: Workload, profile: GPUProfile, constraints: Constraints | None = None) -> KappaInterval:
    """The kappa range ``[dT*, C / a]`` (with an iteration-time limit, also ``dT(kappa lambda) <= tbt_max``)."""
    constraints = constraints or Constraints()
    check_fits(workload, profile)
    low = fluid_iteration_time(workload, profile)
    mass = workload.kv_mass_rate
    high = profile.kv_capacity_tokens / mass if mass > 0 else math.inf
    if constraints.tbt_max_s is not None:
        loads = class_costs(workload, profile) @ workload.rates
        bases = profile.coefficient_matrix()[:, 0]
        for base, load in zip(bases, loads):
            if load > 0:
                high = min(high, (constraints.tbt_max_s - base) / load)
    return KappaInterval(float(low), float(high))


def check_wait_conditions(workload: Workload, profile: GPUProfile, thresholds: Any) -> ConditionsReport:
    """The WAIT conditions for given integer thresholds (docs/theory.md section 4)."""
    n = np.asarray(list(thresholds), dtype=float)
    require(
        n.size == workload.num_classes,
        "thresholds",
        list(thresholds),
        f"needs one threshold per class ({workload.num_classes})",
    )
    dt = batch_time(workload, profile, n)
    memory = float(n @ workload.kv_mass)
    conditions = []
    for j, request_class in enumerate(workload.classes):
        if request_class.rate_per_s > 0:
            name = f"dT(n) <= n_j / lambda_j [{request_class.name}]"
            conditions.append(Condition(name, dt, n[j] / request_class.rate_per_s))
    fluid_dt = fluid_iteration_time(workload, profile)
    fluid_memory = fluid_dt * workload.kv_mass_rate if math.isfinite(fluid_dt) else math.inf
    conditions.append(Condition("M* <= M^pi", fluid_memory, memory))
    conditions.append(Condition("M^pi <= C", memory, float(profile.kv_capacity_tokens)))
    return ConditionsReport(tuple(conditions))


def wait_thresholds(
    workload: Workload,
    profile: GPUProfile,
    *,
    kappa: float | None = None,
    slack: float = 0.2,
    case: Literal["slack", "boundary"] = "slack",
    constraints: Constraints | None = None,
) -> WaitThresholds:
    """WAIT thresholds ``n_j = ceil(kappa lambda_j)`` (at least 1) from the fluid model.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        Traffic (rates matter) and GPU.
    kappa : float, optional
        Use this kappa; by default ``dT* (1 + slack)`` for the slack case or ``dT*`` for the
        boundary case, capped at the interval's top.
    slack : float
        Relative slack above ``dT*``.
    case : {"slack", "boundary"}
        Which end to aim for when ``kappa`` is not given.
    constraints : Constraints, optional
        An iteration-time limit lowers the top of the kappa interval.

    Returns
    -------
    WaitThresholds
        The integer thresholds re-checked against every condition (an unstable load shows as an
        empty interval and violated conditions, not as an exception).

    """
    interval = kappa_interval(workload, profile, constraints)
    explicit = kappa is not None
    if kappa is None:
        if not math.isfinite(interval.low):
            kappa = interval.high if math.isfinite(interval.high) else 1.0
        elif case == "boundary":
            kappa = interval.low
        else:
            slack = require_finite_number(slack, "slack")
            require(slack >= 0, "slack", slack, "must be >= 0")
            kappa = min(interval.low * (1 + slack), max(interval.high, interval.low))
        kappa = _first_kappa_that_rounds_well(workload, profile, kappa, interval)
    kappa = require_finite_number(kappa, "kappa")
    if kappa <= 0:
        raise InputError("kappa", kappa, "must be > 0")
    # An explicit kappa outside a non-empty interval is bad input; an empty interval (an unstable
    # load) is a result whose conditions report says so.
    nonempty = interval.low <= interval.high
    if explicit and nonempty and math.isfinite(interval.low) and kappa < interval.low * (1 - 1e-9):
        raise InputError(
            "kappa",
            kappa,
            f"is below the kappa interval [{interval.low:.6g}, {interval.high:.6g}]: arrivals per iteration "
            "would not fit n_j = kappa lambda_j",
        )
    if explicit and nonempty and math.isfinite(interval.high) and kappa > interval.high * (1 + 1e-9):
        raise InputError(
            "kappa",
            kappa,
            f"is above the kappa interval [{interval.low:.6g}, {interval.high:.6g}]: M^pi would exceed C",
        )
    per_stage = _rounded(workload, kappa)
    report = check_wait_conditions(workload, profile, per_stage)
    timing = [c for c in report.conditions if c.name.startswith("dT(n)")]
    boundary = any(math.isclose(c.lhs, c.rhs, rel_tol=1e-9) for c in timing)
    return WaitThresholds(
        class_names=workload.class_names,
        thresholds=tuple(int(v) for v in per_stage),
        kappa=float(kappa),
        interval=interval,
        case="boundary" if boundary else "slack",
        memory_base_tokens=float(per_stage @ workload.kv_mass),
        iteration_time_s=batch_time(workload, profile, per_stage),
        conditions=report,
    )


def _rounded(workload: Workload, kappa: float) -> np.ndarray:
    return np.maximum(1, np.ceil(kappa * workload.rates - 1e-9)).astype(int)


def _first_kappa_that_rounds_well(
    workload: Workload, profile: GPUProfile, kappa: float, interval: KappaInterval, max_steps: int = 10_000
) -> float:
    """The smallest kappa >= ``kappa`` in the interval whose rounded thresholds meet every condition.

    Rounding ``kappa lambda_j`` up changes ``dT(n)`` and ``M^pi`` by O(1) (docs/theory.md section 4);
    the candidates are the points ``n / lambda_j`` where some threshold steps up.  Returns the
    starting kappa when no candidate in the interval works (the report then says why).
    """
    if interval.empty or not math.isfinite(kappa):
        return kappa
    candidate = kappa
    for _ in range(max_steps):
        if check_wait_conditions(workload, profile, _rounded(workload, candidate)).all_hold:
            return candidate
        positive = workload.rates > 0
        steps = np.ceil(candidate * workload.rates[positive] - 1e-9) + 1
        candidate = float(np.min(steps / workload.rates[positive]))
        if candidate > interval.high:
            break
    return kappa
