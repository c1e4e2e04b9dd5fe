"""Fluid equilibrium: the stage-wise batch mix, iteration time and memory.

In equilibrium every stage of class j holds ``n_j`` requests per batch, each batch advances
every stage by one, and the arrivals during one iteration equal the completions
(arXiv:2504.11320, section 3): ``n_j = lambda_j dT``.  For the paper's linear model
``dT* = d0 / (1 - d1 a)`` and ``M* = d0 a / (1 - d1 a)``.  For a general profile (maximum of
affine pieces, docs/theory.md section 8) the equilibrium is the linear program

    minimise dT  s.t.  n_j >= lambda_j dT,  dT >= base_p + sum_j c_pj n_j  for every piece p,
                       sum_j S_j n_j <= C  (and the optional limits of :class:`Constraints`),

solved here with cvxpy and HiGHS; it is feasible iff the load is stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from fluidopt._values import ArrayValue
from fluidopt.errors import InputError, SolverError
from fluidopt.fluid.constraints import Constraints, check_fits, class_costs, resource_loads
from fluidopt.fluid.constraints import utilisation as _utilisation
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

TIGHT = 1e-9
LP_TOLERANCE = 1e-7
Method = Literal["auto", "closed-form", "lp", "fixed-point"]


@dataclass(frozen=True, eq=False)
class EquilibriumResult(HasStatus, ArrayValue):
    """Outcome of an equilibrium computation.

    Attributes
    ----------
    status : {"stable", "unstable"}
        Whether a fluid equilibrium exists.
    message : str
        Human-readable summary; the reason when unstable.
    method : str
        ``"closed-form"`` or ``"lp"``.
    iteration_time_s : float
        Equilibrium iteration time ``dT*`` (NaN when unstable).
    per_stage : numpy.ndarray
        ``n_j*``, requests of class j per stage per batch (NaN when unstable).
    memory_tokens : float
        Resident KV memory ``M* = sum_j n_j S_j`` (NaN when unstable).
    throughput_tokens_per_s, completed_per_s : float
        The benchmark ``sum lambda_j l'_j`` and ``sum lambda_j`` (what a stable policy can reach).
    binding : tuple of str
        Resources at their limit (``memory``, ``tbt``, ``batch_sequences``, ``prefill_budget``);
        when unstable, those that rule the equilibrium out.
    utilisation : dict
        Usage over limit for every active resource.
    active_piece : int
        Index of the iteration-time piece that sets ``dT*`` (-1 when unstable).
    duals : dict
        LP dual values per constraint as arrays (one entry per class for ``arrivals`` and per
        piece row; empty for the closed form), in the scaled units of the LP (time in units of
        the largest base time, memory in units of each limit).
    solver : str
        The LP solver that settled the problem ("" when no LP was solved).
    cross_check : float or None
        Relative difference of ``dT*`` from the closed form, when one exists.

    """

    status: str
    message: str
    method: str
    class_names: tuple[str, ...]
    iteration_time_s: float
    per_stage: np.ndarray
    memory_tokens: float
    throughput_tokens_per_s: float
    completed_per_s: float
    binding: tuple[str, ...]
    utilisation: dict[str, float]
    active_piece: int
    duals: dict[str, np.ndarray] = field(default_factory=dict, compare=False)
    solver: str = ""
    cross_check: float | None = None

    @property
    def stable(self) -> bool:
        """True when the load has a fluid equilibrium."""
        return self.status == "stable"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the CLI's ``--json`` output)."""
        out: dict[str, Any] = {
            "stable": self.stable,
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "method": self.method,
            "iteration_time_s": _finite_or_none(self.iteration_time_s),
            "memory_tokens": _finite_or_none(self.memory_tokens),
            "per_stage": {n: _finite_or_none(v) for n, v in zip(self.class_names, self.per_stage)},
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "completed_per_s": self.completed_per_s,
            "binding": list(self.binding),
            "utilisation": {k: _finite_or_none(v) for k, v in self.utilisation.items()},
            "active_piece": self.active_piece,
            "duals": {k: np.asarray(v).tolist() for k, v in self.duals.items()},
            "solver": self.solver,
            "cross_check": self.cross_check,
        }
        if not self.stable:
            out["reason"] = self.message
        return out


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def equilibrium(
    workload: Workload,
    profile: GPUProfile,
    constraints: Constraints | None = None,
    *,
    method: Method = "auto",
) -> EquilibriumResult:
    """Fluid equilibrium of ``workload`` on ``profile``.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        Traffic and GPU.
    constraints : Constraints, optional
        Extra per-iteration limits (iteration time, batch size, prefill budget).
    method : {"auto", "closed-form", "lp", "fixed-point"}
        ``auto`` uses the paper's closed form for a linear profile without extra limits, the
        one-dimensional fixed point ``dT = tau(batch(lambda dT))`` for a measured profile
        (docs/theory.md section 10), and the LP otherwise.  ``lp`` on a measured profile solves the LP
        on its convex affine surrogate (for the duals); ``fixed-point`` works for every profile.

    Returns
    -------
    EquilibriumResult
        ``status == "unstable"`` (not an exception) when no equilibrium exists.

    """
    constraints = constraints or Constraints()
    if method not in ("auto", "closed-form", "lp", "fixed-point"):
        raise InputError("method", method, "must be one of auto, closed-form, lp, fixed-point")
    if method == "auto":
        plain = constraints == Constraints()
        if not profile.timing.exact_affine:
            method = "fixed-point"
        else:
            method = "closed-form" if profile.is_paper_linear and plain else "lp"
    if method == "fixed-point":
        return equilibrium_fixed_point(workload, profile, constraints)
    if method == "closed-form":
        return equilibrium_closed_form(workload, profile, constraints)
    return equilibrium_lp(workload, profile, constraints)


