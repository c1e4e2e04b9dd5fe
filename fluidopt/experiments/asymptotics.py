"""Asymptotic validation of WAIT and Nested WAIT (arXiv:2504.11320; docs/theory.md section 5).

Scaling: ``lambda -> zeta lambda`` and ``(d0, d1) -> (d0 / zeta, d1 / zeta)`` with C and the
thresholds fixed; latency and TTFT are reported in service-normalised units (zeta times calendar
time) and plotted against ``zeta T``.  The theory predicts, for the throughput gap and the mean
latency:

==========================  ===========  ==============
experiment                  gap slope    latency slope
==========================  ===========  ==============
WAIT, boundary (n = n*)     -1/2         +1/2
WAIT, slack                 -1           0
Nested WAIT with buffer     -1           0
FCFS at C = M*              0 (no decay) (grows)
==========================  ===========  ==============

Slopes are fitted on log-log means over replicates; their confidence intervals come from a
bootstrap over the replicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt.experiments.sweep import Executor, SerialExecutor, run_sweep
from fluidopt.experiments.tasks import SimulationTask, run_simulation_task, spawn_seeds
from fluidopt.fluid.dynamics import FluidSystem, solve_ode
from fluidopt.profile import AffinePiece, GPUProfile, linear_profile
from fluidopt.sim import FCFSPolicy, NestedWaitPolicy, WaitPolicy, simulate
from fluidopt.sim.policies import Policy
from fluidopt.thresholds.nested import nested_wait_thresholds
from fluidopt.workload import Workload, preset_workload


def scaled_profile(profile: GPUProfile, zeta: float) -> GPUProfile:
    """The profile with every time coefficient divided by ``zeta`` (C unchanged)."""
    pieces = tuple(
        AffinePiece(p.base_s / zeta, p.per_kv_token_s / zeta, p.per_prefill_token_s / zeta, p.per_sequence_s / zeta)
        for p in profile.pieces
    )
    return GPUProfile(f"{profile.name}x{zeta:g}", profile.kv_capacity_tokens, pieces, profile.description)


@dataclass(frozen=True)
class ScalingExperiment:
    """One line of the table above."""

    name: str
    workload: Workload
    profile: GPUProfile
    policy: Policy
    theory_gap_slope: float | None
    theory_latency_slope: float | None
    description: str


def default_experiments(horizon_s: float, delta: float = 0.05, max_zeta: float = 1000.0) -> list[ScalingExperiment]:
    """The four experiments on the paper's toy instances."""
    toy = preset_workload("toy")
    boundary_profile = linear_profile("toy", 12, 0.4, 0.05)
    slack_profile = linear_profile("toy-slack", 16, 0.4, 0.05)
    pair = preset_workload("fcfs-counterexample")
    pair_profile = linear_profile("pair", 10_000, 0.55, 0.05)
    design = nested_wait_thresholds(
        pair, pair_profile, horizon_s=horizon_s, delta=delta, zeta=max_zeta, thresholds=(3, 2)
    )
    nested_profile = linear_profile("pair-buffered", int(np.ceil(design.memory_required_tokens)), 0.55, 0.05)
    return [
        ScalingExperiment(
            "wait-boundary",
            toy,
            boundary_profile,
            WaitPolicy((4,)),
            -0.5,
            0.5,
            "toy, n = n* = 4, C = M* = 12 (boundary case)",
        ),
        ScalingExperiment(
            "wait-slack",
            toy,
            slack_profile,
            WaitPolicy((5,)),
            -1.0,
            0.0,
            "toy, n = 5 > n* = 4, C = 16 >= M^pi = 15 (slack case)",
        ),
        ScalingExperiment(
            "nested-wait",
            pair,
            nested_profile,
            NestedWaitPolicy((1, 2), (3, 2)),
            -1.0,
            0.0,
            f"classes (1,1,1) and (1,2,1), segments 1..1 and 2..2, n = (3, 2), "
            f"C = M_req = {nested_profile.kv_capacity_tokens} (delta {delta})",
        ),
        ScalingExperiment(
            "fcfs-at-m-star", toy, boundary_profile, FCFSPolicy(), 0.0, None, "toy under greedy FCFS with C = M* = 12"
        ),
    ]


