"""Results are immutable values: read-only arrays, element-wise equality, no aliasing."""

from __future__ import annotations

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.fluid.dynamics import FluidSystem, iterate_map
from fluidopt.sim import SarathiPolicy, simulate

MIX = fo.preset_workload("mix-p512d20-p512d50")
PROFILE = fo.preset_profile("a100-80gb-llama-2-7b")


def test_multi_class_results_compare_by_value():
    assert fo.equilibrium(MIX, PROFILE) == fo.equilibrium(MIX, PROFILE)
    assert fo.equilibrium(MIX, PROFILE) != fo.equilibrium(MIX.with_total_rate(3), PROFILE)
    boundary = fo.stability_boundary(MIX, PROFILE, directions=5)
    assert boundary == fo.stability_boundary(MIX, PROFILE, directions=5)
    run = simulate(MIX, PROFILE, SarathiPolicy(), requests=300, rng=2, record_requests=True)
    again = simulate(MIX, PROFILE, SarathiPolicy(), requests=300, rng=2, record_requests=True)
    assert run.requests is not None and again.requests is not None
    assert np.array_equal(run.requests["completion_s"], again.requests["completion_s"])


def test_result_arrays_are_read_only():
    eq = fo.equilibrium(MIX, PROFILE)
    with pytest.raises(ValueError):
        eq.per_stage[0] = 0.0
    run = simulate(MIX, PROFILE, SarathiPolicy(), requests=200, record_series=True)
    assert run.series is not None
    with pytest.raises(ValueError):
        run.series["waiting"][0] = -1
    trajectory = iterate_map(FluidSystem(MIX, PROFILE, "fcfs"), horizon_s=0.5)
    with pytest.raises(ValueError):
        trajectory.queue[0, 0] = 1.0
    with pytest.raises(ValueError):
        MIX.rates[0] = 0.0