def equilibrium_closed_form(
    workload: Workload, profile: GPUProfile, constraints: Constraints | None = None
) -> EquilibriumResult:
    """Closed-form equilibrium (docs/theory.md sections 2 and 8).

    With ``K_p = sum_j lambda_j c_pj`` for each piece p, the equilibrium exists iff every
    ``K_p < 1`` and the limits hold at ``dT* = max_p base_p / (1 - K_p)``; then
    ``n_j* = lambda_j dT*`` and ``M* = dT* a``.  For the paper's linear model this is
    ``dT* = d0 / (1 - d1 a)``.
    """
    constraints = constraints or Constraints()
    check_fits(workload, profile)
    rates = workload.rates
    loads_per_piece = class_costs(workload, profile) @ rates
    bases = profile.coefficient_matrix()[:, 0]
    benchmark = workload.decode_token_rate, workload.total_rate_per_s
    if np.any(loads_per_piece >= 1):
        return _unstable(
            workload,
            "closed-form",
            ("compute",),
            f"compute-bound: the iteration-time cost of arriving work is {loads_per_piece.max():.4g} "
            "seconds per second (>= 1), so iterations cannot keep up",
            benchmark,
        )
    times = bases / (1 - loads_per_piece)
    piece = int(np.argmax(times))
    iteration_time = float(times[piece])
    per_stage = rates * iteration_time
    utilisation = _utilisation(workload, profile, constraints, per_stage, iteration_time)
    over = tuple(k for k, v in utilisation.items() if v > 1 + TIGHT)
    if over:
        return _unstable(
            workload,
            "closed-form",
            over,
            "the equilibrium batch exceeds " + ", ".join(f"{k} ({utilisation[k]:.4g} x the limit)" for k in over),
            benchmark,
            utilisation,
        )
    binding = tuple(k for k, v in utilisation.items() if v >= 1 - TIGHT)
    return _stable(workload, profile, "closed-form", iteration_time, per_stage, benchmark, binding, utilisation, piece)


