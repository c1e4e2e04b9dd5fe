import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import general_profiles, linear_profiles, workloads

from fluidopt.errors import InputError
from fluidopt.fluid import Constraints, equilibrium, equilibrium_closed_form, equilibrium_lp
from fluidopt.fluid.symbolic import derive_equilibrium
from fluidopt.profile import AffinePiece, GPUProfile, linear_profile, preset_profile
from fluidopt.workload import RequestClass, Workload, preset_workload

SYMBOLIC = {m: derive_equilibrium(m) for m in (1, 2, 3)}


@pytest.mark.parametrize("method", ["closed-form", "lp"])
def test_toy_hand_solved(method):
    result = equilibrium(preset_workload("toy"), preset_profile("toy"), method=method)
    assert result.stable
    assert math.isclose(result.per_stage[0], 4.0, rel_tol=1e-9)
    assert math.isclose(result.memory_tokens, 12.0, rel_tol=1e-9)
    assert math.isclose(result.iteration_time_s, 1.0, rel_tol=1e-9)
    assert result.binding == ("memory",)  # M* = C exactly
    assert math.isclose(result.throughput_tokens_per_s, 4.0)


@pytest.mark.parametrize("method", ["closed-form", "lp"])
def test_fcfs_counterexample_hand_solved(method):
    result = equilibrium(preset_workload("fcfs-counterexample"), preset_profile("fcfs-counterexample"), method=method)
    np.testing.assert_allclose(result.per_stage, [1.0, 1.0], rtol=1e-9)
    assert math.isclose(result.memory_tokens, 9.0, rel_tol=1e-9)


def test_single_class_formulas():
    # n* = d0 lambda / (1 - d1 lambda S), M* = d0 lambda S / (1 - d1 lambda S)
    d0, d1, lam = 0.02, 1e-6, 10.0
    c = RequestClass("c", 100, 50, lam)
    S = 51 * (100 + 25)
    result = equilibrium(Workload("w", (c,)), linear_profile("lin", 10**6, d0, d1))
    assert math.isclose(result.per_stage[0], d0 * lam / (1 - d1 * lam * S), rel_tol=1e-12)
    assert math.isclose(result.memory_tokens, d0 * lam * S / (1 - d1 * lam * S), rel_tol=1e-12)
    assert result.method == "closed-form"


def test_instability_is_a_result_not_an_error():
    # d1 lambda S >= 1: unstable under every policy.
    c = RequestClass("c", 10, 10, 10.0)
    S = 11 * 15
    profile = linear_profile("lin", 10**9, 0.01, 1.0 / (10.0 * S))
    for method in ("closed-form", "lp"):
        result = equilibrium(Workload("w", (c,)), profile, method=method)
        assert not result.stable and result.status == "unstable"
        assert result.message.startswith("unstable")
        assert math.isnan(result.iteration_time_s)
    memory_bound = equilibrium(preset_workload("toy").with_total_rate(5), preset_profile("toy"))
    assert not memory_bound.stable and memory_bound.binding == ("memory",)


def test_capacity_smaller_than_one_request():
    profile = linear_profile("tiny", 100, 0.01, 1e-6)
    with pytest.raises(InputError, match="kv_capacity_tokens"):
        equilibrium(preset_workload("p512d20"), profile)


def test_unknown_method():
    with pytest.raises(InputError, match="method"):
        equilibrium(preset_workload("toy"), preset_profile("toy"), method="magic")


@given(data=st.data())
def test_closed_form_lp_and_sympy_agree_on_linear_instances(data):
    workload = data.draw(workloads(max_classes=3))
    profile = data.draw(linear_profiles(workload))
    closed = equilibrium_closed_form(workload, profile)
    lp = equilibrium_lp(workload, profile)
    assert closed.stable == lp.stable
    if not closed.stable:
        return
    symbolic = SYMBOLIC[workload.num_classes].evaluate(workload, profile)
    for value in (lp.iteration_time_s, symbolic["iteration_time"]):
        assert math.isclose(closed.iteration_time_s, value, rel_tol=1e-6)
    for value in (lp.memory_tokens, symbolic["memory"]):
        assert math.isclose(closed.memory_tokens, value, rel_tol=1e-6)
    np.testing.assert_allclose(lp.per_stage, closed.per_stage, rtol=1e-6)
    np.testing.assert_allclose(symbolic["per_stage"], closed.per_stage, rtol=1e-6)


@given(data=st.data())
def test_closed_form_and_lp_agree_on_general_profiles(data):
    workload = data.draw(workloads(max_classes=3))
    profile = data.draw(general_profiles(workload))
    limits = Constraints(
        tbt_max_s=data.draw(st.none() | st.floats(0.01, 1.0)),
        max_batch_sequences=data.draw(st.none() | st.floats(1.0, 1e4)),
        prefill_token_budget=data.draw(st.none() | st.floats(10.0, 1e5)),
    )
    closed = equilibrium_closed_form(workload, profile, limits)
    lp = equilibrium_lp(workload, profile, limits)
    assert closed.stable == lp.stable
    if closed.stable:
        assert math.isclose(closed.iteration_time_s, lp.iteration_time_s, rel_tol=1e-6)
        np.testing.assert_allclose(lp.per_stage, closed.per_stage, rtol=1e-6)
        # Every limit holds at the equilibrium.
        assert all(v <= 1 + 1e-7 for v in closed.utilisation.values())


def test_tbt_limit_binds_and_can_rule_out():
    workload, profile = preset_workload("p512d20"), preset_profile("a100-80gb-llama-3-8b")
    free = equilibrium(workload, profile)
    tight = Constraints(tbt_max_s=free.iteration_time_s)
    result = equilibrium_lp(workload, profile, tight)
    assert result.stable and "tbt" in result.binding
    too_tight = equilibrium(workload, profile, Constraints(tbt_max_s=0.5 * free.iteration_time_s))
    assert not too_tight.stable and "tbt" in too_tight.binding


def test_multi_piece_iteration_time_uses_active_piece():
    profile = GPUProfile("two", 10**6, (AffinePiece(0.01, 0.0), AffinePiece(0.001, 0.0, 1e-4, 0.0)))
    light = Workload("w", (RequestClass("c", 10, 5, 1.0),))
    assert equilibrium(light, profile).active_piece == 0
    heavy = light.with_total_rate(950.0)
    result = equilibrium(heavy, profile)
    assert result.active_piece == 1
    # dT = 0.001 / (1 - lambda * 1e-4 * l) with l = 10
    assert math.isclose(result.iteration_time_s, 0.001 / (1 - 950 * 1e-4 * 10), rel_tol=1e-9)


def test_lp_scales_to_many_classes():
    rng = np.random.default_rng(0)
    classes = tuple(
        RequestClass(f"c{j}", int(rng.integers(1, 500)), int(rng.integers(1, 200)), float(rng.uniform(0, 0.01)))
        for j in range(300)
    )
    workload = Workload("many", classes)
    profile = preset_profile("a100-80gb-llama-3-8b")
    lp, closed = equilibrium_lp(workload, profile), equilibrium_closed_form(workload, profile)
    assert lp.stable and math.isclose(lp.iteration_time_s, closed.iteration_time_s, rel_tol=1e-6)
