"""The fleet planner's program and its simulation: replicas and routing at least cost, and running a fleet.

:func:`solve_plan` is the mixed-integer program of :mod:`fluidopt.answers.fleet` (step 2) over
per-replica regions ``W_d lambda <= rho_d`` (cvxpy, HiGHS); with the counts fixed it is the linear
program that finds a stable class-share routing for a given fleet.  :func:`run_plan` simulates a
fleet with that routing (:func:`fluidopt.sim.fleet.evaluate_fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt.answers.fleet_model import Deployment, slo_derating
from fluidopt.experiments.runs import Targets
from fluidopt.workload import Workload


@dataclass(frozen=True)
class Simulation:
    """How fleets are simulated: arrivals per replicate (at least ``per_replica`` per replica), replicates, seed."""

    requests: int = 4000
    per_replica: int = 300
    replicates: int = 3
    seed: int = 0
    executor: Any = None  # runs the replicates (fluidopt.experiments.sweep); None: this process

    def requests_for(self, replicas: int) -> int:
        """Arrivals per replicate for a fleet of ``replicas``."""
        return max(self.requests, self.per_replica * replicas)


def derating(workload: Workload, deployment: Deployment, targets: Targets, simulation: Simulation) -> float:
    """:func:`~fluidopt.answers.fleet_model.slo_derating` of ``deployment`` under ``simulation``'s settings."""
    return slo_derating(
        workload,
        deployment,
        targets,
        requests=simulation.requests,
        replicates=simulation.replicates,
        seed=simulation.seed,
        executor=simulation.executor,
    )


def _replicas(deployments: list[Deployment], counts: dict[str, int]) -> list[Any]:
    from fluidopt.sim.fleet import Replica

    return [Replica(d.name, d.profile, d.policy()) for d in deployments for _ in range(int(counts.get(d.name, 0)))]


def run_plan(
    workload: Workload,
    deployments: list[Deployment],
    counts: dict[str, int],
    shares: dict[str, np.ndarray],
    targets: Targets,
    simulation: Simulation,
) -> Any:
    """Simulate a fleet with class-share routing; the :class:`~fluidopt.sim.fleet.FleetEvaluation`."""
    from fluidopt.sim.fleet import evaluate_fleet

    active = [d for d in deployments if counts.get(d.name, 0) > 0]
    replicas = _replicas(active, counts)
    return evaluate_fleet(
        workload,
        replicas,
        "class-shares",
        requests=simulation.requests_for(len(replicas)),
        replicates=simulation.replicates,
        seed=simulation.seed,
        p99_ttft_s=targets.p99_ttft_s,
        p99_tpot_s=targets.p99_tpot_s,
        shares={d.name: shares[d.name] for d in active},
        executor=simulation.executor,
    )


def solve_plan(
    rates: np.ndarray,
    deployments: list[Deployment],
    regions: dict[str, np.ndarray],
    deratings: dict[str, float],
) -> tuple[dict[str, int], dict[str, np.ndarray]] | None:
    """The least-cost integer plan (module docstring): replicas and class shares; None if infeasible."""
    import cvxpy as cp

    from fluidopt.fluid._solver import silence_highs_banner

    usable = [d for d in deployments if deratings[d.name] > 0]
    if not usable:
        return None
    counts = cp.Variable(len(usable), integer=True)
    routed = cp.Variable((len(usable), rates.size), nonneg=True)
    constraints = [cp.sum(routed, axis=0) == rates, counts >= 0]
    for i, d in enumerate(usable):
        constraints.append(regions[d.name] @ routed[i] <= deratings[d.name] * counts[i])
        if d.max_replicas is not None:
            constraints.append(counts[i] <= d.max_replicas)
    cost = np.array([d.cost_per_hour for d in usable])
    silence_highs_banner()
    problem = cp.Problem(cp.Minimize(cost @ counts), constraints)
    problem.solve(solver=cp.HIGHS)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or counts.value is None:
        return None
    values = {d.name: int(round(float(counts.value[i]))) for i, d in enumerate(usable)}
    share = np.asarray(routed.value) / np.where(rates > 0, rates, 1.0)
    return values, {d.name: np.clip(share[i], 0.0, None) for i, d in enumerate(usable)}


def balanced_shares(
    rates: np.ndarray, deployments: list[Deployment], regions: dict[str, np.ndarray], counts: dict[str, int]
) -> tuple[float, dict[str, np.ndarray]] | None:
    """Class shares of a given fleet that minimise its most loaded deployment's fluid load ``u``.

    A linear program: ``min u`` s.t. ``sum_d X_dj = lambda_j`` and ``W_d X_d <= u N_d``.  Returns
    ``(u, shares)``; the fleet is stable in the fluid model iff ``u < 1``.  None when no deployment
    has a replica.
    """
    import cvxpy as cp

    from fluidopt.fluid._solver import silence_highs_banner

    used = [d for d in deployments if counts.get(d.name, 0) > 0]
    if not used:
        return None
    routed = cp.Variable((len(used), rates.size), nonneg=True)
    load = cp.Variable()
    constraints = [cp.sum(routed, axis=0) == rates]
    for i, d in enumerate(used):
        constraints.append(regions[d.name] @ routed[i] <= load * counts[d.name])
    silence_highs_banner()
    problem = cp.Problem(cp.Minimize(load), constraints)
    problem.solve(solver=cp.HIGHS)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or routed.value is None:
        return None
    share = np.asarray(routed.value) / np.where(rates > 0, rates, 1.0)
    return float(np.asarray(load.value)), {d.name: np.clip(share[i], 0.0, None) for i, d in enumerate(used)}
