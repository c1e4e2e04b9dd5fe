import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import general_profiles, linear_profiles, workloads

from fluidopt.errors import InputError
from fluidopt.fluid import Constraints, equilibrium, max_stable_scale, peer_max_scales, stability_boundary
from fluidopt.fluid.symbolic import derive_equilibrium
from fluidopt.profile import AffinePiece, GPUProfile, linear_profile, preset_profile
from fluidopt.workload import RequestClass, Workload, preset_workload


def test_linear_theta_star_formula():
    # theta* = C / ((d0 + d1 C) a)
    workload, profile = preset_workload("lmsys-like"), preset_profile("paper-linear")
    d0, d1, C = 0.0103, 3.9e-7, 137_000
    expected = C / ((d0 + d1 * C) * workload.kv_mass_rate)
    result = max_stable_scale(workload, profile)
    assert math.isclose(result.max_scale, expected, rel_tol=1e-12)
    assert result.binding == ("memory",)
    # The paper: M* crosses C at about 74 requests/s on LMSYS.
    assert 70 < result.max_rate_per_s < 80


@given(data=st.data())
def test_theta_star_closed_form_lp_and_sympy_agree(data):
    workload = data.draw(workloads(max_classes=3))
    profile = data.draw(linear_profiles(workload))
    closed = max_stable_scale(workload, profile, method="closed-form")
    lp = max_stable_scale(workload, profile, method="lp")
    symbolic = derive_equilibrium(workload.num_classes, paper_linear=False).evaluate(workload, profile)
    assert math.isclose(closed.max_scale, lp.max_scale, rel_tol=1e-6)
    assert math.isclose(closed.max_scale, symbolic["max_scale"], rel_tol=1e-6)
    assert math.isclose(closed.memory_elasticity, lp.memory_elasticity, rel_tol=1e-5, abs_tol=1e-9)
    # At theta*, the equilibrium memory equals C.
    at_limit = equilibrium(workload.scaled(closed.max_scale * (1 - 1e-12)), profile)
    assert at_limit.stable
    assert math.isclose(at_limit.memory_tokens, profile.kv_capacity_tokens, rel_tol=1e-6)
    beyond = equilibrium(workload.scaled(closed.max_scale * (1 + 1e-6)), profile)
    assert not beyond.stable


@given(data=st.data())
def test_general_theta_star_saturates_the_binding_resource(data):
    workload = data.draw(workloads(max_classes=3))
    profile = data.draw(general_profiles(workload))
    limits = Constraints(
        tbt_max_s=data.draw(st.none() | st.floats(0.06, 1.0)),
        max_batch_sequences=data.draw(st.none() | st.floats(10.0, 1e4)),
        prefill_token_budget=data.draw(st.none() | st.floats(1000.0, 1e5)),
    )
    closed = max_stable_scale(workload, profile, limits)
    lp = max_stable_scale(workload, profile, limits, method="lp")
    assert math.isclose(closed.max_scale, lp.max_scale, rel_tol=1e-6)
    if closed.max_scale == 0:
        return
    assert equilibrium(workload.scaled(closed.max_scale * (1 - 1e-9)), profile, limits, method="lp").stable
    assert not equilibrium(workload.scaled(closed.max_scale * (1 + 1e-6)), profile, limits, method="lp").stable
    at_limit = equilibrium(workload.scaled(closed.max_scale), profile, limits, method="closed-form")
    assert at_limit.stable
    saturated = {k for k, v in at_limit.utilisation.items() if math.isclose(v, 1.0, rel_tol=1e-7)}
    assert saturated and set(closed.binding) <= saturated


def _single_piece(d0, kv, pf, seq, capacity):
    return GPUProfile("p", capacity, (AffinePiece(d0, kv, pf, seq),))


def _elasticity_formula(workload, profile):
    # d ln theta*/d ln C = d0 a / (d0 a + C K), K = sum lambda_j c_j (docs/theory.md section 8)
    piece = profile.pieces[0]
    c = (
        piece.per_kv_token_s * workload.kv_mass
        + piece.per_prefill_token_s * workload.prefill
        + piece.per_sequence_s * (workload.decode + 1)
    )
    a, K = workload.kv_mass_rate, float(workload.rates @ c)
    return piece.base_s * a / (piece.base_s * a + profile.kv_capacity_tokens * K)


