"""Stability regions: membership, the largest stable scaling of a mix, and 2-class boundaries.

For the paper's linear model the stability region is the half-space
``a(lambda) <= C / (d0 + d1 C)`` and the largest stable scaling of a mix is
``theta* = C / ((d0 + d1 C) a(lambda))`` (arXiv:2504.11320; docs/theory.md section 3).  For a
profile with affine pieces ``(base_p, K_p = sum_j lambda_j c_pj)`` and resources
``(usage u_r, limit L_r)`` the scaling is limited by

    theta <= L_r / (base_p U_r + L_r K_p)      (U_r = sum_j lambda_j u_rj; memory: U = a)
    theta <= (1 - base_p / tbt_max) / K_p       (iteration-time limit)

for every piece p (docs/theory.md section 8).  The LP route maximises ``theta`` after the
Charnes-Cooper transform ``x = n / dT``, ``y = 1 / dT`` of the linear-fractional program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fluidopt._values import ArrayValue
from fluidopt.errors import InputError, require, require_whole_number
from fluidopt.fluid.constraints import Constraints, check_fits, class_costs, resource_loads
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

TIE = 1e-9


@dataclass(frozen=True)
class StabilityResult(HasStatus):
    """Largest stable scaling of a workload's mix.

    Attributes
    ----------
    max_scale : float
        ``theta*``: the mix ``theta * lambda`` is stable iff ``theta <= theta*`` (inf for an empty mix).
    max_rate_per_s : float
        ``theta* * Lambda``, the largest stable total rate with these class shares.
    stable : bool
        Whether the given rates are stable (``theta* >= 1``).
    binding : tuple of str
        Resources that limit ``theta*`` (memory, tbt, batch_sequences, prefill_budget).
    memory_elasticity : float
        ``d ln theta* / d ln C`` (right derivative): near 1 memory-bound, near 0 compute-bound.
    bounds : dict
        Closed form only: the bound on ``theta`` from each (resource, piece) pair.
    method : str
        ``"closed-form"`` or ``"lp"``.
    solver : str
        The LP solver (and options) that settled the problem; "" when no LP was solved.

    """

    max_scale: float
    max_rate_per_s: float
    stable: bool
    binding: tuple[str, ...]
    memory_elasticity: float
    method: str
    bounds: dict[str, float]
    solver: str = ""

    @property
    def status(self) -> str:  # type: ignore[override]
        """``stable`` when the given rates are inside the region, else ``unstable`` (both are results)."""
        return "stable" if self.stable else "unstable"

    @property
    def message(self) -> str:
        """One line: the largest stable rate and what limits it."""
        return (
            f"{self.status}: largest stable rate {self.max_rate_per_s:.6g} requests/s "
            f"(x{self.max_scale:.4g} the given mix), limited by {', '.join(self.binding) or 'nothing'}"
        )

    @property
    def regime(self) -> str:
        """``memory-bound`` or ``compute-bound`` when memory limits theta*, else the limiting resource."""
        if "memory" in self.binding or not self.binding:
            return "memory-bound" if self.memory_elasticity >= 0.5 else "compute-bound"
        return f"{self.binding[0]}-bound"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the CLI's ``--json`` output)."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "max_scale": _json_float(self.max_scale),
            "max_rate_per_s": _json_float(self.max_rate_per_s),
            "stable": self.stable,
            "binding": list(self.binding),
            "memory_elasticity": self.memory_elasticity,
            "regime": self.regime,
            "method": self.method,
            "bounds": {k: _json_float(v) for k, v in self.bounds.items()},
            "solver": self.solver,
        }


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def max_stable_scale(
    workload: Workload,
    profile: GPUProfile,
    constraints: Constraints | None = None,
    *,
    method: Literal["auto", "closed-form", "lp", "bisection"] = "auto",
) -> StabilityResult:
    """Largest ``theta`` such that ``theta * lambda`` is stable, and what limits it.

    For a measured profile ``auto`` bisects on the scale with the fixed-point equilibrium
    (:mod:`fluidopt.fluid.fixed_point`); ``lp`` then uses its convex affine surrogate.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        The mix (its rates give the direction) and the GPU.
    constraints : Constraints, optional
        Extra per-iteration limits.
    method : {"auto", "closed-form", "lp", "bisection"}
        ``auto`` is the closed form (exact for every affine profile of this model) or, for a
        measured profile, bisection; ``lp`` solves the Charnes-Cooper LP with HiGHS and reads
        the binding resources from its duals.

    """
    constraints = constraints or Constraints()
    if method not in ("auto", "closed-form", "lp", "bisection"):
        raise InputError("method", method, "must be one of auto, closed-form, lp, bisection")
    check_fits(workload, profile)
    if method == "bisection" or (method == "auto" and not profile.timing.exact_affine):
        return _max_scale_bisection(workload, profile, constraints)
    if method == "lp":
        if profile.timing.lp_refusal:
            raise InputError("method", "lp", profile.timing.lp_refusal)
        return _max_scale_lp(workload, profile, constraints)
    return _max_scale_closed_form(workload, profile, constraints)


def is_stable(workload: Workload, profile: GPUProfile, constraints: Constraints | None = None) -> bool:
    """True when the workload's rates lie in the fluid stability region."""
    return max_stable_scale(workload, profile, constraints).stable


