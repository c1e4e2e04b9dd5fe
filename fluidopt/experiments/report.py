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

REPORT_PROFILES = ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b")
VERDICT_PROFILES = ("a100-80gb-llama-3-8b-vidur", "a100-80gb-llama-2-7b")
VERDICT_FRACTION = 0.8
REPORT_WORKLOADS = ("p512d20", "mix-p512d20-p512d50", "p512d1000", "lmsys-like")
COMPARED = ("wait", "wait-nohold", "nested-wait", "vllm", "sarathi", "fcfs")


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
