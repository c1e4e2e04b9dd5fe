"""Policy comparisons over arrival rates (the paper's latency-against-rate figures)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fluidopt.errors import InputError
from fluidopt.experiments.runs import RunSummary
from fluidopt.experiments.sweep import Executor, SerialExecutor, run_sweep
from fluidopt.experiments.tasks import SimulationTask, run_simulation_task, spawn_seeds
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import (
    BASELINE_POLICIES,
    FLUID_POLICIES,
    Policy,
    design_policy,
    make_policy,
    policy_spec,
)
from fluidopt.stats import t_half_width
from fluidopt.workload import Workload

PolicyFactory = Callable[[Workload, GPUProfile], Policy]


def _designed(name: str) -> PolicyFactory:
    def factory(workload: Workload, profile: GPUProfile) -> Policy:
        return design_policy(name, workload, profile)

    return factory


def _at_defaults(name: str) -> PolicyFactory:
    def factory(workload: Workload, profile: GPUProfile) -> Policy:
        return make_policy(name)

    return factory


# The WAIT family from the fluid model (the registry's designers; chunked designs have their own sweeps).
FACTORIES: dict[str, PolicyFactory] = {
    name: _designed(name)
    for name in FLUID_POLICIES
    if not policy_spec(name).fluid.chunked  # type: ignore[union-attr]
}
# Every registered baseline at its defaults (vllm, sarathi, fcfs, vllm-v1, sglang, ...).
FACTORIES.update({name: _at_defaults(name) for name in BASELINE_POLICIES})


def rate_sweep(
    workload: Workload,
    profile: GPUProfile,
    policies: Sequence[str],
    rates: Sequence[float],
    *,
    replicates: int,
    requests: int,
    seed: int = 0,
    executor: Executor | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Simulate each policy at each total rate (same seeds everywhere); one row per (policy, rate).

    Rows carry replicate means of latency, TTFT, completion rate and throughput, the restart
    fraction (evictions per arrival) and a 95% interval half-width of the mean latency.
    """
    seeds = spawn_seeds(seed, replicates)
    tasks, keys = [], []
    sim_options = tuple(sorted({"requests": requests, **(options or {})}.items()))
    for name in policies:
        if name not in FACTORIES:
            raise InputError("policy", name, f"choose from {', '.join(FACTORIES)}")
        for rate in rates:
            scaled = workload.with_total_rate(rate)
            try:
                policy = FACTORIES[name](scaled, profile)
            except InputError:
                continue  # e.g. no Nested WAIT thresholds at this rate
            keys.append((name, rate))  # rows are labelled with the factory name (e.g. wait-nohold)
            tasks += [
                SimulationTask(scaled, profile, policy, s, sim_options, {"policy": name, "rate": rate}) for s in seeds
            ]
    values = run_sweep(run_simulation_task, tasks, executor=executor or SerialExecutor(), progress=progress).values
    rows = []
    for index, (name, rate) in enumerate(keys):
        runs = values[index * replicates : (index + 1) * replicates]

        summaries = [RunSummary.of(r) for r in runs]

        def mean(key: str, summaries: list[RunSummary] = summaries) -> float:
            # One rule for missing values (fluidopt.experiments.runs): a replicate that completed
            # nothing measured has infinite latency, so the mean is infinite, not that of the others.
            return float(np.mean([s.metric(key) for s in summaries]))

        latencies = np.array([s.metric("mean_latency_s") for s in summaries])
        half = t_half_width(latencies)  # Student-t for the replicates actually run
        rows.append(
            {
                "policy": name,
                "rate_per_s": rate,
                "mean_latency_s": mean("mean_latency_s"),
                "mean_latency_ci95_s": float(half),
                "p99_latency_s": mean("p99_latency_s"),
                "mean_ttft_s": mean("mean_ttft_s"),
                "completed_per_s": mean("completed_per_s"),
                "throughput_tokens_per_s": mean("throughput_tokens_per_s"),
                "restart_fraction": float(np.mean([r["evictions"] / max(r["arrived_requests"], 1) for r in runs])),
                "unfinished_fraction": float(
                    np.mean([r["unfinished_requests"] / max(r["arrived_requests"], 1) for r in runs])
                ),
                "peak_memory_tokens": max(r["peak_memory_tokens"] for r in runs),
            }
        )
    return rows
