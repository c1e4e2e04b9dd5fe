import math

import numpy as np
import pytest
from scipy.optimize import brentq

from fluidopt.errors import InputError
from fluidopt.fluid import equilibrium
from fluidopt.profile import linear_profile, preset_profile
from fluidopt.sim import NestedWaitPolicy, WaitPolicy
from fluidopt.thresholds import (
    ThresholdConditionWarning,
    check_wait_conditions,
    choose_cut_points,
    cramer_lundberg_theta,
    kappa_interval,
    make_segments,
    memory_against_segments,
    nested_wait_thresholds,
    read_thresholds,
    theta_lower_bound,
    thresholds_document,
    wait_thresholds,
    write_thresholds,
)
from fluidopt.workload import RequestClass, Workload, preset_workload


def test_kappa_interval_linear_hand_solved():
    workload, profile = preset_workload("p512d20"), preset_profile("paper-linear")
    interval = kappa_interval(workload, profile)
    d0, d1 = 0.0103, 3.9e-7
    a = workload.kv_mass_rate
    assert math.isclose(interval.low, d0 / (1 - d1 * a), rel_tol=1e-12)
    assert math.isclose(interval.high, 137_000 / a, rel_tol=1e-12)


def test_toy_thresholds_are_the_boundary_case():
    design = wait_thresholds(preset_workload("toy"), preset_profile("toy"))
    assert design.thresholds == (4,)
    assert design.case == "boundary" and design.conditions.all_hold
    assert design.memory_base_tokens == 12 and math.isclose(design.iteration_time_s, 1.0)


def test_slack_thresholds_meet_conditions_strictly():
    workload, profile = preset_workload("mix-p512d20-p512d50"), preset_profile("paper-linear")
    design = wait_thresholds(workload, profile, slack=0.5)
    assert design.conditions.all_hold and design.case == "slack"
    eq = equilibrium(workload, profile)
    assert eq.memory_tokens <= design.memory_base_tokens <= profile.kv_capacity_tokens


def test_violated_conditions_are_named():
    report = check_wait_conditions(preset_workload("toy"), preset_profile("toy"), [2])
    names = [c.name for c in report.violated]
    assert "dT(n) <= n_j / lambda_j [hello]" in names and "M* <= M^pi" in names
    with pytest.warns(ThresholdConditionWarning) as record:
        report.enforce(strict=False)
    assert any("M* <= M^pi" in str(w.message) for w in record)
    with pytest.raises(InputError, match="violates"):
        report.enforce(strict=True)


def _theta_by_bisection(n_prev, n_next, p):
    # independent: solve E[exp(theta (Binomial(n_prev, p) - n_next))] = 1 from the pmf
    from scipy.stats import binom

    k = np.arange(n_prev + 1)
    pmf = binom.pmf(k, n_prev, p)
    return brentq(lambda t: float(pmf @ np.exp(t * (k - n_next))) - 1.0, 1e-9, 50.0)


@pytest.mark.parametrize(("n_prev", "n_next", "p"), [(10, 5, 0.3), (2, 1, 0.3), (40, 37, 0.9), (7, 3, 0.05)])
def test_theta_agrees_with_independent_computation_and_bound(n_prev, n_next, p):
    theta = cramer_lundberg_theta(n_prev, n_next, p)
    assert math.isclose(theta, _theta_by_bisection(n_prev, n_next, p), rel_tol=1e-8)
    assert theta >= theta_lower_bound(n_prev, n_next, p)


def test_theta_depends_only_on_ratio_and_p():
    assert math.isclose(cramer_lundberg_theta(10, 5, 0.3), cramer_lundberg_theta(20, 10, 0.3), rel_tol=1e-10)
    assert math.isclose(cramer_lundberg_theta(6, 4, 0.5), cramer_lundberg_theta(30, 20, 0.5), rel_tol=1e-10)
    with pytest.raises(InputError, match="n_k"):
        cramer_lundberg_theta(5, 5, 0.3)
    with pytest.raises(InputError, match="n_k"):
        cramer_lundberg_theta(10, 2, 0.3)


def test_segment_identity_gives_kv_mass_rate():
    # sum_k Lambda_k (l + sbar_k) delta_k = a(lambda) for full segments and a common prefill
    workload = preset_workload("lmsys-like")
    segments = make_segments(workload, range(1, workload.num_classes + 1))
    assert math.isclose(
        float(np.asarray(segments.rates) @ segments.kv_per_unit()), workload.kv_mass_rate, rel_tol=1e-12
    )
    np.testing.assert_allclose(
        segments.continuation, [segments.rates[k] / segments.rates[k - 1] for k in range(1, segments.count)]
    )


