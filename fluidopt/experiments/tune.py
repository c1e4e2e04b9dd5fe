"""Threshold tuning for a GPU profile and workload, verified by simulation.

Candidates come from the fluid model (WAIT: kappa from ``dT*`` upward; Nested WAIT: number of
segments and margin eta); each is simulated with replicates on common random numbers, in
parallel, and the best one by the objective is returned with confidence intervals and the
runners-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from fluidopt.errors import InputError, require
from fluidopt.experiments.evaluate import Evaluation, Targets, evaluate_run, run_settings
from fluidopt.experiments.runs import RunSettings
from fluidopt.experiments.sweep import Executor
from fluidopt.fluid.stability import max_stable_scale
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import FLUID_POLICIES, NestedWaitPolicy, Policy, WaitPolicy, tuning_candidates
from fluidopt.status import HasStatus
from fluidopt.thresholds.nested import nested_wait_thresholds
from fluidopt.thresholds.wait import kappa_interval, wait_thresholds
from fluidopt.workload import Workload

WAIT_SLACKS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
NESTED_ETAS = (0.02, 0.05, 0.1)
CHUNKED_SLACKS = (0.0, 0.15, 0.3, 0.6, 1.0)
CHUNK_SIZES = (128, 256, 512)
FAMILIES = ("auto", *FLUID_POLICIES, "chunked")


def chunked_candidates(
    workload: Workload,
    profile: GPUProfile,
    *,
    nested: bool = False,
    conventions: str = "fluidopt",
    slacks: tuple[float, ...] = CHUNKED_SLACKS,
    chunk_sizes: tuple[int, ...] = CHUNK_SIZES,
) -> list[tuple[Policy, dict[str, Any]]]:
    """Chunked WAIT settings from the fluid model over ``kappa = kappa_0 (1 + slack)`` and chunk sizes.

    ``kappa_0`` is the boundary ``dT*`` moved up until the rounded budgets keep up
    (:func:`~fluidopt.thresholds.chunked.wait_cp_thresholds`); every candidate satisfies the
    conditions of docs/theory.md section 10.  Loads without a chunked equilibrium give none.
    """
    from fluidopt.thresholds.chunked import wait_cp_thresholds

    if nested and len({c.decode_tokens for c in workload.classes}) < 2:
        return []
    seen: set[Any] = set()
    out: list[tuple[Policy, dict[str, Any]]] = []
    longest = int(workload.prefill.max())
    for chunk in dict.fromkeys(min(c, longest) for c in chunk_sizes):  # short prompts: one whole chunk
        for slack in slacks:
            try:
                design = wait_cp_thresholds(
                    workload, profile, slack=slack, chunk_tokens=chunk, conventions=conventions, nested=nested
                )
            except InputError:
                continue
            policy = design.policy()
            if policy in seen:
                continue
            seen.add(policy)
            out.append(
                (
                    policy,
                    {
                        "family": policy.name,
                        "chunk_tokens": chunk,
                        "slack": slack,
                        "kappa": design.kappa,
                        "tl": design.tl,
                        "total_budget_tokens": design.total_budget_tokens,
                        "conditions_hold": design.conditions.all_hold,
                    },
                )
            )
    return out


def wait_candidates(workload: Workload, profile: GPUProfile) -> list[tuple[Policy, dict[str, Any]]]:
    """WAIT thresholds for kappa = dT* (1 + slack) over :data:`WAIT_SLACKS` (distinct thresholds only)."""
    interval = kappa_interval(workload, profile)
    seen: set[Any] = set()
    out: list[tuple[Policy, dict[str, Any]]] = []
    if not math.isfinite(interval.low):
        return out
    for slack in WAIT_SLACKS:
        kappa = interval.low * (1 + slack)
        if slack > 0 and kappa > max(interval.high, interval.low):
            break
        design = wait_thresholds(
            workload,
            profile,
            kappa=kappa if slack > 0 else None,
            case="boundary" if slack == 0 else "slack",
            slack=slack,
        )
        if design.thresholds in seen:
            continue
        seen.add(design.thresholds)
        out.append(
            (
                WaitPolicy(design.thresholds),
                {
                    "family": "wait",
                    "kappa": design.kappa,
                    "slack": slack,
                    "memory_base_tokens": design.memory_base_tokens,
                    "conditions_hold": design.conditions.all_hold,
                },
            )
        )
    return out


def nested_candidates(workload: Workload, profile: GPUProfile) -> list[tuple[Policy, dict[str, Any]]]:
    """Nested WAIT designs over the number of segments and :data:`NESTED_ETAS`."""
    lengths = sorted({c.decode_tokens for c in workload.classes})
    seen: set[Any] = set()
    out: list[tuple[Policy, dict[str, Any]]] = []
    for count in range(1, len(lengths) + 1):
        for eta in NESTED_ETAS:
            try:
                design = nested_wait_thresholds(workload, profile, segments=count, eta=eta)
            except InputError:
                continue
            key = (design.segments.boundaries, design.thresholds)
            if key in seen:
                continue
            seen.add(key)
            out.append(
                (
                    NestedWaitPolicy(design.segments.boundaries, design.thresholds),
                    {
                        "family": "nested-wait",
                        "segments": count,
                        "eta": eta,
                        "memory_required_tokens": design.memory_required_tokens,
                        "conditions_hold": design.conditions.all_hold,
                    },
                )
            )
    return out


@dataclass(frozen=True)
class TuneResult(HasStatus):
    """Outcome of :func:`tune`.

    ``status`` is ``"ok"`` or ``"no-configuration"`` (then ``message`` says which target could
    not be met and ``best_found`` is the closest configuration).
    """

    status: str
    message: str
    objective: str
    targets: Targets
    rate_per_s: float
    chosen: Evaluation | None
    best_found: Evaluation | None
    runners_up: tuple[Evaluation, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "success": self.success,
            "status": self.status,
            "message": self.message,
            "objective": self.objective,
            "targets": {"p99_latency_s": self.targets.p99_latency_s, "p99_ttft_s": self.targets.p99_ttft_s},
            "rate_per_s": self.rate_per_s,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "best_found": self.best_found.to_dict() if self.best_found else None,
            "runners_up": [e.to_dict() for e in self.runners_up],
        }


def _candidates(
    workload: Workload, profile: GPUProfile, family: str, conventions: str = "fluidopt"
) -> list[tuple[Policy, dict[str, Any]]]:
    """The candidates of a tuning family: a registered fluid policy's grid, or the two combinations."""
    if family == "chunked":
        return chunked_grid(workload, profile, conventions) + nested_chunked_grid(workload, profile, conventions)
    if family == "auto":
        return wait_candidates(workload, profile) + nested_candidates(workload, profile)
    return tuning_candidates(family, workload, profile, conventions)