def equilibrium_fixed_point(
    workload: Workload, profile: GPUProfile, constraints: Constraints | None = None
) -> EquilibriumResult:
    """Equilibrium as the smallest root of ``dT = tau(batch(lambda dT))`` (docs/theory.md section 10).

    Exact for every increasing iteration-time model, measured ones included; the extra limits
    of :class:`Constraints` are checked at the root (each grows with ``dT``, so a limit
    exceeded at the smallest root rules every equilibrium out).
    """
    from fluidopt.fluid.fixed_point import solve_fixed_point

    constraints = constraints or Constraints()
    check_fits(workload, profile)
    benchmark = workload.decode_token_rate, workload.total_rate_per_s
    result = solve_fixed_point(workload, profile)
    if not result.stable:
        limits = ("memory",) if result.reason.startswith("memory") else ("compute",)
        return _unstable(workload, "fixed-point", limits, result.reason, benchmark)
    utilisation = _utilisation(workload, profile, constraints, result.per_stage, result.iteration_time_s)
    over = tuple(k for k, v in utilisation.items() if v > 1 + TIGHT)
    if over:
        return _unstable(
            workload,
            "fixed-point",
            over,
            "the equilibrium batch exceeds " + ", ".join(f"{k} ({utilisation[k]:.4g} x the limit)" for k in over),
            benchmark,
            utilisation,
        )
    binding: tuple[str, ...] = tuple(k for k, v in utilisation.items() if v >= 1 - TIGHT)
    return _stable(
        workload, profile, "fixed-point", result.iteration_time_s, result.per_stage, benchmark, binding, utilisation, -1
    )


def equilibrium_lp(
    workload: Workload,
    profile: GPUProfile,
    constraints: Constraints | None = None,
    *,
    solver: str = "HIGHS",
) -> EquilibriumResult:
    """Equilibrium as a linear program in ``(n, dT)`` solved with cvxpy (HiGHS by default).

    Binding resources are read from the duals (positive multiplier) and from zero slack.
    """
    import cvxpy as cp  # imported here: the closed form and the fixed point do not need it

    constraints = constraints or Constraints()
    check_fits(workload, profile)
    rates = workload.rates
    costs = class_costs(workload, profile)
    bases = profile.coefficient_matrix()[:, 0]
    method = "lp"
    if profile.timing.lp_refusal:
        raise InputError("method", "lp", profile.timing.lp_refusal)
    if not profile.timing.exact_affine:
        # A non-affine timing: solve the LP on its tangent plane at the exact
        # (fixed-point) equilibrium, so the optimum is exact and the duals are local.
        from fluidopt.fluid.fixed_point import solve_fixed_point, tangent_costs

        exact = solve_fixed_point(workload, profile)
        if exact.stable:
            base, tangent = tangent_costs(workload, profile, exact)
            bases, costs = np.array([base]), tangent[None, :]
            method = "lp-tangent"
    loads = costs @ rates
    if np.any(loads >= 1):
        # dT >= base_p + K_p dT with K_p >= 1 and a positive base somewhere: no equilibrium, and
        # an LP that far from feasibility only tests the solver's numerics.
        return _unstable(
            workload,
            method,
            ("compute",),
            f"compute-bound: the iteration-time cost of arriving work is {loads.max():.4g} seconds per second "
            "(>= 1), so iterations cannot keep up",
            (workload.decode_token_rate, workload.total_rate_per_s),
        )
    # Scaled LP (every coefficient O(1) whatever the units): time in units of the largest base
    # time t0, per-stage counts in units of the requests arriving per t0, and each resource in
    # units of its limit.  tau = dT / t0, nu = n / (Lambda t0).
    t0 = float(bases.max())
    total = max(float(rates.sum()), 1e-300)
    shares = rates / total
    n_unit = total * t0
    nu = cp.Variable(workload.num_classes, nonneg=True)
    tau = cp.Variable(nonneg=True)
    named: dict[str, Any] = {"arrivals": nu >= shares * tau}
    for p in range(bases.size):
        named[f"compute[{p}]"] = tau >= bases[p] / t0 + (costs[p] * total) @ nu
    for resource, (usage, limit) in resource_loads(workload, constraints, profile).items():
        named[resource] = (usage * (n_unit / limit)) @ nu <= 1
    if constraints.tbt_max_s is not None:
        named["tbt"] = tau <= constraints.tbt_max_s / t0
    problem = cp.Problem(cp.Minimize(tau), list(named.values()))
    from fluidopt.fluid._solver import solve

    used = solve(problem, solver)
    benchmark = workload.decode_token_rate, workload.total_rate_per_s
    if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        from fluidopt.fluid.stability import max_stable_scale

        scale = max_stable_scale(workload, profile, constraints, method="lp")
        if scale.max_scale > 0:
            reason = (
                f"no fluid equilibrium: the load is {1 / scale.max_scale:.4g} x the largest stable scaling "
                f"(limited by {', '.join(scale.binding)})"
            )
        else:
            reason = "no fluid equilibrium at any positive load (limited by " + ", ".join(scale.binding) + ")"
        return _unstable(workload, "lp", scale.binding, reason, benchmark)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise SolverError(f"equilibrium LP ({used}) ended with status {problem.status!r}")
    per_stage = np.maximum(np.asarray(nu.value, dtype=float), 0.0) * n_unit
    iteration_time = float(np.asarray(tau.value)) * t0
    duals = {
        name: np.atleast_1d(np.asarray(c.dual_value, dtype=float)).copy()
        for name, c in named.items()
        if c.dual_value is not None
    }
    for value in duals.values():
        value.setflags(write=False)
    dual_size = {name: float(np.sum(np.abs(v))) for name, v in duals.items()}
    utilisation = _utilisation(workload, profile, constraints, per_stage, iteration_time)
    over = tuple(k for k, v in utilisation.items() if v > 1 + LP_TOLERANCE)
    if over:
        # HiGHS accepts points within its feasibility tolerance; a limit exceeded by more than
        # LP_TOLERANCE means there is no equilibrium.
        return _unstable(
            workload, "lp", over, "the equilibrium batch exceeds " + ", ".join(over), benchmark, utilisation
        )
    binding = tuple(k for k, v in utilisation.items() if v >= 1 - LP_TOLERANCE or dual_size.get(k, 0.0) > 1e-9)
    piece_times = bases + costs @ per_stage
    cross_check = None
    if method == "lp" and constraints == Constraints():
        # A closed form exists: the LP must reproduce it (docs/theory.md section 8).
        closed = equilibrium_closed_form(workload, profile)
        if closed.stable:
            cross_check = abs(iteration_time - closed.iteration_time_s) / closed.iteration_time_s
            if cross_check > 1e-6:
                raise SolverError(
                    f"equilibrium LP ({used}) gives dT = {iteration_time:.9g} s but the closed form gives "
                    f"{closed.iteration_time_s:.9g} s (relative difference {cross_check:.2e})"
                )
    result = _stable(
        workload,
        profile,
        method,
        iteration_time,
        per_stage,
        benchmark,
        binding,
        utilisation,
        int(np.argmax(piece_times)),
        duals,
    )
    return replace(result, solver=used, cross_check=cross_check)


