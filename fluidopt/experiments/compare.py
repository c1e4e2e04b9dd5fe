"""Does fluid guidance beat tuned baselines on this GPU?  A per-rate verdict with confidence intervals.

At each load (a fraction of the fluid limit) the chunked WAIT family derived from the fluid
model (:func:`~fluidopt.experiments.tune.chunked_candidates`: kappa from the fluid interval,
a few chunk sizes; no grid search over tl) is set against the baselines tuned over their knobs
(vLLM batch cap, Sarathi token budget) and also shown at the paper's defaults (vLLM 128 / 4,096
padded tokens, Sarathi 512 / batch cap 512).

Selecting the best of many configurations and then judging it on the same replicates flatters
the winner, so the two winners are chosen on one set of seeds and compared on an independent
set: the gain (baseline mean latency minus fluid-guided mean latency) has a paired Student-t
interval over those fresh replicates, which share their arrivals (common random numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt.errors import require
from fluidopt.experiments.evaluate import Evaluation, Targets, evaluate_run
from fluidopt.experiments.runs import RunSettings, pipeline_pass_time_s, steady_state_run
from fluidopt.experiments.sweep import Executor
from fluidopt.experiments.tune import chunked_candidates
from fluidopt.fluid.stability import max_stable_scale
from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import BASELINE_POLICIES, Policy, SarathiPolicy, VLLMPolicy, policy_spec
from fluidopt.stats import confidence_interval
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

DEFAULT_FRACTIONS = (0.7, 0.85, 0.95)


def baseline_candidates() -> list[tuple[Policy, dict[str, Any]]]:
    """Every registered baseline over its tuning grid (the paper's and the engines' defaults among them)."""
    out: list[tuple[Policy, dict[str, Any]]] = []
    for name in BASELINE_POLICIES:
        spec = policy_spec(name)
        if spec.grid is None:
            continue  # fcfs: the paper's counterexample, not a tuned baseline
        out += [(policy, {"family": name, **setting}) for policy, setting in spec.grid()]
    return out


@dataclass(frozen=True)
class RateVerdict:
    """The comparison at one rate."""

    rate_per_s: float
    fraction_of_limit: float
    fluid_guided: Evaluation | None
    baseline: Evaluation | None
    paper_defaults: dict[str, Evaluation]
    gain_s: float
    gain_interval_s: tuple[float, float]
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""

        def summary(evaluation: Evaluation | None) -> dict[str, Any] | None:
            if evaluation is None:
                return None
            return {
                "policy": evaluation.policy.name,
                "configuration": evaluation.description,
                "stable": evaluation.stable,
                "mean_latency_s": evaluation.mean("mean_latency_s"),
                "mean_latency_ci_s": list(evaluation.interval("mean_latency_s")),
                "p99_latency_s": evaluation.mean("p99_latency_s"),
                "replicates": len(evaluation.runs),
            }

        return {
            "rate_per_s": self.rate_per_s,
            "fraction_of_limit": self.fraction_of_limit,
            "fluid_guided": summary(self.fluid_guided),
            "baseline": summary(self.baseline),
            "paper_defaults": {k: summary(v) for k, v in self.paper_defaults.items()},
            "gain_s": self.gain_s,
            "gain_ci_s": list(self.gain_interval_s),
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Comparison(HasStatus):
    """Verdicts at every rate for one workload and profile."""

    workload: str
    profile: str
    conventions: str
    fluid_max_rate_per_s: float
    verdicts: tuple[RateVerdict, ...]

    @property
    def status(self) -> str:  # type: ignore[override]
        """Status from :data:`fluidopt.status.STATUSES`."""
        return "ok"

    @property
    def message(self) -> str:  # type: ignore[override]
        """Why the status is what it is."""
        return f"{len(self.verdicts)} loads compared"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "workload": self.workload,
            "profile": self.profile,
            "conventions": self.conventions,
            "fluid_max_rate_per_s": self.fluid_max_rate_per_s,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def paired_gain(baseline: Evaluation, fluid: Evaluation, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean of ``baseline - fluid`` mean latencies over paired replicates and its Student-t interval."""
    a = np.array([r.metric("mean_latency_s") for r in baseline.runs], dtype=float)
    b = np.array([r.metric("mean_latency_s") for r in fluid.runs], dtype=float)
    diff = a - b
    mean = float(diff.mean())
    if diff.size < 2 or not np.all(np.isfinite(diff)):
        return mean, (mean, mean)
    return mean, confidence_interval(diff, level)


