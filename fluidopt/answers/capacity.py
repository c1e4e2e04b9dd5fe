"""Capacity: the largest rate each policy sustains under a target, by bisection on the rate.

The search itself (configurations, bisection, the method-error guard against rates above the
fluid limit) is :mod:`fluidopt.experiments.sustained`; this module answers for every policy of a
mix on a profile, refusing at once a target no request can meet even alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fluidopt.answers.slo import slo_floor
from fluidopt.errors import require
from fluidopt.experiments.catalog import CAPACITY_POLICIES
from fluidopt.experiments.evaluate import Targets, run_settings
from fluidopt.experiments.sustained import (
    PolicyCapacity,
    configurations,
    max_sustained_rate,
)
from fluidopt.experiments.sweep import Executor
from fluidopt.fluid.stability import max_stable_scale
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

__all__ = ["CapacityResult", "PolicyCapacity", "capacity", "configurations", "max_sustained_rate"]


@dataclass(frozen=True)
class CapacityResult(HasStatus):
    """Capacity of every policy for one workload mix and profile."""

    workload: str
    profile: str
    fluid_max_rate_per_s: float
    targets: Targets
    policies: dict[str, PolicyCapacity]

    @property
    def status(self) -> str:  # type: ignore[override]
        """Status from :data:`fluidopt.status.STATUSES`."""
        return next((c.status for c in self.policies.values() if not c.success), "ok")

    @property
    def message(self) -> str:  # type: ignore[override]
        """Why the status is what it is."""
        return (
            "; ".join(f"{n}: {c.message}" for n, c in self.policies.items() if not c.success)
            or "every policy searched as asked"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping: policy -> max rate and the latency at it."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "workload": self.workload,
            "profile": self.profile,
            "fluid_max_rate_per_s": self.fluid_max_rate_per_s,
            "targets": {"p99_latency_s": self.targets.p99_latency_s, "p99_ttft_s": self.targets.p99_ttft_s},
            "policies": {name: c.to_dict() for name, c in self.policies.items()},
        }


def capacity(
    workload: Workload,
    profile: GPUProfile,
    *,
    policies: Sequence[str] = CAPACITY_POLICIES,
    targets: Targets | None = None,
    replicates: int = 3,
    requests: int = 20_000,
    seed: int = 0,
    steps: int = 8,
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    conventions: str = "fluidopt",
) -> CapacityResult:
    """Largest rate of the workload's mix each policy sustains (stable queue and targets met).

    The search runs on ``[0, 1.25 x fluid limit]``: no policy can be stable beyond the fluid
    limit, so the extra quarter only checks that the bisection sees failures.
    """
    targets = targets or Targets()
    require(workload.total_rate_per_s > 0, "rate", workload.total_rate_per_s, "the mix needs a positive rate")
    for name in policies:
        require(name in CAPACITY_POLICIES, "policy", name, f"choose from {', '.join(CAPACITY_POLICIES)}")
    fluid = max_stable_scale(workload, profile).max_rate_per_s

    floor = slo_floor(workload, profile, targets)
    if floor is not None:
        # No rate meets a target that one request served alone misses: answer without a search.
        message = f"no rate meets {targets.describe()}: {floor}"
        empty = {name: PolicyCapacity(name, 0.0, None, "no-configuration", message) for name in policies}
        return CapacityResult(workload.name, profile.name, fluid, targets, empty)
    run = run_settings(
        targets,
        replicates=replicates,
        requests=requests,
        seed=seed,
        executor=executor,
        cache_dir=cache_dir,
        progress=progress,
        conventions=conventions,
    )
    results = {
        name: max_sustained_rate(name, workload, profile, low=0.0, high=1.25 * fluid, steps=steps, run=run)
        for name in policies
    }
    return CapacityResult(workload.name, profile.name, fluid, targets, results)