def _stable(
    workload: Workload,
    profile: GPUProfile,
    method: str,
    iteration_time: float,
    per_stage: np.ndarray,
    benchmark: tuple[float, float],
    binding: tuple[str, ...],
    utilisation: dict[str, float],
    piece: int,
    duals: dict[str, np.ndarray] | None = None,
) -> EquilibriumResult:
    memory = float(per_stage @ workload.kv_mass)
    return EquilibriumResult(
        status="stable",
        message="stable: " + _summary(iteration_time, memory, profile),
        method=method,
        class_names=workload.class_names,
        iteration_time_s=iteration_time,
        per_stage=per_stage,
        memory_tokens=memory,
        throughput_tokens_per_s=benchmark[0],
        completed_per_s=benchmark[1],
        binding=binding,
        utilisation=utilisation,
        active_piece=piece,
        duals=duals or {},
    )


def _summary(iteration_time: float, memory: float, profile: GPUProfile) -> str:
    return (
        f"iteration time {iteration_time:.6g} s, memory {memory:.6g} of {profile.kv_capacity_tokens} KV tokens "
        f"({100 * memory / profile.kv_capacity_tokens:.1f}%)"
    )


def _unstable(
    workload: Workload,
    method: str,
    binding: tuple[str, ...],
    reason: str,
    benchmark: tuple[float, float],
    utilisation: dict[str, float] | None = None,
) -> EquilibriumResult:
    return EquilibriumResult(
        status="unstable",
        message=f"unstable: {reason}",
        method=method,
        class_names=workload.class_names,
        iteration_time_s=float("nan"),
        per_stage=np.full(workload.num_classes, np.nan),
        memory_tokens=float("nan"),
        throughput_tokens_per_s=benchmark[0],
        completed_per_s=benchmark[1],
        binding=binding,
        utilisation=utilisation or {},
        active_piece=-1,
    )
