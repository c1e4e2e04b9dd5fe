"""Fleet planning: the cheapest mix of GPU types and replicas that holds a traffic under an SLO.

1. Each candidate deployment's per-replica SLO region: its fluid stability polytope in the class
   rates, ``W_d lambda <= 1``, derated by the simulated factor ``rho_d``
   (:mod:`fluidopt.answers.fleet_model`).
2. A mixed-integer program (cvxpy, HiGHS): replicas ``N_d`` (integers, at most ``max_replicas``)
   and class rates ``X_dj`` routed to each deployment, minimising ``sum_d cost_d N_d`` subject to
   ``sum_d X_dj = lambda_j`` and ``W_d X_d <= rho_d N_d`` (the deployment's ``N_d`` replicas share
   its traffic evenly).  The routing is class-aware: class ``j`` goes to ``d`` with share
   ``X_dj / lambda_j``.
3. The plan is run in the multi-replica simulation (:mod:`fluidopt.sim.fleet`); while it misses
   the SLO (the upper end of a 95 % interval over replicates), a replica is added to the
   deployment whose requests bind (the worst p99 against its target); then, while the plan minus
   one replica of its most expensive deployment still meets the SLO, that replica is removed.
4. Baselines on the same work: every homogeneous fleet (the fewest replicas of one type that meet
   the SLO in simulation, searched from its fluid estimate) and a plan in Melange's manner (each
   replica a server of fixed throughput per request class, measured alone under the SLO, and an
   integer program over those throughputs), validated once as it stands.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt.answers.fleet_baselines import homogeneous_fleet, melange_plan
from fluidopt.answers.fleet_model import LOWEST_DERATING, Deployment, replica_region
from fluidopt.answers.fleet_program import Simulation, balanced_shares, derating, run_plan, solve_plan
from fluidopt.errors import require
from fluidopt.experiments.runs import Targets
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

MAX_REPAIRS = 12  # replicas the validation may add before it reports the plan as missing


@dataclass(frozen=True)
class FleetPlan(HasStatus):
    """A fleet and how it fared: replicas and class shares per deployment, cost, simulated p99s."""

    counts: dict[str, int]
    shares: dict[str, np.ndarray] = field(repr=False)
    cost_per_hour: float
    slo_met: bool
    p99_ttft_s: tuple[float, float, float]  # mean, 95 % low, 95 % high
    p99_tpot_s: tuple[float, float, float]
    utilisation: dict[str, float]
    status: str = "ok"
    message: str = "planned"


def _binding(evaluation: Any, counts: dict[str, int], targets: Targets) -> str:
    """The deployment whose requests are furthest past the targets (p99 over target, worst metric)."""
    worst, name = -math.inf, next(iter(counts))
    for run_stats in (run.per_replica() for run in evaluation.runs[:1]):
        for entry in run_stats:
            ratio = 0.0
            for key, target in (("p99_ttft_s", targets.p99_ttft_s), ("p99_tpot_s", targets.p99_tpot_s)):
                value = entry[key]
                if target is not None:
                    ratio = max(ratio, value / target if math.isfinite(value) else math.inf)
            ratio = max(ratio, 1e6 * entry["unfinished_fraction"])
            if ratio > worst:
                worst, name = ratio, str(entry["deployment"])
    return name


def _summary(
    counts: dict[str, int],
    shares: dict[str, np.ndarray],
    deployments: list[Deployment],
    evaluation: Any,
    regions: dict[str, np.ndarray],
    rates: np.ndarray,
) -> FleetPlan:
    cost = sum(d.cost_per_hour * counts.get(d.name, 0) for d in deployments)
    utilisation = {
        d.name: float(np.max(regions[d.name] @ (shares[d.name] * rates))) / counts[d.name]
        for d in deployments
        if counts.get(d.name, 0) > 0
    }

    def triple(key: str) -> tuple[float, float, float]:
        low, high = evaluation.interval(key)
        return evaluation.mean(key), low, high

    return FleetPlan(
        {k: v for k, v in counts.items() if v > 0},
        shares,
        cost,
        evaluation.meets,
        triple("p99_ttft_s"),
        triple("p99_tpot_s"),
        utilisation,
    )


def validate_plan(
    workload: Workload,
    deployments: list[Deployment],
    counts: dict[str, int],
    shares: dict[str, np.ndarray],
    targets: Targets,
    simulation: Simulation,
    regions: dict[str, np.ndarray],
) -> FleetPlan:
    """Step 3 of the module docstring: add replicas where the SLO binds, then trim the most expensive type."""
    counts = dict(counts)
    evaluation = run_plan(workload, deployments, counts, shares, targets, simulation)
    caps = {d.name: d.max_replicas for d in deployments}
    for _ in range(MAX_REPAIRS):
        if evaluation.meets:
            break
        name = _binding(evaluation, {k: v for k, v in counts.items() if v > 0}, targets)
        cap = caps.get(name)
        if cap is not None and counts[name] >= cap:
            break
        counts[name] += 1
        evaluation = run_plan(workload, deployments, counts, shares, targets, simulation)
    if evaluation.meets:
        priciest = max((d for d in deployments if counts.get(d.name, 0) > 0), key=lambda d: d.cost_per_hour)
        while counts[priciest.name] > 1:
            fewer = {**counts, priciest.name: counts[priciest.name] - 1}
            trial = run_plan(workload, deployments, fewer, shares, targets, simulation)
            if not trial.meets:
                break
            counts, evaluation = fewer, trial
    return _summary(counts, shares, deployments, evaluation, regions, workload.rates)


def validation_json(plan: FleetPlan | None) -> dict[str, Any]:
    """The simulated check of a plan: met or not, replicate-mean p99s and their 95 % intervals (None: no plan)."""
    if plan is None:
        return {"slo_met": False, "p99_ttft_s": None, "p99_tpot_s": None}
    return {
        "slo_met": plan.slo_met,
        "p99_ttft_s": plan.p99_ttft_s[0],
        "p99_tpot_s": plan.p99_tpot_s[0],
        "p99_ttft_interval_s": list(plan.p99_ttft_s[1:]),
        "p99_tpot_interval_s": list(plan.p99_tpot_s[1:]),
    }


@dataclass(frozen=True)
class FleetAnswer(HasStatus):
    """The planner's answer: the plan, the baselines on the same work, and how long it took."""

    workload: str
    rate_per_s: float
    targets: Targets
    plan: FleetPlan | None
    deployments: list[Deployment] = field(repr=False)
    deratings: dict[str, float]
    baselines: list[dict[str, Any]]
    wall_time_s: float
    status: str = "ok"
    message: str = "planned"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready answer (the issue's schema plus the deratings and the engine command lines)."""
        plan = self.plan
        by_name = {d.name: d for d in self.deployments}
        entries = []
        if plan is not None:
            for name, replicas in plan.counts.items():
                d = by_name[name]
                entries.append(
                    {
                        "name": name,
                        "replicas": replicas,
                        "cost_per_hour": d.cost_per_hour * replicas,
                        "class_shares": [float(s) for s in plan.shares[name]],
                        "utilisation": plan.utilisation.get(name),
                        "command": d.command(),
                    }
                )
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "workload": self.workload,
            "rate_per_s": self.rate_per_s,
            "targets": {"p99_ttft_s": self.targets.p99_ttft_s, "p99_tpot_s": self.targets.p99_tpot_s},
            "plan": entries,
            "total_cost_per_hour": plan.cost_per_hour if plan else None,
            "validation": validation_json(plan),
            "deratings": self.deratings,
            "baselines": self.baselines,
            "wall_time_s": self.wall_time_s,
        }