def wait_grid(workload: Workload, profile: GPUProfile, conventions: str = "fluidopt") -> list[tuple[Policy, Any]]:
    """The registered tuning grid of the WAIT names (:func:`wait_candidates`; conventions do not apply)."""
    return wait_candidates(workload, profile)


def nested_grid(workload: Workload, profile: GPUProfile, conventions: str = "fluidopt") -> list[tuple[Policy, Any]]:
    """The registered tuning grid of the Nested WAIT names (:func:`nested_candidates`)."""
    return nested_candidates(workload, profile)


def chunked_grid(workload: Workload, profile: GPUProfile, conventions: str = "fluidopt") -> list[tuple[Policy, Any]]:
    """The registered tuning grid of ``wait-cp`` (:func:`chunked_candidates`)."""
    return chunked_candidates(workload, profile, conventions=conventions)


def nested_chunked_grid(
    workload: Workload, profile: GPUProfile, conventions: str = "fluidopt"
) -> list[tuple[Policy, Any]]:
    """The registered tuning grid of ``nested-wait-cp`` (:func:`chunked_candidates` over segments)."""
    return chunked_candidates(workload, profile, nested=True, conventions=conventions)


def tune(
    workload: Workload,
    profile: GPUProfile,
    *,
    family: str = "auto",
    objective: Literal["mean-latency", "max-rate"] = "mean-latency",
    targets: Targets | None = None,
    replicates: int = 4,
    requests: int = 20_000,
    seed: int = 0,
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    conventions: str = "fluidopt",
    rate_steps: int = 7,
) -> TuneResult:
    """Choose WAIT / Nested WAIT thresholds by simulation.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        Traffic at the rate to tune for (``mean-latency``) or the mix to scale (``max-rate``).
    family : {"auto", "wait", "nested-wait"}
        Which policy family to tune (auto: both).
    objective : {"mean-latency", "max-rate"}
        Least mean latency at the workload's rate among configurations meeting the targets, or
        the largest rate at which some configuration meets them (bisection, ``rate_steps`` steps).
    targets : Targets, optional
        p99 latency / TTFT targets.
    replicates, requests, seed : int
        Replicates per configuration (common random numbers), requests per replicate, root seed.
    executor, cache_dir, progress
        How to run the simulations (see :mod:`fluidopt.experiments.sweep`).

    """
    targets = targets or Targets()
    require(family in FAMILIES, "policy", family, f"must be one of {', '.join(FAMILIES)}")
    require(objective in ("mean-latency", "max-rate"), "objective", objective, "must be mean-latency or max-rate")
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
    if objective == "mean-latency":
        return _tune_at_rate(workload, profile, family, run)
    limit = max_stable_scale(workload, profile).max_rate_per_s
    low, high = 0.0, limit
    best: TuneResult | None = None
    closest: TuneResult | None = None
    for _ in range(rate_steps):
        middle = (low + high) / 2 if best is not None or low > 0 else high * 0.5
        outcome = _tune_at_rate(workload.with_total_rate(middle), profile, family, run)
        closest = outcome
        if outcome.status == "ok":
            best, low = outcome, middle
        else:
            high = middle
    if best is None:
        assert closest is not None
        return TuneResult(
            "no-configuration",
            f"no configuration meets {targets.describe()} at any tested rate (down to {high:.4g} requests/s)",
            objective,
            targets,
            high,
            None,
            closest.best_found,
            (),
        )
    return TuneResult(
        "ok",
        f"largest rate meeting {targets.describe()}: {best.rate_per_s:.4g} requests/s",
        objective,
        targets,
        best.rate_per_s,
        best.chosen,
        best.chosen,
        best.runners_up,
    )