@dataclass(frozen=True)
class Slope:
    """A fitted log-log slope with a bootstrap confidence interval and the theory's value."""

    estimate: float
    low: float
    high: float
    theory: float | None

    @property
    def covers_theory(self) -> bool | None:
        """Whether the interval contains the theory's value (None without one)."""
        return None if self.theory is None else bool(self.low <= self.theory <= self.high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "slope": self.estimate,
            "ci": [self.low, self.high],
            "theory": self.theory,
            "covers_theory": self.covers_theory,
        }


@dataclass(frozen=True)
class ScalingResult:
    """Replicated metrics per zeta and the fitted slopes of one experiment."""

    experiment: ScalingExperiment
    zetas: np.ndarray
    horizon_s: float
    gaps: np.ndarray  # (zetas, replicates)
    latencies: np.ndarray  # service-normalised mean latency
    ttfts: np.ndarray
    overflow: np.ndarray  # bool: replicate overflowed memory
    gap_slope: Slope
    latency_slope: Slope

    @property
    def scaled_horizons(self) -> np.ndarray:
        """``zeta T`` for every zeta."""
        return self.zetas * self.horizon_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "experiment": self.experiment.name,
            "description": self.experiment.description,
            "zeta": self.zetas.tolist(),
            "zeta_T": self.scaled_horizons.tolist(),
            "mean_gap": np.nanmean(self.gaps, axis=1).tolist(),
            "mean_latency_service_units": np.nanmean(self.latencies, axis=1).tolist(),
            "mean_ttft_service_units": np.nanmean(self.ttfts, axis=1).tolist(),
            "overflow_fraction": self.overflow.mean(axis=1).tolist(),
            "gap_slope": self.gap_slope.to_dict(),
            "latency_slope": self.latency_slope.to_dict(),
        }


def fit_slope(
    x: np.ndarray, samples: np.ndarray, theory: float | None, *, rng: np.random.Generator, boots: int = 1000
) -> Slope:
    """Slope of ``log mean(samples)`` against ``log x`` with a percentile bootstrap over replicates."""

    def slope_of(values: np.ndarray) -> float:
        means = np.nanmean(values, axis=1)
        keep = means > 0
        if keep.sum() < 2:
            return float("nan")
        return float(np.polyfit(np.log(x[keep]), np.log(means[keep]), 1)[0])

    estimate = slope_of(samples)
    reps = samples.shape[1]
    draws = [slope_of(np.take_along_axis(samples, rng.integers(0, reps, samples.shape), axis=1)) for _ in range(boots)]
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return Slope(estimate, float(low), float(high), theory)


def run_scaling(
    experiment: ScalingExperiment,
    *,
    zetas: np.ndarray,
    horizon_s: float,
    replicates: int,
    seed: int = 0,
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
) -> ScalingResult:
    """Simulate ``experiment`` at every zeta with independent replicates and fit the slopes."""
    zetas = np.asarray(zetas, dtype=float)
    seeds = spawn_seeds(seed, replicates)
    tasks = []
    for zeta in zetas:
        workload = experiment.workload.scaled(zeta)
        profile = scaled_profile(experiment.profile, zeta)
        options = (("horizon_s", horizon_s), ("warmup_s", 0.0))
        tasks += [SimulationTask(workload, profile, experiment.policy, s, options) for s in seeds]
    values = run_sweep(
        run_simulation_task, tasks, executor=executor or SerialExecutor(), cache_dir=cache_dir, progress=progress
    ).values
    shape = (zetas.size, replicates)

    def grid(key: str, scale: bool = False) -> np.ndarray:
        out = np.array([np.nan if v[key] is None else v[key] for v in values], dtype=float).reshape(shape)
        return out * zetas[:, None] if scale else out

    gaps = grid("throughput_gap")
    latencies = grid("mean_latency_s", scale=True)
    ttfts = grid("mean_ttft_s", scale=True)
    overflow = np.array([v["overflow_iterations"] > 0 for v in values]).reshape(shape)
    rng = np.random.default_rng(seed)
    x = zetas * horizon_s
    return ScalingResult(
        experiment,
        zetas,
        horizon_s,
        gaps,
        latencies,
        ttfts,
        overflow,
        fit_slope(x, gaps, experiment.theory_gap_slope, rng=rng),
        fit_slope(x, latencies, experiment.theory_latency_slope, rng=rng),
    )


