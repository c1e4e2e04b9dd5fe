"""Simulation tasks: picklable, content-keyed units of work for sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt import __version__
from fluidopt.experiments.sweep import code_fingerprint, content_key
from fluidopt.profile import GPUProfile
from fluidopt.sim import simulate
from fluidopt.sim.policies import Policy
from fluidopt.workload import Workload


@dataclass(frozen=True)
class SimulationTask:
    """One simulation: workload, profile, policy, options and seed.

    ``options`` are keyword arguments of :func:`fluidopt.sim.simulate` (``requests``,
    ``horizon_s``, ``eviction``, ``drain``...) as a sorted tuple of pairs.
    """

    workload: Workload
    profile: GPUProfile
    policy: Policy
    seed: int
    options: tuple[tuple[str, Any], ...] = ()
    label: dict[str, Any] = field(default_factory=dict, compare=False)

    def key(self) -> str:
        """Content key of the configuration and seed."""
        return content_key(
            {
                "version": __version__,
                "code": code_fingerprint(),
                "workload": self.workload.to_dict(),
                "profile": self.profile.to_dict(),
                "policy": self.policy.to_dict(),
                "seed": self.seed,
                "options": dict(self.options),
            }
        )


DRIFT_P_VALUE = 1e-3
DRIFT_LATENCY_RATIO = 1.2
DRIFT_QUEUE_RATIO = 1.5


def run_simulation_task(task: SimulationTask) -> dict[str, Any]:
    """Run a task and return its JSON-ready summary (with the task's label and a drift test)."""
    options = dict(task.options)
    options.setdefault("record_requests", True)
    options.setdefault("record_series", True)
    result = simulate(task.workload, task.profile, task.policy, rng=task.seed, **options)
    out = result.to_dict()
    out.pop("wall_time_s", None)
    out.update(drift_test(result.requests, result.series))
    out["label"] = dict(task.label)
    return out


def drift_test(requests: dict[str, np.ndarray] | None, series: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Does latency or the queue grow over the run?  Last third against middle third.

    Latency: the one-sided Mann-Whitney U test (:func:`scipy.stats.mannwhitneyu`) of the
    end-to-end latencies of requests arriving in the last third of the arrival span against
    those arriving in the middle third, at level :data:`DRIFT_P_VALUE`, and only when the mean
    grew by more than :data:`DRIFT_LATENCY_RATIO` (consecutive latencies are correlated, so the
    p-value alone overstates the evidence).  Queue: the time-average number waiting in the last
    third of the run above :data:`DRIFT_QUEUE_RATIO` x the middle third's plus one request.
    A run drifts when both grow: an overloaded system shows both, while either alone misfires
    on stable runs (small queues are noisy; correlated latencies make tiny p-values cheap).
    """
    out: dict[str, Any] = {
        "drift": False,
        "drift_latency_ratio": None,
        "drift_p_value": None,
        "drift_queue_ratio": None,
    }
    latency_drift = False  # too few requests to test: no evidence of growth
    if requests is not None and requests["arrival_s"].size >= 30:
        from scipy.stats import mannwhitneyu

        arrival = requests["arrival_s"]
        latency = requests["completion_s"] - arrival
        span = float(arrival.max())
        middle = latency[(arrival >= span / 3) & (arrival < 2 * span / 3)]
        last = latency[arrival >= 2 * span / 3]
        if middle.size >= 10 and last.size >= 10:
            ratio = float(last.mean() / max(middle.mean(), 1e-12))
            p_value = float(mannwhitneyu(last, middle, alternative="greater").pvalue)
            out["drift_latency_ratio"], out["drift_p_value"] = ratio, p_value
            latency_drift = bool(p_value < DRIFT_P_VALUE and ratio > DRIFT_LATENCY_RATIO)
    if series is not None and series["start_s"].size >= 30:
        start, end, waiting = series["start_s"], series["end_s"], series["waiting"]
        horizon = float(end.max())
        if requests is not None and requests["arrival_s"].size:
            # Only the arrival span: a drained run empties its queue after the last arrival.
            horizon = min(horizon, float(requests["arrival_s"].max()))
        weight = end - start

        def average(low: float, high: float) -> float:
            mask = (start >= low) & (start < high)
            return float(np.sum(waiting[mask] * weight[mask]) / max(np.sum(weight[mask]), 1e-12))

        middle_q, last_q = average(horizon / 3, 2 * horizon / 3), average(2 * horizon / 3, horizon + 1)
        out["drift_queue_ratio"] = float((last_q + 1) / (middle_q + 1))
        out["drift_queue_middle"], out["drift_queue_last"] = middle_q, last_q
        out["drift"] = bool(latency_drift and last_q > DRIFT_QUEUE_RATIO * middle_q + 1)
    return out


def spawn_seeds(root: int, count: int) -> list[int]:
    """Independent seeds for replicates, spawned from one root seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(root).spawn(count)]
