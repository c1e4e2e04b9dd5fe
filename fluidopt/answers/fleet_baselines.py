"""Baselines of the fleet planner on the same work: homogeneous fleets, and a plan in Melange's manner.

- **Homogeneous**: one deployment type alone; the fewest replicas meeting the SLO in the
  multi-replica simulation (round-robin routing), searched from the fluid estimate
  ``max_p (W lambda)_p / rho`` down while it meets and up while it misses.
- **Melange's manner** (Griggs et al., 2024): each replica of type ``d`` is a server of fixed
  throughput ``T_dj`` for request class ``j`` (its largest rate of that class alone that meets the
  SLO: the class's fluid limit times a derating found by simulation), and an integer program picks
  replicas and routing with ``sum_j X_dj / T_dj <= N_d``: capacity is additive over classes, where
  the fluid polytope knows that long prompts load compute and long decodes load memory.  Its plan
  is simulated as it stands.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fluidopt.answers.fleet_model import Deployment, fluid_replicas, replica_region
from fluidopt.answers.fleet_program import Simulation, derating, run_plan, solve_plan
from fluidopt.experiments.runs import Targets
from fluidopt.workload import Workload

SEARCH_LIMIT = 64  # the homogeneous search gives up past this many replicas


def homogeneous_fleet(
    workload: Workload,
    deployment: Deployment,
    targets: Targets,
    simulation: Simulation,
    region: np.ndarray,
    derating: float,
) -> dict[str, Any]:
    """The fewest replicas of ``deployment`` alone that meet the SLO in simulation (module docstring)."""
    name = f"all {deployment.name}"
    if derating <= 0:
        return {
            "name": name,
            "total_cost_per_hour": None,
            "replicas": None,
            "slo_met": False,
            "note": "SLO out of reach",
        }
    cap = deployment.max_replicas or SEARCH_LIMIT
    shares = {deployment.name: np.ones(workload.num_classes)}

    def meets(n: int) -> bool:
        return bool(run_plan(workload, [deployment], {deployment.name: n}, shares, targets, simulation).meets)

    n = min(max(1, math.ceil(fluid_replicas(region, workload.rates, derating))), cap)
    if meets(n):
        while n > 1 and meets(n - 1):
            n -= 1
        return {"name": name, "total_cost_per_hour": n * deployment.cost_per_hour, "replicas": n, "slo_met": True}
    while n < cap:
        n += 1
        if meets(n):
            return {"name": name, "total_cost_per_hour": n * deployment.cost_per_hour, "replicas": n, "slo_met": True}
    return {"name": name, "total_cost_per_hour": None, "replicas": None, "slo_met": False, "note": f"over {cap}"}


def melange_plan(
    workload: Workload, deployments: list[Deployment], targets: Targets, simulation: Simulation
) -> dict[str, Any]:
    """Throughput per class and type, an integer program over them, its plan simulated (module docstring)."""
    throughput = {}
    for d in deployments:
        per_class = np.zeros(workload.num_classes)
        for j in range(workload.num_classes):
            alone = workload.with_rates(np.where(np.arange(workload.num_classes) == j, workload.rates, 0.0))
            region = replica_region(alone, d.profile)
            rho = derating(alone, d, targets, simulation)
            per_class[j] = rho / float(region[:, j].max()) if rho > 0 else 0.0
        throughput[d.name] = per_class
    # Additive capacity: one "piece" whose coefficient per class is 1 / T_dj.
    regions = {
        d.name: np.where(throughput[d.name] > 0, 1.0 / np.maximum(throughput[d.name], 1e-300), 1e12)[None, :]
        for d in deployments
    }
    solved = solve_plan(workload.rates, deployments, regions, dict.fromkeys((d.name for d in deployments), 1.0))
    if solved is None:
        return {"name": "melange-style", "total_cost_per_hour": None, "replicas": None, "slo_met": False}
    counts, shares = solved
    evaluation = run_plan(workload, deployments, counts, shares, targets, simulation)
    return {
        "name": "melange-style",
        "total_cost_per_hour": sum(d.cost_per_hour * counts.get(d.name, 0) for d in deployments),
        "replicas": {k: v for k, v in counts.items() if v > 0},
        "slo_met": bool(evaluation.meets),
    }
