"""Simulation tasks: picklable, content-keyed units of work for sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt import __version__
from fluidopt.experiments.sweep import content_key
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
                "workload": self.workload.to_dict(),
                "profile": self.profile.to_dict(),
                "policy": self.policy.to_dict(),
                "seed": self.seed,
                "options": dict(self.options),
            }
        )


def run_simulation_task(task: SimulationTask) -> dict[str, Any]:
    """Run a task and return its JSON-ready summary (with the task's label)."""
    result = simulate(task.workload, task.profile, task.policy, rng=task.seed, **dict(task.options))
    out = result.to_dict()
    out.pop("wall_time_s", None)
    out["label"] = dict(task.label)
    return out


def spawn_seeds(root: int, count: int) -> list[int]:
    """Independent seeds for replicates, spawned from one root seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(root).spawn(count)]
