"""Every result type carries status, success and message from one vocabulary."""

from __future__ import annotations

import fluidopt as fo
from fluidopt.answers.capacity import capacity
from fluidopt.experiments.tune import tune
from fluidopt.fluid.dynamics import FluidSystem, iterate_map
from fluidopt.sim import SarathiPolicy, simulate
from fluidopt.status import STATUSES, is_success
from fluidopt.thresholds import nested_wait_thresholds, wait_cp_thresholds, wait_thresholds


def _check(result) -> None:
    assert result.status in STATUSES
    assert result.success == is_success(result.status)
    assert isinstance(result.message, str) and result.message
    data = result.to_dict()
    assert data["status"] == result.status and data["success"] == result.success


def test_every_result_type_has_a_status():
    profile = fo.preset_profile("a100-80gb-llama-2-7b")
    p512 = fo.preset_workload("p512d20")
    mix = fo.preset_workload("mix-p512d20-p512d50")
    results = [
        fo.equilibrium(p512, profile),
        fo.equilibrium(p512.with_total_rate(1000), profile),
        fo.max_stable_scale(p512, profile),
        simulate(p512.with_total_rate(10), profile, SarathiPolicy(), requests=500),
        wait_thresholds(p512, profile),
        nested_wait_thresholds(mix, profile),
        wait_cp_thresholds(p512.with_total_rate(10), profile),
        iterate_map(FluidSystem(p512, profile, "fcfs"), horizon_s=1.0),
        tune(p512.with_total_rate(10), profile, family="wait", replicates=1, requests=500),
        capacity(p512, profile, policies=("sarathi",), replicates=1, requests=500, steps=1),
    ]
    for result in results:
        _check(result)
    unstable = results[1]
    assert unstable.status == "unstable" and unstable.success  # an unstable load is a result