def _max_scale_closed_form(workload: Workload, profile: GPUProfile, constraints: Constraints) -> StabilityResult:
    rates = workload.rates
    total = workload.total_rate_per_s
    if total == 0:
        return StabilityResult(np.inf, np.inf, True, (), 0.0, "closed-form", {})
    loads = class_costs(workload, profile) @ rates
    bases = profile.coefficient_matrix()[:, 0]
    bounds: dict[str, float] = {}
    for p, (base, load) in enumerate(zip(bases, loads)):
        for resource, (usage, limit) in resource_loads(workload, constraints, profile).items():
            demand = float(usage @ rates)
            denominator = base * demand + limit * load
            bounds[f"{resource}[{p}]"] = limit / denominator if denominator > 0 else np.inf
        if constraints.tbt_max_s is not None:
            slack = 1 - base / constraints.tbt_max_s
            bounds[f"tbt[{p}]"] = max(slack, 0.0) / load if load > 0 else (np.inf if slack >= 0 else 0.0)
    theta = min(bounds.values())
    tied = [k for k, v in bounds.items() if v <= theta * (1 + TIE)]
    binding = tuple(dict.fromkeys(k.split("[")[0] for k in tied))
    elasticity = 0.0
    if binding == ("memory",):
        capacity = profile.kv_capacity_tokens
        values = []
        for key in tied:
            p = int(key.split("[")[1].rstrip("]"))
            mass = workload.kv_mass_rate
            values.append(bases[p] * mass / (bases[p] * mass + capacity * loads[p]))
        elasticity = float(min(values))
    return StabilityResult(
        max_scale=float(theta),
        max_rate_per_s=float(theta * total),
        stable=bool(theta >= 1 - TIE),
        binding=binding,
        memory_elasticity=elasticity,
        method="closed-form",
        bounds=bounds,
    )


def _max_scale_bisection(workload: Workload, profile: GPUProfile, constraints: Constraints) -> StabilityResult:
    """Bisection on the scale with the fixed-point equilibrium; the binding resource at the limit."""
    from fluidopt.fluid.constraints import utilisation as _utilisation
    from fluidopt.fluid.fixed_point import max_stable_scale_bisection

    def feasible(result, theta: float) -> bool:
        usage = _utilisation(workload.scaled(theta), profile, constraints, result.per_stage, result.iteration_time_s)
        return all(v <= 1 for k, v in usage.items() if k != "memory")

    theta = max_stable_scale_bisection(workload, profile, is_feasible=feasible)
    total = workload.total_rate_per_s
    if not np.isfinite(theta):
        return StabilityResult(np.inf, np.inf, True, (), 0.0, "bisection", {})
    binding: tuple[str, ...] = ("compute",)
    elasticity = 0.0
    if theta > 0:
        from fluidopt.fluid.fixed_point import solve_fixed_point

        near = solve_fixed_point(workload.scaled(theta * (1 + 1e-6)), profile)
        if not near.stable and near.reason.startswith("memory"):
            binding = ("memory",)
        else:
            at = solve_fixed_point(workload.scaled(theta), profile)
            usage = _utilisation(workload.scaled(theta), profile, constraints, at.per_stage, at.iteration_time_s)
            tight = tuple(k for k, v in usage.items() if k != "memory" and v >= 1 - 1e-6)
            binding = tight or ("compute",)
        if binding == ("memory",):
            bigger = profile.with_capacity(int(profile.kv_capacity_tokens * 1.01))
            theta_up = max_stable_scale_bisection(workload, bigger, is_feasible=feasible)
            elasticity = float(np.log(theta_up / theta) / np.log(1.01))
    return StabilityResult(
        max_scale=float(theta),
        max_rate_per_s=float(theta * total),
        stable=bool(theta >= 1 - TIE),
        binding=binding,
        memory_elasticity=elasticity,
        method="bisection",
        bounds={},
    )


