"""The largest rate a policy sustains under a target: bisection on the rate over its configurations.

A rate is sustained when some configuration of the policy (its knobs, tuned fairly: batch-size
cap for vLLM, token budget for Sarathi, each baseline's grid in the policy registry, thresholds
from the fluid model for WAIT and Nested WAIT, and for WAIT whether residents of a closed class
hold or keep decoding) keeps a stable queue in every replicate and meets the targets.  This is
the machinery behind :mod:`fluidopt.answers.capacity` and the simulated points of the paper's
stability-region figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fluidopt.errors import InputError
from fluidopt.experiments.catalog import CAPACITY_POLICIES
from fluidopt.experiments.evaluate import Evaluation, evaluate_run
from fluidopt.experiments.runs import RunSettings
from fluidopt.fluid.stability import max_stable_scale
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import POLICY_NAMES, NestedWaitPolicy, Policy, WaitPolicy, fluid_design, policy_spec
from fluidopt.status import HasStatus
from fluidopt.thresholds.nested import nested_wait_thresholds
from fluidopt.thresholds.wait import wait_thresholds
from fluidopt.workload import Workload

CAPACITY_CHUNKED_SLACKS = (0.15, 0.5)
CAPACITY_CHUNK_SIZES = (256, 512)
WAIT_SLACKS = (0.2, 1.0)
FLUID_TOLERANCE = 1e-6


def configurations(
    name: str, workload: Workload, profile: GPUProfile, conventions: str = "fluidopt"
) -> list[tuple[Policy, dict[str, Any]]]:
    """The configurations tried for policy ``name`` at the workload's rate."""
    design = fluid_design(name) if name in POLICY_NAMES else None
    if design is not None and design.chunked:
        from fluidopt.experiments.tune import chunked_candidates

        return chunked_candidates(
            workload,
            profile,
            nested=design.nested,
            conventions=conventions,
            slacks=CAPACITY_CHUNKED_SLACKS,
            chunk_sizes=CAPACITY_CHUNK_SIZES,
        )
    if design is not None and not design.nested:
        out: list[tuple[Policy, dict[str, Any]]] = []
        seen: set[Any] = set()
        for slack in WAIT_SLACKS:
            wait_design = wait_thresholds(workload, profile, slack=slack)
            if wait_design.thresholds not in seen:
                seen.add(wait_design.thresholds)
                for hold in (True, False):
                    out.append(
                        (
                            WaitPolicy(wait_design.thresholds, hold=hold),
                            {"slack": slack, "thresholds": list(wait_design.thresholds), "hold": hold},
                        )
                    )
        return out
    if design is not None:
        try:
            nested = nested_wait_thresholds(workload, profile)
        except InputError:
            return []
        return [
            (
                NestedWaitPolicy(nested.segments.boundaries, nested.thresholds, hold=hold),
                {"boundaries": list(nested.segments.boundaries), "thresholds": list(nested.thresholds), "hold": hold},
            )
            for hold in (True, False)
        ]
    if name not in CAPACITY_POLICIES:
        raise InputError("policy", name, f"unknown policy; choose from {', '.join(CAPACITY_POLICIES)}")
    spec = policy_spec(name)
    if spec.grid is not None:
        return spec.grid()
    return [(spec.build(), {})]


@dataclass(frozen=True)
class PolicyCapacity(HasStatus):
    """Largest sustained rate of one policy and the best configuration there.

    ``status`` is ``ok``, or ``method-error`` when the search found a rate above the fluid
    limit: no policy can sustain that, so it is an error of the finite-run test, and the rate
    (kept in ``flagged_rate_per_s``) is not reported as capacity (``max_rate_per_s`` is NaN).
    """

    policy: str
    max_rate_per_s: float
    evaluation: Evaluation | None
    status: str = "ok"
    message: str = ""
    flagged_rate_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        out: dict[str, Any] = {
            "max_rate_per_s": self.max_rate_per_s if math.isfinite(self.max_rate_per_s) else None,
            "status": self.status,
            "success": self.success,
            "message": self.message,
        }
        if self.flagged_rate_per_s is not None:
            out["flagged_rate_per_s"] = self.flagged_rate_per_s
        if self.evaluation is not None:
            out.update(
                mean_latency_s=self.evaluation.mean("mean_latency_s"),
                p99_latency_s=self.evaluation.mean("p99_latency_s"),
                configuration=self.evaluation.description,
            )
        return out


def max_sustained_rate(
    name: str,
    workload: Workload,
    profile: GPUProfile,
    *,
    low: float,
    high: float,
    steps: int,
    run: RunSettings,
    configs: Callable[[str, Workload, GPUProfile], list[tuple[Policy, dict[str, Any]]]] = configurations,
) -> PolicyCapacity:
    """Bisection on the total rate between ``low`` and ``high``.

    A rate counts only if some configuration is stable (completions track arrivals and the
    drift test finds no growth, :attr:`Evaluation.stable`) and meets the targets.  A result above
    the fluid limit of the workload's mix is returned as a ``method-error``, never as capacity.
    """
    fluid = max_stable_scale(workload.with_total_rate(1.0), profile).max_rate_per_s
    tried_any = False
    best: Evaluation | None = None
    best_rate = 0.0
    for _ in range(steps):
        rate = (low + high) / 2
        scaled = workload.with_total_rate(rate)
        candidates = (
            configs(name, scaled, profile, run.conventions)
            if configs is configurations
            else configs(name, scaled, profile)
        )
        tried_any = tried_any or bool(candidates)
        evaluations = evaluate_run(scaled, profile, candidates, run) if candidates else []
        passing = [e for e in evaluations if e.meets]
        if passing:
            best = min(passing, key=lambda e: e.mean("mean_latency_s"))
            best_rate, low = rate, rate
        else:
            high = rate
    design = fluid_design(name) if name in POLICY_NAMES else None
    if not tried_any and design is not None and design.chunked and design.nested:
        return PolicyCapacity(
            name, math.nan, None, "not-applicable", "needs at least two output lengths (one segment is wait-cp)"
        )
    if best_rate > fluid * (1 + FLUID_TOLERANCE):
        return PolicyCapacity(
            name,
            math.nan,
            best,
            "method-error",
            f"the finite-run test passed {best_rate:.4g} requests/s, above the fluid limit {fluid:.4g}: "
            "an error of the method (run longer or add replicates), not a capacity",
            best_rate,
        )
    return PolicyCapacity(name, best_rate, best)
