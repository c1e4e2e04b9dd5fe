"""A fleet plan per window of a trace (an autoscaling schedule), against static provisioning for the peak.

The trace's requests are binned into classes once (equal-mass decode-length bins over the whole
trace, :func:`fluidopt.workload.workload_from_trace`), so every window shares the classes and only
their rates change: a window's rate of class ``j`` is its requests of that class over the window's
length.  Each window gets its own validated plan (:func:`fluidopt.answers.fleet.plan_fleet`,
without baselines); static provisioning holds the busiest window's plan all day.  For the cost
against the arrival rate, each window also gets the cheapest homogeneous fleet by the fluid
estimate (``ceil(max_p (W_d lambda)_p / rho_d)`` replicas of type ``d``, with the window's own
deratings), labelled as an estimate: it is not simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.answers.fleet import FleetAnswer, plan_fleet
from fluidopt.answers.fleet_model import Deployment, fluid_replicas, replica_region
from fluidopt.answers.fleet_program import Simulation
from fluidopt.errors import require
from fluidopt.experiments.runs import Targets
from fluidopt.trace import Trace
from fluidopt.workload import workload_from_trace


@dataclass(frozen=True)
class Schedule:
    """Per window: start, rate, the plan's replicas per type and cost; the day's cost, static and scheduled."""

    window_s: float
    starts_s: np.ndarray
    rates_per_s: np.ndarray
    answers: list[FleetAnswer] = field(repr=False)
    homogeneous_cost_per_hour: np.ndarray  # cheapest single type by the fluid estimate, per window

    @property
    def costs_per_hour(self) -> np.ndarray:
        """Each window's planned cost per hour (NaN where no plan)."""
        return np.array([a.plan.cost_per_hour if a.plan else math.nan for a in self.answers])

    @property
    def scheduled_cost(self) -> float:
        """The schedule's cost over the trace: each window's plan for its length."""
        return float(np.nansum(self.costs_per_hour) * self.window_s / 3600)

    @property
    def static_cost(self) -> float:
        """Holding the busiest window's plan for every window."""
        busiest = int(np.argmax(self.rates_per_s))
        return float(self.costs_per_hour[busiest] * self.starts_s.size * self.window_s / 3600)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready schedule."""
        rows = []
        for start, rate, answer, homogeneous in zip(
            self.starts_s, self.rates_per_s, self.answers, self.homogeneous_cost_per_hour
        ):
            plan = answer.plan
            rows.append(
                {
                    "start_s": float(start),
                    "rate_per_s": float(rate),
                    "status": answer.status,
                    "replicas": dict(plan.counts) if plan else {},
                    "cost_per_hour": plan.cost_per_hour if plan else None,
                    "slo_met": bool(plan and plan.slo_met),
                    "homogeneous_estimate_cost_per_hour": float(homogeneous),
                }
            )
        return {
            "window_s": self.window_s,
            "windows": rows,
            "scheduled_cost": self.scheduled_cost,
            "static_peak_cost": self.static_cost,
        }


def plan_schedule(
    trace: Trace,
    deployments: list[Deployment],
    targets: Targets,
    simulation: Simulation,
    *,
    window_s: float = 3600.0,
    bins: int = 4,
) -> Schedule:
    """One validated plan per window of ``trace`` (module docstring)."""
    require(trace.arrival_times_s is not None, "--trace", trace.name, "has no arrival times (arrived_at)")
    require(math.isfinite(window_s) and window_s > 0, "--window-s", window_s, "must be > 0 seconds")
    times = np.asarray(trace.arrival_times_s, dtype=float)
    base = workload_from_trace(trace, bins=bins)
    classes = _classes(trace, base, bins)
    windows = max(1, math.ceil((times[-1] + 1e-9) / window_s))
    starts = np.arange(windows) * window_s
    answers, rates, homogeneous = [], [], []
    for k in range(windows):
        inside = (times >= starts[k]) & (times < starts[k] + window_s)
        counts = np.bincount(classes[inside], minlength=base.num_classes).astype(float)
        workload = base.with_rates(counts / window_s)
        rates.append(float(counts.sum() / window_s))
        if counts.sum() == 0:
            answers.append(FleetAnswer(base.name, 0.0, targets, None, deployments, {}, [], 0.0, "idle", "no arrivals"))
            homogeneous.append(0.0)
            continue
        answer = plan_fleet(workload, deployments, targets, simulation, baselines=False)
        answers.append(answer)
        homogeneous.append(_cheapest_homogeneous(workload, deployments, answer.deratings))
    return Schedule(window_s, starts, np.array(rates), answers, np.array(homogeneous))


def _classes(trace: Trace, workload: Any, bins: int) -> np.ndarray:
    """Each request's class under the trace's equal-mass decode bins (the classes of ``workload``)."""
    from fluidopt.workload import decode_bin_edges

    edges = decode_bin_edges(trace.decode_tokens, bins)
    raw = np.clip(np.searchsorted(edges, trace.decode_tokens, side="left") - 1, 0, edges.size - 2)
    _, classes = np.unique(raw, return_inverse=True)
    require(int(classes.max()) + 1 == workload.num_classes, "--bins", bins, "gave classes the workload does not have")
    return classes.astype(np.int64)


def _cheapest_homogeneous(workload: Any, deployments: list[Deployment], deratings: dict[str, float]) -> float:
    costs = []
    for d in deployments:
        rho = deratings.get(d.name, 0.0)
        if rho <= 0:
            continue
        replicas = math.ceil(fluid_replicas(replica_region(workload, d.profile), workload.rates, rho))
        if d.max_replicas is None or replicas <= d.max_replicas:
            costs.append(replicas * d.cost_per_hour)
    return min(costs) if costs else math.nan


def plot_schedule(schedule: Schedule, deployments: list[Deployment]) -> Any:
    """Replicas by type per window (stacked) and cost per hour against the arrival rate."""
    import matplotlib.pyplot as plt

    from fluidopt.plotting import style

    with style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0), layout="constrained")
        hours = schedule.starts_s / 3600
        bottom = np.zeros(hours.size)
        width = 0.8 * schedule.window_s / 3600
        for d in deployments:
            counts = np.array([(a.plan.counts.get(d.name, 0) if a.plan else 0) for a in schedule.answers], float)
            left.bar(hours, counts, width=width, bottom=bottom, align="edge", label=d.name)
            bottom += counts
        missed = [h for h, a in zip(hours, schedule.answers) if a.plan is not None and not a.plan.slo_met]
        if missed:
            left.plot(np.array(missed) + width / 2, np.zeros(len(missed)), "rx", label="plan misses the SLO")
        left.set_xlabel("time since the trace's start (h)")
        left.set_ylabel("replicas")
        left.yaxis.get_major_locator().set_params(integer=True)
        left.set_ylim(0, max(float(bottom.max()), 1.0) * 1.3)
        left.legend(loc="upper right", fontsize=8, ncol=3)
        order = np.argsort(schedule.rates_per_s)
        right.plot(schedule.rates_per_s[order], schedule.costs_per_hour[order], "o-", label="mixed plan (simulated)")
        right.plot(
            schedule.rates_per_s[order],
            schedule.homogeneous_cost_per_hour[order],
            "s--",
            label="cheapest single type (fluid estimate)",
        )
        right.set_xlabel("arrival rate (requests/s)")
        right.set_ylabel("fleet cost ($/h)")
        right.set_ylim(0, max(float(np.nanmax(schedule.costs_per_hour, initial=0.0)), 1.0) * 1.3)
        right.legend(loc="upper left", fontsize=8)
    return fig


def write_schedule(schedule: Schedule, deployments: list[Deployment], folder: str | Path) -> list[Path]:
    """``schedule.json`` and ``schedule.png`` into ``folder`` (each written atomically)."""
    import json

    import matplotlib.pyplot as plt

    from fluidopt.tomlio import write_text_atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "schedule.json", out / "schedule.png"]
    write_text_atomic(paths[0], json.dumps(schedule.to_dict(), indent=2) + "\n")
    figure = plot_schedule(schedule, deployments)
    temporary = paths[1].with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=120)
    temporary.replace(paths[1])
    plt.close(figure)
    return paths
