"""Evaluating policy configurations by simulation with replicates and common random numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt.experiments.runs import RunSettings, RunSummary, Targets
from fluidopt.experiments.sweep import Executor, SerialExecutor, run_sweep
from fluidopt.experiments.tasks import SimulationTask, run_simulation_task, spawn_seeds
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import Policy
from fluidopt.stats import confidence_interval
from fluidopt.workload import Workload

UNFINISHED_FRACTION = 0.02


@dataclass(frozen=True)
class Evaluation:
    """Replicated simulation of one configuration.

    ``stable`` requires every replicate to finish all but ``UNFINISHED_FRACTION`` of its
    requests (an overloaded queue leaves a growing backlog); ``meets`` adds the targets on the
    replicate mean of the p99 statistics.  ``runs`` are :class:`RunSummary` (mappings are
    converted); missing statistics follow :mod:`fluidopt.experiments.runs`'s one rule.
    """

    policy: Policy
    description: dict[str, Any]
    rate_per_s: float
    runs: tuple[RunSummary, ...] = field(repr=False)
    targets: Targets

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(RunSummary.of(r) for r in self.runs))

    def _values(self, key: str) -> np.ndarray:
        return np.array([r.metric(key) for r in self.runs], dtype=float)

    def mean(self, key: str) -> float:
        """Replicate mean of a result field."""
        return float(self._values(key).mean())

    def interval(self, key: str, level: float = 0.95) -> tuple[float, float]:
        """Student-t confidence interval of the replicate mean."""
        values = self._values(key)
        if values.size < 2 or not np.all(np.isfinite(values)):
            return (float(values.mean()), float(values.mean()))
        return confidence_interval(values, level)

    @property
    def stable(self) -> bool:
        """Every replicate ran as simulated (status ``ok``), kept up with arrivals and did not drift.

        A replicate that overflowed the KV capacity, livelocked, starved or ran off the latency
        histogram describes another GPU, no service or an unbounded queue, so it never counts as
        stable, whatever its latency.  In steady
        state the number in the system is stationary, so completions match arrivals up to noise;
        an overloaded queue falls behind by ``(lambda - mu) / lambda``.  Allowed:
        ``UNFINISHED_FRACTION`` of the arrivals plus three standard deviations of a Poisson count.
        Besides, the drift test pooled over the replicates (:attr:`drifts`) must find no growth.
        """
        if any(r.status != "ok" for r in self.runs):
            return False
        for r in self.runs:
            arrived = r.arrivals_counted
            if r.completed_in_window < (1 - UNFINISHED_FRACTION) * arrived - 3 * math.sqrt(arrived):
                return False
        return not self.drifts

    @property
    def drifts(self) -> bool:
        """The drift test pooled over replicates (:func:`~fluidopt.experiments.tasks.drift_test`).

        Latency and queue of the last third of each run against its middle third: the run
        drifts when the replicate median of the latency ratio exceeds ``DRIFT_LATENCY_RATIO`` and
        that of the queue ratio ``DRIFT_QUEUE_RATIO``.  Pooling keeps one random excursion of a
        short run near the boundary from condemning a stable configuration (with the mean, one
        replicate's excursion of 4.6 x condemned a stable WAIT-CP at 80 % of the limit in 4,000
        requests), while a growing queue shows in most replicates.
        """
        from fluidopt.experiments.tasks import DRIFT_LATENCY_RATIO, DRIFT_QUEUE_RATIO

        latency = [v for r in self.runs if (v := r.drift("drift_latency_ratio")) is not None]
        queue = [v for r in self.runs if (v := r.drift("drift_queue_ratio")) is not None]
        if not latency or not queue:
            return False
        return bool(np.median(latency) > DRIFT_LATENCY_RATIO and np.median(queue) > DRIFT_QUEUE_RATIO)

    @property
    def meets(self) -> bool:
        """Stable and within the targets."""
        if not self.stable:
            return False
        if self.targets.p99_latency_s is not None and self.mean("p99_latency_s") > self.targets.p99_latency_s:
            return False
        if self.targets.p99_ttft_s is not None and self.mean("p99_ttft_s") > self.targets.p99_ttft_s:
            return False
        if self.targets.p99_tpot_s is not None and self.mean("p99_tpot_s") > self.targets.p99_tpot_s:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with 95% confidence intervals."""
        return {
            "policy": self.policy.to_dict(),
            "description": self.description,
            "rate_per_s": self.rate_per_s,
            "replicates": len(self.runs),
            "stable": self.stable,
            "meets_targets": self.meets,
            "drifts": self.drifts,
            "mean_latency_s": self.mean("mean_latency_s"),
            "mean_latency_ci_s": list(self.interval("mean_latency_s")),
            "p99_latency_s": self.mean("p99_latency_s"),
            "p99_latency_ci_s": list(self.interval("p99_latency_s")),
            "mean_ttft_s": self.mean("mean_ttft_s"),
            "p99_ttft_s": self.mean("p99_ttft_s"),
            "p99_tpot_s": self.mean("p99_tpot_s"),
            "throughput_tokens_per_s": self.mean("throughput_tokens_per_s"),
            "evictions": self.mean("evictions"),
            "peak_memory_tokens": max(r.metric("peak_memory_tokens") for r in self.runs),
        }


def run_settings(
    targets: Targets,
    *,
    replicates: int,
    requests: int,
    seed: int,
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    conventions: str = "fluidopt",
) -> RunSettings:
    """The :class:`RunSettings` of an experiment (validated)."""
    return RunSettings(targets, replicates, requests, seed, executor, cache_dir, progress, conventions)


def evaluate_run(
    workload: Workload,
    profile: GPUProfile,
    configurations: list[tuple[Policy, dict[str, Any]]],
    run: RunSettings,
    *,
    options: dict[str, Any] | None = None,
) -> list[Evaluation]:
    """:func:`evaluate` under the settings ``run``."""
    return evaluate(
        workload,
        profile,
        configurations,
        targets=run.targets,
        replicates=run.replicates,
        requests=run.requests,
        seed=run.seed,
        executor=run.executor,
        cache_dir=run.cache_dir,
        progress=run.progress,
        options=options,
        conventions=run.conventions,
    )


def evaluate(
    workload: Workload,
    profile: GPUProfile,
    configurations: list[tuple[Policy, dict[str, Any]]],
    *,
    targets: Targets,
    replicates: int,
    requests: int,
    seed: int,
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
    conventions: str = "fluidopt",
) -> list[Evaluation]:
    """Simulate every configuration on the same replicate seeds (common random numbers).

    ``conventions`` is passed to :func:`~fluidopt.sim.simulate` (``vidur``: docs/theory.md,
    conventions) and recorded in every run's settings.
    """
    seeds = spawn_seeds(seed, replicates)
    extra = {"conventions": conventions} if conventions != "fluidopt" else {}
    sim_options = tuple(sorted({"requests": requests, **extra, **(options or {})}.items()))
    tasks = [
        SimulationTask(workload, profile, policy, s, sim_options, {"configuration": index})
        for index, (policy, _) in enumerate(configurations)
        for s in seeds
    ]
    sweep = run_sweep(
        run_simulation_task, tasks, executor=executor or SerialExecutor(), cache_dir=cache_dir, progress=progress
    )
    out = []
    for index, (policy, description) in enumerate(configurations):
        runs = sweep.values[index * replicates : (index + 1) * replicates]
        summaries = tuple(RunSummary.of(r) for r in runs)
        out.append(Evaluation(policy, description, workload.total_rate_per_s, summaries, targets))
    return out