class _ScaleLP:
    """The Charnes-Cooper LP with the mix as a cvxpy Parameter, re-solved across directions.

    Scaled so every coefficient is O(1) whatever the units and the size of the rates: with
    ``t0`` the larger of the largest base time and the largest per-request cost, the variables
    are the served requests per ``t0`` (``x'' = t0 x``), ``y' = t0 / dT`` and
    ``phi = theta Lambda t0``; the mix enters only through its shares, and each resource row is
    divided by its limit.
    """

    def __init__(self, workload: Workload, profile: GPUProfile, constraints: Constraints) -> None:
        import cvxpy as cp  # imported here: the closed forms do not need it

        bases = profile.coefficient_matrix()[:, 0]
        costs = class_costs(workload, profile)
        # The time unit bounds every coefficient of the compute rows by 1: the larger of the
        # largest base time and the largest per-request cost.
        self.t0 = float(max(bases.max(), costs.max()))
        self.shares = cp.Parameter(workload.num_classes, nonneg=True)
        self.x = cp.Variable(workload.num_classes, nonneg=True)
        self.y = cp.Variable(nonneg=True)
        self.phi = cp.Variable(nonneg=True)
        self.named: dict[str, Any] = {"arrivals": self.x >= cp.multiply(self.phi, self.shares)}
        for p in range(len(profile.pieces)):
            self.named[f"compute[{p}]"] = (bases[p] / self.t0) * self.y + (costs[p] / self.t0) @ self.x <= 1
        for resource, (usage, limit) in resource_loads(workload, constraints, profile).items():
            self.named[resource] = (usage / limit) @ self.x <= self.y
        if constraints.tbt_max_s is not None:
            self.named["tbt"] = self.y >= self.t0 / constraints.tbt_max_s
        self.problem = cp.Problem(cp.Maximize(self.phi), list(self.named.values()))
        self.resources = tuple(resource_loads(workload, constraints, profile))
        self.tbt_max_s = constraints.tbt_max_s
        self.solver = ""

    def solve(self, mix: np.ndarray) -> tuple[float, tuple[str, ...], float]:
        import cvxpy as cp

        from fluidopt.errors import SolverError
        from fluidopt.fluid._solver import solve

        mix = np.asarray(mix, dtype=float)
        total = float(mix.sum())
        self.shares.value = mix / total
        self.solver = solve(self.problem)
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            if self.problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
                return 0.0, ("tbt",), 0.0
            raise SolverError(f"stability LP ({self.solver}) ended with status {self.problem.status!r}")
        phi = float(np.asarray(self.phi.value))
        theta = phi / (total * self.t0)
        # Scale-free reading of the duals: in the scaled LP, mu_r * y' / phi is the elasticity of
        # theta* with respect to the limit L_r (envelope theorem); a resource binds when > 0.
        y = float(np.asarray(self.y.value))
        terms = {name: y for name in self.resources}
        if self.tbt_max_s is not None:
            terms["tbt"] = self.t0 / self.tbt_max_s
        elasticities = {}
        for name, term in terms.items():
            dual = float(np.sum(np.abs(self.named[name].dual_value)))
            elasticities[name] = dual * term / phi if phi > 0 else 0.0
        binding = tuple(k for k, v in elasticities.items() if v > 1e-7)
        elasticity = elasticities.get("memory", 0.0)
        return theta, binding, float(np.clip(elasticity, 0.0, 1.0))


def _max_scale_lp(workload: Workload, profile: GPUProfile, constraints: Constraints) -> StabilityResult:
    total = workload.total_rate_per_s
    if total == 0:
        return StabilityResult(np.inf, np.inf, True, (), 0.0, "lp", {})
    lp = _ScaleLP(workload, profile, constraints)
    theta, binding, elasticity = lp.solve(workload.rates)
    return StabilityResult(theta, theta * total, bool(theta >= 1 - 1e-7), binding, elasticity, "lp", {}, lp.solver)


