"""The report's computations (``fluidopt report`` prints them): verdicts, stability, tuning, comparison.

Kept apart from the command line so the main job's numbers can be computed from the API.
"""

from __future__ import annotations

from fluidopt.experiments.rate_sweep import rate_sweep
from fluidopt.experiments.tune import tune
from fluidopt.fluid.equilibrium import equilibrium
from fluidopt.fluid.stability import max_stable_scale, peer_max_scales
from fluidopt.profile import preset_profile
from fluidopt.workload import preset_workload

ENGINE_PROFILES = ("rtx4090-llama-3.1-8b-vllm", "a100-80gb-llama-3-8b-vidur")
ENGINE_WORKLOADS = ("p512d20", "sharegpt-like")
ENGINE_FRACTION = 0.85
DEFAULT_SLO_TPOT_S = 0.1  # the report's default SLO: p99 time per output token <= 100 ms
REPORT_PROFILES = ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b")
VERDICT_PROFILES = ("a100-80gb-llama-3-8b-vidur", "a100-80gb-llama-2-7b")
VERDICT_FRACTION = 0.8
REPORT_WORKLOADS = ("p512d20", "mix-p512d20-p512d50", "p512d1000", "lmsys-like")
COMPARED = ("wait", "wait-nohold", "nested-wait", "vllm", "sarathi", "fcfs")


def engine_recommendations(
    profiles: tuple[str, ...] = ENGINE_PROFILES,
    workloads: tuple[str, ...] = ENGINE_WORKLOADS,
    *,
    fraction: float = ENGINE_FRACTION,
    requests: int = 3000,
) -> list[dict]:
    """VLLM and SGLang settings from the fluid model at ``fraction`` of each fluid limit, under the default SLO."""
    from fluidopt.answers.recommend import recommend
    from fluidopt.experiments.runs import Targets

    rows = []
    for profile_name in profiles:
        profile = preset_profile(profile_name)
        for workload_name in workloads:
            base = preset_workload(workload_name)
            limit = max_stable_scale(base, profile).max_rate_per_s
            for engine in ("vllm", "sglang"):
                result = recommend(
                    engine,
                    base.with_total_rate(fraction * limit),
                    profile,
                    targets=Targets(p99_tpot_s=DEFAULT_SLO_TPOT_S),
                    requests=requests,
                )
                rows.append({"profile": profile_name, "workload_name": workload_name, **result.to_dict()})
    return rows


def verdict_sentence(row: dict) -> str:
    """One short sentence for a recommendation row of the report: the status first, in its own word."""
    if not row["recommended"] or not row["success"]:
        return f"{row['status']}: {row['message']}"
    fresh = row["evaluations"]["recommended (fresh seeds)"]
    default = row["evaluations"]["engine defaults (fresh seeds)"]
    stable = "stable" if fresh["stable"] else "UNSTABLE"
    low, high = row["gain_vs_default_ci_s"]
    if row["source"].startswith("engine defaults"):
        versus = "the engine's defaults are the best setting found"
    elif low > 0:
        versus = f"{row['gain_vs_default_s']:.2g} s faster than the defaults"
    elif high < 0:
        versus = f"{-row['gain_vs_default_s']:.2g} s slower than the defaults"
    else:
        versus = "not significantly faster than the defaults (95% interval spans 0)"
    defaults = "stable" if default["stable"] else "unstable"
    return f"{row['status']}: {row['source']}, {stable}, {versus} (defaults {defaults})"


def stability_summary(profiles: tuple[str, ...], workloads: tuple[str, ...]) -> list[dict]:
    """Equilibrium at the preset rate and largest stable rate for every (profile, workload)."""
    rows = []
    for profile_name in profiles:
        profile = preset_profile(profile_name)
        for workload_name in workloads:
            workload = preset_workload(workload_name)
            eq = equilibrium(workload, profile)
            limit = max_stable_scale(workload, profile)
            peers = peer_max_scales(workload, profile)
            rows.append(
                {
                    "profile": profile_name,
                    "workload": workload_name,
                    "rate_per_s": workload.total_rate_per_s,
                    "stable": eq.stable,
                    "iteration_time_s": eq.iteration_time_s,
                    "memory_tokens": eq.memory_tokens,
                    "kv_capacity_tokens": profile.kv_capacity_tokens,
                    "max_rate_per_s": limit.max_rate_per_s,
                    "binding": list(limit.binding),
                    "memory_elasticity": limit.memory_elasticity,
                    "regime": limit.regime,
                    "li_dai_peng_max_rate_per_s": peers["li_dai_peng"] * workload.total_rate_per_s,
                    "nie_si_zhou_max_rate_per_s": peers["nie_si_zhou"] * workload.total_rate_per_s,
                }
            )
    return rows


def tuned_thresholds(profile_name: str, executor, requests: int) -> list[dict]:
    """Tuned WAIT / Nested WAIT thresholds for the paper's two workloads at their preset rates."""
    profile = preset_profile(profile_name)
    rows = []
    for workload_name, family in (("p512d20", "wait"), ("mix-p512d20-p512d50", "nested-wait")):
        workload = preset_workload(workload_name)
        result = tune(workload, profile, family=family, replicates=2, requests=min(requests, 10_000), executor=executor)
        chosen = result.chosen or result.best_found
        rows.append(
            {
                "profile": profile_name,
                "workload": workload_name,
                "rate_per_s": workload.total_rate_per_s,
                "policy": chosen.policy.name if chosen else family,
                "thresholds": list(getattr(chosen.policy, "thresholds", ())) if chosen else None,
                "mean_latency_s": chosen.mean("mean_latency_s") if chosen else None,
                "status": result.status,
            }
        )
    return rows


def policy_comparison(profile_name: str, executor, requests: int) -> list[dict]:
    """Every policy at the preset rate of each workload."""
    profile = preset_profile(profile_name)
    rows = []
    for workload_name in REPORT_WORKLOADS:
        workload = preset_workload(workload_name)
        for row in rate_sweep(
            workload, profile, COMPARED, [workload.total_rate_per_s], replicates=2, requests=requests, executor=executor
        ):
            rows.append({"profile": profile_name, "workload": workload_name, **row})
    return rows


def verdict_summary(profiles: tuple[str, ...], workloads: tuple[str, ...], executor, requests: int) -> list[dict]:
    """The verdict per (profile, workload) at 80 % of the fluid limit.

    Best fluid-guided chunked configuration against the best tuned baseline
    (:func:`~fluidopt.experiments.compare.compare_policies`).
    """
    from fluidopt.experiments.compare import compare_policies

    rows = []
    for profile_name in profiles:
        profile = preset_profile(profile_name)
        for workload_name in workloads:
            result = compare_policies(
                preset_workload(workload_name),
                profile,
                fractions=(VERDICT_FRACTION,),
                replicates=3,
                requests=requests,
                executor=executor,
            )
            verdict = result.verdicts[0]
            rows.append(
                {
                    "profile": profile_name,
                    "workload": workload_name,
                    "fluid_max_rate_per_s": result.fluid_max_rate_per_s,
                    **verdict.to_dict(),
                }
            )
    return rows