@dataclass(frozen=True)
class SamplePaths:
    """Scaled queue paths ``Q_zeta(t) / zeta`` against the fluid ODE, and their sup distance."""

    zetas: np.ndarray
    times_s: list[np.ndarray]
    scaled_queues: list[np.ndarray]
    fluid_times_s: np.ndarray
    fluid_queue: np.ndarray
    distances: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "zeta": self.zetas.tolist(),
            "sup_distance": self.distances.tolist(),
            "fluid_times_s": self.fluid_times_s.tolist(),
            "fluid_queue": self.fluid_queue.tolist(),
        }


def sample_paths(zetas: np.ndarray, *, horizon_s: float = 100.0, seed: int = 0) -> SamplePaths:
    """Overloaded toy WAIT (n = 4, rate 5): queue paths scaled by zeta approach the fluid ODE."""
    workload = preset_workload("toy").with_total_rate(5.0)
    profile = linear_profile("toy-roomy", 10**6, 0.4, 0.05)
    system = FluidSystem(workload, profile, "wait", (4.0,))
    fluid = solve_ode(system, horizon_s=horizon_s, samples=400)
    fluid_queue = fluid.queue.sum(axis=1)
    times, queues, distances = [], [], []
    for zeta in np.asarray(zetas, dtype=float):
        result = simulate(
            workload.scaled(zeta),
            scaled_profile(profile, zeta),
            WaitPolicy((4,)),
            horizon_s=horizon_s,
            rng=seed,
            warmup_s=0.0,
            record_series=True,
        )
        assert result.series is not None  # record_series=True
        t = result.series["end_s"]
        scaled = result.series["waiting"] / zeta
        reference = np.interp(t, fluid.times_s, fluid_queue)
        times.append(t)
        queues.append(scaled)
        distances.append(float(np.max(np.abs(scaled - reference))) if t.size else float("nan"))
    return SamplePaths(np.asarray(zetas, dtype=float), times, queues, fluid.times_s, fluid_queue, np.array(distances))


def run_asymptotics(
    *,
    quick: bool = False,
    seed: int = 0,
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """All scaling experiments; quick: fewer zetas, replicates and a shorter horizon."""
    if quick:
        zetas, horizon, replicates = np.array([1, 4, 16, 64, 256]), 100.0, 8
    else:
        zetas, horizon, replicates = np.array([1, 3, 10, 30, 100, 300, 1000]), 200.0, 24
    results = {}
    for experiment in default_experiments(horizon, max_zeta=float(zetas.max())):
        results[experiment.name] = run_scaling(
            experiment,
            zetas=zetas,
            horizon_s=horizon,
            replicates=replicates,
            seed=seed,
            executor=executor,
            cache_dir=cache_dir,
            progress=progress,
        )
    paths = sample_paths(np.array([1, 10, 100]) if quick else np.array([1, 10, 100, 1000]), seed=seed)
    return {
        "scaling": results,
        "sample_paths": paths,
        "settings": {
            "quick": quick,
            "seed": seed,
            "zetas": zetas.tolist(),
            "horizon_s": horizon,
            "replicates": replicates,
        },
    }