def plan_fleet(
    workload: Workload,
    deployments: list[Deployment],
    targets: Targets,
    simulation: Simulation | None = None,
    *,
    baselines: bool = True,
) -> FleetAnswer:
    """Plan, validate and compare (module docstring).  Unreachable SLOs and rates are results, not errors."""
    from fluidopt.answers.slo import slo_floor

    started = time.perf_counter()
    simulation = simulation or Simulation()
    require(workload.total_rate_per_s > 0, "rate", workload.total_rate_per_s, "must be > 0 requests/s")
    regions = {d.name: replica_region(workload, d.profile) for d in deployments}
    deratings = {}
    for d in deployments:
        floor = slo_floor(workload, d.profile, targets)
        deratings[d.name] = 0.0 if floor else derating(workload, d, targets, simulation)

    def answer(plan: FleetPlan | None, rows: list[dict[str, Any]], status: str, message: str) -> FleetAnswer:
        return FleetAnswer(
            workload.name,
            workload.total_rate_per_s,
            targets,
            plan,
            deployments,
            deratings,
            rows,
            time.perf_counter() - started,
            status,
            message,
        )

    if all(v == 0 for v in deratings.values()):
        return answer(None, [], "slo-unreachable", "no deployment meets the SLO even with one replica at a light load")
    solved = solve_plan(workload.rates, deployments, regions, deratings)
    if solved is None:
        return answer(None, [], "infeasible", "no fleet within the deployments' max_replicas holds this rate")
    plan = validate_plan(workload, deployments, solved[0], solved[1], targets, simulation, regions)
    rows: list[dict[str, Any]] = []
    if baselines:
        for d in deployments:
            rows.append(homogeneous_fleet(workload, d, targets, simulation, regions[d.name], deratings[d.name]))
        rows.append(melange_plan(workload, deployments, targets, simulation))
    status = "ok" if plan.slo_met else "slo-missed"
    message = (
        f"{sum(plan.counts.values())} replicas at {plan.cost_per_hour:.2f}/h meet the SLO in simulation"
        if plan.slo_met
        else "the plan misses the SLO in simulation even after adding replicas where it binds"
    )
    return answer(plan, rows, status, message)