def compare_policies(
    workload: Workload,
    profile: GPUProfile,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    replicates: int = 5,
    requests: int = 10_000,
    seed: int = 0,
    conventions: str = "fluidopt",
    executor: Executor | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
) -> Comparison:
    """Best fluid-guided chunked configuration against the best tuned baseline at each load.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        The mix (its shares are kept) and the GPU.
    fractions : sequence of float
        Loads as fractions of the fluid limit of the mix (each in (0, 1]).
    replicates, requests, seed : int
        Replicates per configuration (at least 2; the verdict's interval uses as many fresh
        ones), requests per replicate and the root seed.
    conventions : {"fluidopt", "vidur"}
        Simulation conventions (docs/theory.md section 9).

    """
    require(replicates >= 2, "replicates", replicates, "must be >= 2 for a confidence interval")
    for fraction in fractions:
        require(0 < fraction <= 1, "fractions", fraction, "each must be in (0, 1]")
    limit = max_stable_scale(workload, profile).max_rate_per_s
    run = RunSettings(Targets(), replicates, requests, seed, executor, cache_dir, progress, conventions)
    verdicts = []
    multiclass = len({c.decode_tokens for c in workload.classes}) > 1
    for fraction in fractions:
        scaled = workload.with_total_rate(fraction * limit)
        fluid_configs = chunked_candidates(scaled, profile, conventions=conventions)
        if multiclass:
            fluid_configs += chunked_candidates(scaled, profile, nested=True, conventions=conventions)
        baselines = baseline_candidates()
        # Every configuration is judged on runs that reach the steady state of the slowest
        # pipeline among them (the fluid-derived ones hold kappa seconds of arrivals per stage).
        passes = [pipeline_pass_time_s(scaled, d["kappa"], d["chunk_tokens"]) for _, d in fluid_configs]
        steady, options = steady_state_run(run, scaled.total_rate_per_s, max(passes, default=0.0))
        selection = evaluate_run(scaled, profile, fluid_configs + baselines, steady, options=options)
        fluid_pick = _best(selection[: len(fluid_configs)])
        base_pick = _best(selection[len(fluid_configs) :])
        chosen = [(e.policy, e.description) for e in (fluid_pick, base_pick) if e is not None]
        defaults: list[tuple[Policy, dict[str, Any]]] = [
            (VLLMPolicy(), {"family": "vllm", "paper default": True}),
            (SarathiPolicy(), {"family": "sarathi", "paper default": True}),
        ]
        fresh = evaluate_run(scaled, profile, chosen + defaults, steady.with_seed(seed + 1_000_003), options=options)
        fluid_eval = fresh[0] if fluid_pick is not None else None
        base_eval = fresh[len(chosen) - 1] if base_pick is not None else None
        paper = {"vllm": fresh[len(chosen)], "sarathi": fresh[len(chosen) + 1]}
        gain, interval = (math.nan, (math.nan, math.nan))
        if fluid_eval is not None and base_eval is not None:
            gain, interval = paired_gain(base_eval, fluid_eval)
        verdicts.append(
            RateVerdict(
                float(scaled.total_rate_per_s),
                float(fraction),
                fluid_eval,
                base_eval,
                paper,
                gain,
                interval,
                _verdict(fluid_eval, base_eval, gain, interval),
            )
        )
    return Comparison(workload.name, profile.name, conventions, float(limit), tuple(verdicts))


def _best(evaluations: list[Evaluation]) -> Evaluation | None:
    if not evaluations:
        return None
    return min(evaluations, key=lambda e: (not e.stable, e.mean("mean_latency_s")))


def _verdict(fluid: Evaluation | None, base: Evaluation | None, gain: float, interval: tuple[float, float]) -> str:
    if fluid is None:
        return "no fluid-guided configuration exists at this load (no chunked equilibrium)"
    if base is None:
        return "no baseline configuration"
    if fluid.stable and not base.stable:
        return "fluid-guided is stable, the best baseline is not"
    if base.stable and not fluid.stable:
        return "the best baseline is stable, fluid-guided is not"
    if not base.stable and not fluid.stable:
        return "neither is stable at this load (latencies grow with the run; no comparison)"
    low, high = interval
    if low > 0:
        return f"fluid-guided wins: {gain:.3g} s lower mean latency (95% CI {low:.3g} to {high:.3g})"
    if high < 0:
        return f"tuned baseline wins: {-gain:.3g} s lower mean latency (95% CI {-high:.3g} to {-low:.3g})"
    return f"no significant difference ({gain:+.3g} s, 95% CI {low:.3g} to {high:.3g})"