def test_nested_design_for_the_paper_mix():
    workload, profile = preset_workload("mix-p512d20-p512d50"), preset_profile("a100-80gb-llama-3-8b")
    design = nested_wait_thresholds(workload, profile)
    assert design.segments.boundaries == (20, 50)
    assert math.isclose(design.segments.continuation[0], 0.3)
    n1, n2 = design.thresholds
    assert 0.3 < n2 / n1 < 1 and design.conditions.all_hold
    assert design.memory_required_tokens > design.memory_base_tokens
    hand = 512 + 20 + 1  # KV charged to a request waiting at the boundary (about to run stage 21)
    log_term = math.log(2 * (1 + 600 / profile.coefficient_matrix()[:, 0].max()) / 0.01)
    assert math.isclose(design.memory_buffer_tokens, hand * log_term / design.theta[0], rel_tol=1e-12)
    assert math.isclose(design.memory_carry_over_tokens, hand * n2, rel_tol=1e-12)


def test_buffer_grows_logarithmically_with_horizon_and_confidence():
    workload, profile = preset_workload("mix-p512d20-p512d50"), preset_profile("paper-linear")
    short = nested_wait_thresholds(workload, profile, horizon_s=100, delta=0.1)
    long = nested_wait_thresholds(workload, profile, horizon_s=10_000, delta=0.001)
    assert long.memory_buffer_tokens > short.memory_buffer_tokens
    assert long.memory_base_tokens == short.memory_base_tokens


def test_cut_point_methods():
    workload = preset_workload("lmsys-like")
    for method in ("equal-width", "equal-mass"):
        cuts = choose_cut_points(workload, 3, method)
        assert len(cuts) == 3 and cuts[-1] == 6 and list(cuts) == sorted(set(cuts))
    profile = preset_profile("paper-linear")
    best = choose_cut_points(workload, 3, "optimal", profile=profile)
    best_memory = nested_wait_thresholds(workload, profile, cut_points=best).memory_required_tokens
    for method in ("equal-width", "equal-mass"):
        try:
            other = nested_wait_thresholds(workload, profile, cut_points=choose_cut_points(workload, 3, method))
        except InputError:  # no thresholds exist for these cuts
            continue
        assert best_memory <= other.memory_required_tokens


def test_required_memory_is_u_shaped_in_segments():
    curve = memory_against_segments(preset_workload("lmsys-like"), preset_profile("paper-linear"))
    required = [curve[L].memory_required_tokens if curve[L] else math.inf for L in sorted(curve)]
    best = int(np.argmin(required))
    assert 0 < best < len(required) - 1  # interior minimum
    assert all(required[i] >= required[i + 1] for i in range(best))  # non-increasing before it
    assert required[-1] > required[best]


def test_thresholds_file_round_trip(tmp_path):
    workload, profile = preset_workload("mix-p512d20-p512d50"), preset_profile("a100-80gb-llama-3-8b")
    wait = wait_thresholds(workload, profile)
    nested = nested_wait_thresholds(workload, profile)
    for name, design, suffix in (("w", wait, ".toml"), ("n", nested, ".json")):
        path = write_thresholds(tmp_path / f"{name}{suffix}", thresholds_document(design, workload, profile))
        policy = read_thresholds(path, workload)
        assert policy.thresholds == design.thresholds
    assert isinstance(read_thresholds(tmp_path / "w.toml"), WaitPolicy)
    assert isinstance(read_thresholds(tmp_path / "n.json"), NestedWaitPolicy)
    bad = tmp_path / "bad.toml"
    bad.write_text('policy = "wait"\n')
    with pytest.raises(InputError, match="thresholds"):
        read_thresholds(bad)
    with pytest.raises(InputError, match="classes"):
        read_thresholds(tmp_path / "w.toml", preset_workload("p512d20"))


def test_unstable_load_reports_empty_interval():
    workload = preset_workload("toy").with_total_rate(6)
    design = wait_thresholds(workload, preset_profile("toy"))
    assert design.interval.empty and not design.conditions.all_hold


def test_nested_needs_positive_rate_and_valid_inputs():
    profile = linear_profile("lin", 10**6, 0.01, 1e-6)
    workload = Workload("w", (RequestClass("a", 10, 5, 1.0), RequestClass("b", 10, 9, 1.0)))
    with pytest.raises(InputError, match="delta"):
        nested_wait_thresholds(workload, profile, delta=2)
    with pytest.raises(InputError, match="rate"):
        nested_wait_thresholds(workload.with_total_rate(0), profile)
    with pytest.raises(InputError, match="cut_points"):
        make_segments(workload, (2, 1))