def test_prefill_heavy_on_large_memory_is_compute_bound():
    workload = Workload("prefill-heavy", (RequestClass("c", 2000, 2, 1.0),))
    profile = _single_piece(0.01, 1e-7, 1e-5, 1e-4, 1_000_000)
    for method in ("closed-form", "lp"):
        result = max_stable_scale(workload, profile, method=method)
        assert result.memory_elasticity < 0.01
        assert math.isclose(result.memory_elasticity, _elasticity_formula(workload, profile), rel_tol=1e-5)
        assert result.regime == "compute-bound"


def test_decode_heavy_on_small_memory_is_memory_bound():
    workload = Workload("decode-heavy", (RequestClass("c", 10, 500, 1.0),))
    profile = _single_piece(0.01, 1e-7, 1e-5, 1e-4, 2000)
    for method in ("closed-form", "lp"):
        result = max_stable_scale(workload, profile, method=method)
        assert result.memory_elasticity > 0.9
        assert math.isclose(result.memory_elasticity, _elasticity_formula(workload, profile), rel_tol=1e-5)
        assert result.regime == "memory-bound"
    # Numerical check of the elasticity: theta* at C (1 +- eps).
    eps = 0.005
    up = max_stable_scale(workload, profile.with_capacity(2010)).max_scale
    down = max_stable_scale(workload, profile).max_scale
    assert math.isclose(math.log(up / down) / math.log(1 + eps), _elasticity_formula(workload, profile), rel_tol=2e-2)


def test_tight_tbt_binds_with_closed_form():
    workload, profile = preset_workload("p512d20"), preset_profile("paper-linear")
    d0, d1 = 0.0103, 3.9e-7
    tbt = 0.02
    K = float(workload.rates @ (d1 * workload.kv_mass))
    expected = (1 - d0 / tbt) / K  # theta <= (1 - d0/tbt_max) / K
    for method in ("closed-form", "lp"):
        result = max_stable_scale(workload, profile, Constraints(tbt_max_s=tbt), method=method)
        assert result.binding == ("tbt",)
        assert math.isclose(result.max_scale, expected, rel_tol=1e-6)
        assert result.memory_elasticity == pytest.approx(0.0, abs=1e-9)


def test_tbt_below_base_time_gives_zero():
    result = max_stable_scale(preset_workload("toy"), preset_profile("toy"), Constraints(tbt_max_s=0.1))
    assert result.max_scale == 0 and not result.stable


def test_empty_mix_is_stable_everywhere():
    workload = preset_workload("toy").with_total_rate(0.0)
    assert max_stable_scale(workload, preset_profile("toy")).max_scale == math.inf
    assert equilibrium(workload, preset_profile("toy")).stable


def test_boundary_two_classes_lies_on_memory_limit():
    mix, profile = preset_workload("mix-p512d20-p512d50"), preset_profile("paper-linear")
    boundary = stability_boundary(mix, profile, directions=13)
    closed = stability_boundary(mix, profile, directions=13, method="closed-form")
    np.testing.assert_allclose(boundary.fluid_rates, closed.fluid_rates, rtol=1e-6)
    # Linear model: every boundary point satisfies a(lambda) = C / (d0 + d1 C).
    target = 137_000 / (0.0103 + 3.9e-7 * 137_000)
    np.testing.assert_allclose(boundary.fluid_rates @ mix.kv_mass, target, rtol=1e-6)
    # Nie-Si-Zhou with b_bar = d0 + d1 C is exactly the fluid boundary for the linear model.
    np.testing.assert_allclose(boundary.peer_rates["nie_si_zhou"], boundary.fluid_rates, rtol=1e-9)
    with pytest.raises(InputError, match="2 classes"):
        stability_boundary(preset_workload("toy"), preset_profile("toy"))


def test_li_dai_peng_hand_solved():
    workload = Workload("w", (RequestClass("c", 100, 50, 2.0),))
    profile = linear_profile("lin", 10_000, 0.01, 1e-6)
    t_b = 0.01 + 1e-6 * 10_000
    expected = 512 / (t_b * 2.0 * 150)
    assert math.isclose(peer_max_scales(workload, profile)["li_dai_peng"], expected, rel_tol=1e-12)


def test_real_gpu_presets_saturate_near_paper_range():
    # docs/theory.md section 7: the paper's p512d20 experiments saturate near 19-23 requests/s.
    for name in ("a100-80gb-llama-3-8b", "a100-80gb-llama-2-7b"):
        rate = max_stable_scale(preset_workload("p512d20"), preset_profile(name)).max_rate_per_s
        assert 18 < rate < 32
