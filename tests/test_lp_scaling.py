"""LP against the closed form on instances spanning 1e-12..1e6 in every coefficient."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidopt as fo
from fluidopt.profile import AffinePiece, GPUProfile
from fluidopt.workload import RequestClass, Workload

magnitude = st.floats(-12, 6).map(lambda e: 10.0**e)


@given(
    base=magnitude,
    per_kv=magnitude,
    per_prefill=st.one_of(st.just(0.0), magnitude),
    capacity_exp=st.floats(2, 9),
    classes=st.lists(st.tuples(st.integers(1, 2000), st.integers(1, 500), magnitude), min_size=1, max_size=3),
)
def test_lp_matches_closed_form_across_scales(base, per_kv, per_prefill, capacity_exp, classes):
    workload = Workload("w", tuple(RequestClass(f"c{i}", l, d, r) for i, (l, d, r) in enumerate(classes)))
    capacity = int(10**capacity_exp)
    if capacity < workload.max_peak_kv_tokens:
        capacity = workload.max_peak_kv_tokens
    profile = GPUProfile("p", capacity, (AffinePiece(base, per_kv, per_prefill, 0.0),))
    closed = fo.equilibrium(workload, profile, method="closed-form")
    lp = fo.equilibrium(workload, profile, method="lp")
    assert lp.stable == closed.stable
    if closed.stable:
        assert lp.iteration_time_s == pytest.approx(closed.iteration_time_s, rel=1e-6)
        assert lp.cross_check is not None and lp.cross_check <= 1e-6
        assert lp.solver.startswith(("HIGHS", "CLARABEL"))
        assert lp.duals["arrivals"].shape == (workload.num_classes,) and not lp.duals["arrivals"].flags.writeable
    theta_closed = fo.max_stable_scale(workload, profile, method="closed-form").max_scale
    theta_lp = fo.max_stable_scale(workload, profile, method="lp").max_scale
    if np.isfinite(theta_closed) and theta_closed > 1e-9:
        assert theta_lp == pytest.approx(theta_closed, rel=1e-5)


def test_tiny_costs_are_not_reported_as_instant():
    workload = fo.preset_workload("p512d20")
    profile = GPUProfile("tiny", 10**6, (AffinePiece(1e-12, 1e-12, 0.0, 0.0),))
    lp = fo.equilibrium(workload, profile, method="lp")
    assert lp.stable and lp.iteration_time_s == pytest.approx(1e-12, rel=1e-6)