# ------------------------------------------------------------ peer forms
def peer_max_scales(workload: Workload, profile: GPUProfile, *, token_budget: float = 512.0) -> dict[str, float]:
    """Largest stable scaling of the mix under two closed forms from neighbouring work.

    - ``li_dai_peng`` (arXiv:2504.07347): work-conserving policies with a per-iteration token
      budget ``b`` are stable iff ``Lambda (m_p + m_d) < b / t_b``.  We take ``t_b`` as the
      profile's time for an iteration that processes ``b`` prefill tokens and reads a full cache.
    - ``nie_si_zhou`` (arXiv:2605.04595): service rate ``mu = C / (b_bar E[g])`` with ``g`` the
      lifetime KV demand ``S_j``.  We take ``b_bar`` as the time of a full-memory iteration with
      the fluid stage mix; for the paper's linear model ``b_bar = d0 + d1 C`` and the formula
      equals the fluid boundary.
    """
    total = workload.total_rate_per_s
    if total == 0:
        return {"li_dai_peng": np.inf, "nie_si_zhou": np.inf}
    capacity = float(profile.kv_capacity_tokens)
    rates = workload.rates
    t_b = float(profile.iteration_time(capacity, token_budget, 0.0))
    work = float(rates @ (workload.prefill + workload.decode))
    ldp = token_budget / (t_b * work)
    fill = capacity / workload.kv_mass_rate
    b_bar = float(
        profile.iteration_time(
            capacity, fill * float(rates @ workload.prefill), fill * float(rates @ (workload.decode + 1))
        )
    )
    nsz = capacity / (b_bar * workload.kv_mass_rate)
    return {"li_dai_peng": ldp, "nie_si_zhou": nsz}


@dataclass(frozen=True, eq=False)
class BoundaryResult(ArrayValue):
    """The 2-class stability boundary traced over directions.

    Attributes
    ----------
    angles_rad : numpy.ndarray
        Direction angles in ``[0, pi/2]``; the direction is ``(cos, sin)``.
    fluid_rates : numpy.ndarray
        Shape (directions, 2): boundary points of the fluid stability region.
    binding : tuple of tuple of str
        Limiting resources per direction.
    peer_rates : dict
        Name -> shape (directions, 2) boundary points of each peer closed form.
    class_names : tuple of str
        Names of the two classes (the axes).

    """

    angles_rad: np.ndarray
    fluid_rates: np.ndarray
    binding: tuple[tuple[str, ...], ...]
    peer_rates: dict[str, np.ndarray]
    class_names: tuple[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "class_names": list(self.class_names),
            "angles_rad": self.angles_rad.tolist(),
            "fluid_rates": self.fluid_rates.tolist(),
            "binding": [list(b) for b in self.binding],
            "peer_rates": {k: v.tolist() for k, v in self.peer_rates.items()},
        }


def stability_boundary(
    workload: Workload,
    profile: GPUProfile,
    constraints: Constraints | None = None,
    *,
    directions: int = 91,
    method: Literal["closed-form", "lp"] = "lp",
    token_budget: float = 512.0,
) -> BoundaryResult:
    """Trace the stability boundary of a 2-class workload over ``directions`` rays.

    Each ray ``(cos phi, sin phi)`` is scaled to its largest stable point; with ``method="lp"``
    one parametrised cvxpy problem is re-solved for every ray.
    """
    require(workload.num_classes == 2, "workload", workload.num_classes, "a 2-class boundary needs exactly 2 classes")
    count = require_whole_number(directions, "directions", 2)
    constraints = constraints or Constraints()
    check_fits(workload, profile)
    angles = np.linspace(0.0, np.pi / 2, count)
    mixes = np.column_stack([np.cos(angles), np.sin(angles)])
    mixes[np.abs(mixes) < 1e-15] = 0.0
    solver = _ScaleLP(workload, profile, constraints) if method == "lp" else None
    fluid = np.empty_like(mixes)
    binding = []
    peers: dict[str, list[np.ndarray]] = {"li_dai_peng": [], "nie_si_zhou": []}
    for row, mix in enumerate(mixes):
        directed = workload.with_rates(mix)
        if solver is not None:
            theta, limits, _ = solver.solve(mix)
        else:
            result = _max_scale_closed_form(directed, profile, constraints)
            theta, limits = result.max_scale, result.binding
        fluid[row] = theta * mix
        binding.append(limits)
        for name, value in peer_max_scales(directed, profile, token_budget=token_budget).items():
            peers[name].append(value * mix)
    return BoundaryResult(
        angles_rad=angles,
        fluid_rates=fluid,
        binding=tuple(binding),
        peer_rates={k: np.array(v) for k, v in peers.items()},
        class_names=(workload.classes[0].name, workload.classes[1].name),
    )