def _tune_at_rate(workload: Workload, profile: GPUProfile, family: str, run: RunSettings) -> TuneResult:
    targets = run.targets
    candidates = _candidates(workload, profile, family, run.conventions)
    if not candidates:
        limit = max_stable_scale(workload, profile).max_rate_per_s
        if not workload.total_rate_per_s < limit:
            return TuneResult(
                "unstable",
                f"rate {workload.total_rate_per_s:.4g} requests/s is above the fluid limit {limit:.4g}: no policy "
                "is stable there, so there is nothing to tune",
                "mean-latency",
                targets,
                workload.total_rate_per_s,
                None,
                None,
                (),
            )
        return TuneResult(
            "no-configuration",
            f"no {family} thresholds satisfy the fluid conditions at {workload.total_rate_per_s:.4g} requests/s",
            "mean-latency",
            targets,
            workload.total_rate_per_s,
            None,
            None,
            (),
        )
    evaluations = evaluate_run(workload, profile, candidates, run)
    ranked = sorted(evaluations, key=lambda e: (not e.meets, not e.stable, e.mean("mean_latency_s")))
    best = ranked[0]
    if not best.meets:
        closest = min(evaluations, key=lambda e: (not e.stable, e.mean("p99_latency_s")))
        return TuneResult(
            "no-configuration",
            f"no configuration meets {targets.describe()} at "
            f"{workload.total_rate_per_s:.4g} requests/s; best found has p99 latency "
            f"{closest.mean('p99_latency_s'):.4g} s",
            "mean-latency",
            targets,
            workload.total_rate_per_s,
            None,
            closest,
            tuple(ranked[1:4]),
        )
    return TuneResult(
        "ok",
        f"least mean latency meeting {targets.describe()}",
        "mean-latency",
        targets,
        workload.total_rate_per_s,
        best,
        best,
        tuple(ranked[1:4]),
    )