def evaluate_counts(
    workload: Workload,
    deployments: list[Deployment],
    counts: dict[str, int],
    targets: Targets,
    simulation: Simulation | None = None,
) -> tuple[FleetPlan | None, str]:
    """Run a given fleet (``--evaluate``): class shares from the program with these counts fixed, then simulate.

    Returns the plan (None when the counts cannot hold the rate even in the fluid model) and a line.
    """
    simulation = simulation or Simulation()
    names = {d.name for d in deployments}
    for name, count in counts.items():
        require(name in names, "--evaluate", name, f"is not a deployment of the fleet ({', '.join(sorted(names))})")
        require(count >= 0, f"--evaluate {name}", count, "must be a whole number >= 0")
    require(sum(counts.values()) > 0, "--evaluate", counts, "needs at least one replica")
    regions = {d.name: replica_region(workload, d.profile) for d in deployments}
    chosen = [d for d in deployments if counts.get(d.name, 0) > 0]
    derated = {}
    for d in chosen:  # balance the SLO-derated loads, as the planner does
        rho = derating(workload, d, targets, simulation)
        derated[d.name] = regions[d.name] / max(rho, LOWEST_DERATING)
    balanced = balanced_shares(workload.rates, chosen, derated, counts)
    fluid = balanced_shares(workload.rates, chosen, regions, counts)
    if balanced is None or fluid is None or fluid[0] >= 1.0:
        load = "" if fluid is None else f" (the least loaded routing puts a deployment at {fluid[0]:.2f})"
        return None, f"these replicas cannot hold the rate even in the fluid model{load}"
    evaluation = run_plan(workload, chosen, counts, balanced[1], targets, simulation)
    plan = _summary(counts, balanced[1], chosen, evaluation, regions, workload.rates)
    verdict = "meets" if plan.slo_met else "misses"
    return plan, f"the fleet {verdict} the SLO in simulation ({plan.cost_per_hour:.2f}/h)"
