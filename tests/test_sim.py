import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import REQUIRED_SUMMARY_KEYS, confidence_interval, replicate

from fluidopt.errors import InputError
from fluidopt.profile import AffinePiece, GPUProfile, linear_profile, preset_profile
from fluidopt.sim import (
    DeterministicArrivals,
    FCFSPolicy,
    InitialRequests,
    MMPPArrivals,
    NestedWaitPolicy,
    SarathiPolicy,
    TraceArrivals,
    VLLMPolicy,
    WaitPolicy,
    make_policy,
    simulate,
)
from fluidopt.thresholds import wait_thresholds
from fluidopt.thresholds.wait import batch_time
from fluidopt.trace import read_trace
from fluidopt.workload import RequestClass, Workload, preset_workload

P512 = preset_workload("p512d20")
A100 = preset_profile("a100-80gb-llama-2-7b")


def all_policies(workload, profile):
    wait = wait_thresholds(workload, profile).thresholds
    return [
        WaitPolicy(wait),
        WaitPolicy(wait, gate=False),
        NestedWaitPolicy((int(workload.decode.max()),), (max(wait),)),
        FCFSPolicy(),
        VLLMPolicy(),
        SarathiPolicy(),
    ]


@pytest.mark.parametrize("drain", [False, True])
@pytest.mark.parametrize("rate", [10.0, 30.0])
def test_conservation_and_memory_for_every_policy(rate, drain):
    workload = P512.with_total_rate(rate)
    for policy in all_policies(P512, A100):
        result = simulate(workload, A100, policy, requests=3000, rng=7, drain=drain)
        assert result.arrived_requests == 3000
        assert result.arrived_requests == result.completed_requests + result.unfinished_requests
        assert result.unfinished_requests == result.unfinished_waiting + result.unfinished_resident
        if drain:
            assert result.unfinished_requests == 0
        assert result.peak_memory_tokens <= A100.kv_capacity_tokens
        assert result.overflow_iterations == 0


def test_baselines_exceed_memory_only_through_counted_evictions():
    small = A100.with_capacity(1560)  # three prompts fit, their growth does not
    workload = P512.with_total_rate(20)
    for policy in (FCFSPolicy(), VLLMPolicy(), SarathiPolicy()):
        result = simulate(workload, small, policy, requests=3000, rng=1, drain=True)
        assert result.peak_memory_tokens <= small.kv_capacity_tokens
        assert result.evictions > 0 and result.wasted_tokens > 0
        assert result.overflow_iterations == 0
        assert result.unfinished_requests == 0


def test_recompute_eviction_keeps_progress():
    small = A100.with_capacity(1560)
    workload = P512.with_total_rate(20)
    restart = simulate(workload, small, VLLMPolicy(), requests=2000, rng=2, eviction="restart")
    recompute = simulate(workload, small, VLLMPolicy(), requests=2000, rng=2, eviction="recompute")
    assert recompute.evictions > 0 and recompute.recomputed_tokens > 0 and recompute.wasted_tokens == 0
    assert restart.wasted_tokens > 0 and restart.recomputed_tokens == 0
    assert recompute.settings["eviction"] == "recompute" and recompute.eviction == "recompute"


@settings(max_examples=25)
@given(
    rates=st.lists(st.floats(0.5, 20.0), min_size=1, max_size=3),
    decode=st.lists(st.integers(1, 30), min_size=3, max_size=3),
    thresholds=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    gate=st.booleans(),
    hold=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_wait_never_exceeds_stage_caps_and_never_evicts(rates, decode, thresholds, gate, hold, seed):
    classes = tuple(RequestClass(f"c{j}", 16 + 8 * j, decode[j], rate) for j, rate in enumerate(rates))
    workload = Workload("w", classes)
    n = tuple(thresholds[: len(rates)])
    profile = linear_profile("lin", 10**7, 0.01, 1e-5)
    policy = WaitPolicy(n, gate=gate, hold=hold)
    result = simulate(workload, profile, policy, requests=400, rng=seed, drain=True)
    assert result.max_stage_excess <= 0
    assert result.evictions == 0
    assert result.peak_memory_tokens <= sum(k * c.kv_mass_tokens for k, c in zip(n, classes))
    assert result.unfinished_requests == 0


def test_toy_wait_completes_exactly_four_per_iteration():
    result = simulate(
        preset_workload("toy"),
        preset_profile("toy"),
        WaitPolicy((4,)),
        requests=400,
        arrivals=DeterministicArrivals(),
        record_series=True,
        warmup_s=0,
    )
    completions = result.series["completions"][2:]
    durations = (result.series["end_s"] - result.series["start_s"])[2:]
    assert np.all(completions == 4)
    np.testing.assert_allclose(durations, 1.0)
    assert result.peak_memory_tokens == 12 and result.evictions == 0


@pytest.mark.parametrize("arrivals", [DeterministicArrivals(), None])
def test_toy_fcfs_counterexample_loses_throughput(arrivals):
    kwargs = {} if arrivals is None else {"arrivals": arrivals}
    result = simulate(
        preset_workload("toy"),
        preset_profile("toy"),
        FCFSPolicy(),
        requests=20_000,
        rng=3,
        record_series=True,
        initial=[InitialRequests(0, 0, 6), InitialRequests(0, 1, 3)],
        **kwargs,
    )
    per_iteration = result.series["completions"].mean()
    assert 2.8 <= per_iteration <= 3.6  # docs/theory.md section 5: about 3 to 3.5 instead of 4
    assert result.evictions > 0
    assert result.completed_per_s < 3.7  # below the arrival rate 4: the load is lost


def test_stable_throughput_matches_fluid_benchmark_within_confidence():
    workload = P512.with_total_rate(20)
    policy = WaitPolicy(wait_thresholds(workload, A100).thresholds)
    runs = replicate(workload, A100, policy, seeds=8, requests=20_000)
    throughput = [r.throughput_tokens_per_s for r in runs]
    low, high = confidence_interval(throughput)
    edge = (
        max(r.mean_latency_s for r in runs)
        * workload.decode_token_rate
        / min(r.window_end_s - r.window_start_s for r in runs)
    )
    benchmark = workload.decode_token_rate
    assert low - edge <= benchmark <= high + edge
    assert all(r.evictions == 0 for r in runs)


def test_wait_memory_approaches_m_pi_at_the_boundary():
    # Toy at the boundary (n = n* = 4, M^pi = C = 12): batches are full almost always.
    runs = replicate(preset_workload("toy"), preset_profile("toy"), WaitPolicy((4,)), seeds=6, requests=20_000)
    memory = [r.mean_memory_tokens for r in runs]
    low, _ = confidence_interval(memory)
    assert 0.9 * 12 <= low and max(memory) <= 12
    assert all(r.peak_memory_tokens <= 12 for r in runs)


def test_littles_law():
    workload = P512.with_total_rate(22)
    for policy in (WaitPolicy(wait_thresholds(workload, A100).thresholds), SarathiPolicy()):
        result = simulate(workload, A100, policy, requests=50_000, rng=11)
        arrival_rate = result.measured_arrivals / (result.window_end_s - result.window_start_s)
        assert math.isclose(result.mean_in_system, arrival_rate * result.mean_latency_s, rel_tol=0.05)


def test_overload_queue_grows_at_arrival_minus_fluid_service_rate():
    workload = P512.with_total_rate(40)
    n = (1,)
    service = n[0] / batch_time(workload, A100, n)  # full batches back to back: n per dT(n)
    result = simulate(workload, A100, WaitPolicy(n), horizon_s=200, rng=5, record_series=True)
    times, waiting = result.series["end_s"], result.series["waiting"]
    late = times > 50
    slope = np.polyfit(times[late], waiting[late], 1)[0]
    assert math.isclose(slope, 40 - service, rel_tol=0.1)
    assert math.isclose(result.completed_per_s, service, rel_tol=0.02)


def test_common_random_numbers_across_policies():
    workload = preset_workload("mix-p512d20-p512d50")
    arrivals = []
    for policy in all_policies(workload, A100):
        result = simulate(workload, A100, policy, requests=500, rng=99, drain=True, record_requests=True)
        order = np.argsort(result.requests["id"])
        arrivals.append((result.requests["arrival_s"][order], result.requests["class"][order]))
    for times, classes in arrivals[1:]:
        np.testing.assert_array_equal(times, arrivals[0][0])
        np.testing.assert_array_equal(classes, arrivals[0][1])


def test_same_seed_same_result_and_different_seed_differs():
    a = simulate(P512, A100, SarathiPolicy(), requests=2000, rng=4)
    b = simulate(P512, A100, SarathiPolicy(), requests=2000, rng=4)
    c = simulate(P512, A100, SarathiPolicy(), requests=2000, rng=5)
    assert a.to_dict() | {"wall_time_s": 0} == b.to_dict() | {"wall_time_s": 0}
    assert a.mean_latency_s != c.mean_latency_s


def test_zero_rate_gives_empty_result():
    result = simulate(P512.with_total_rate(0), A100, SarathiPolicy(), horizon_s=100)
    assert result.arrived_requests == 0 and result.completed_requests == 0 and result.iterations == 0
    assert math.isnan(result.mean_latency_s) and result.to_dict()["mean_latency_s"] is None


def test_bad_input():
    with pytest.raises(InputError, match="kv_capacity_tokens"):
        simulate(P512, A100.with_capacity(100), SarathiPolicy(), requests=10)
    with pytest.raises(InputError, match="unknown policy; choose one of wait, wait-nohold, wait-nowait"):
        make_policy("edf")
    with pytest.raises(InputError, match="requests"):
        simulate(P512, A100, SarathiPolicy())
    with pytest.raises(InputError, match="eviction"):
        simulate(P512, A100, SarathiPolicy(), requests=10, eviction="drop")
    with pytest.raises(InputError, match="thresholds"):
        simulate(P512, A100, WaitPolicy((1, 2)), requests=10)
    with pytest.raises(InputError, match="boundaries"):
        simulate(P512, A100, NestedWaitPolicy((10,), (1,)), requests=10)
    with pytest.raises(InputError, match="watermark"):
        simulate(P512, A100, VLLMPolicy(watermark=1.5), requests=10)


def test_mmpp_long_run_rate():
    process = MMPPArrivals((2.0, 0.25), (0.05, 0.05))
    result = simulate(P512.with_total_rate(10), A100, SarathiPolicy(), horizon_s=4000, rng=8, arrivals=process)
    expected = 10 * process.mean_multiplier() * 4000
    assert math.isclose(result.arrived_requests, expected, rel_tol=0.1)


def test_trace_replay(shared_data):
    trace = read_trace(shared_data / "traces" / "splitwise_code.csv")
    h100 = preset_profile("h100-80gb-llama-3-8b")
    from fluidopt.workload import workload_from_trace

    workload = workload_from_trace(trace)
    result = simulate(
        workload,
        h100,
        SarathiPolicy(),
        requests=trace.num_requests,
        arrivals=TraceArrivals(trace),
        drain=True,
        record_requests=True,
    )
    assert result.arrived_requests == trace.num_requests and result.unfinished_requests == 0
    order = np.argsort(result.requests["id"])
    np.testing.assert_allclose(result.requests["arrival_s"][order], trace.arrival_times_s)


def test_state_grows_with_requests_in_system_not_simulated():
    result = simulate(P512.with_total_rate(15), A100, WaitPolicy((1,)), requests=200_000, rng=0)
    assert result.state_slots <= 2048 and result.arrived_requests == 200_000


def test_json_keys():
    data = simulate(P512, A100, VLLMPolicy(), requests=500).to_dict()
    for key in REQUIRED_SUMMARY_KEYS:
        assert key in data


def test_multi_piece_profile_iteration_time_is_used():
    profile = GPUProfile("floor", 10**6, (AffinePiece(0.5, 0.0), AffinePiece(0.0, 0.0, 0.0, 0.0)))
    result = simulate(preset_workload("toy"), profile, FCFSPolicy(), requests=50, rng=0, record_series=True)
    np.testing.assert_allclose(result.series["end_s"] - result.series["start_s"], 0.5)


def test_wait_without_hold_keeps_decoding_when_the_gate_is_closed():
    workload = preset_workload("p512d1000").with_total_rate(2.0)
    held = simulate(workload, A100, WaitPolicy((1,)), requests=300, rng=1)
    flowing = simulate(workload, A100, WaitPolicy((1,), hold=False), requests=300, rng=1)
    # Held residents advance only when an arrival opens the gate: ~1000 stages x 0.5 s apart.
    assert held.completed_requests < 0.5 * flowing.completed_requests
    assert flowing.max_stage_excess <= 0 and flowing.evictions == 0


def test_nested_wait_at_fluid_memory_overflows_or_loses_throughput():
    # docs/theory.md section 5/6: with C = M* a policy blind to output lengths cannot keep up.
    pair = preset_workload("fcfs-counterexample")
    at_m_star = preset_profile("fcfs-counterexample")  # C = M* = 9
    policy = NestedWaitPolicy((1, 2), (3, 2))
    plain = simulate(pair, at_m_star, policy, horizon_s=2000, rng=3)
    assert plain.overflow_iterations > 0
    repaired = simulate(pair, at_m_star, NestedWaitPolicy((1, 2), (3, 2), repair=True), horizon_s=2000, rng=3)
    # Repair evicts boundary-queue requests instead of overflowing: overflowing iterations become
    # rare (they were the rule without it), and the price is evictions and lost throughput.
    plain_rate = plain.overflow_iterations / plain.iterations
    assert repaired.overflow_iterations / repaired.iterations < 0.1 * plain_rate
    assert repaired.evictions > 0 and repaired.throughput_gap > 0.05
    roomy = simulate(pair, at_m_star.with_capacity(200), policy, horizon_s=2000, rng=3)
    assert roomy.overflow_iterations == 0 and roomy.throughput_gap < 0.05


def test_nested_wait_without_hold_keeps_interior_stages_moving():
    mix = preset_workload("mix-p512d20-p512d50").with_total_rate(14)
    profile = preset_profile("a100-80gb-llama-3-8b")
    held = simulate(mix, profile, NestedWaitPolicy((20, 50), (2, 1)), requests=4000, rng=5, drain=True)
    flowing = simulate(mix, profile, NestedWaitPolicy((20, 50), (2, 1), hold=False), requests=4000, rng=5, drain=True)
    for result in (held, flowing):
        assert result.unfinished_requests == 0 and result.overflow_iterations == 0 and result.evictions == 0
    assert flowing.mean_latency_s < 0.5 * held.mean_latency_s


def test_results_say_when_they_overflow_livelock_or_are_fine():
    from fluidopt.status import STATUSES

    pair = preset_workload("fcfs-counterexample")
    at_m_star = preset_profile("fcfs-counterexample")
    plain = simulate(pair, at_m_star, NestedWaitPolicy((1, 2), (3, 2)), horizon_s=2000, rng=3)
    assert plain.status == "overflow" and not plain.success and "above C" in plain.message
    repaired = simulate(pair, at_m_star, NestedWaitPolicy((1, 2), (3, 2), repair=True), horizon_s=2000, rng=3)
    assert repaired.status in ("livelock", "starved") and "overflow" not in repaired.status
    fine = simulate(pair, at_m_star.with_capacity(200), NestedWaitPolicy((1, 2), (3, 2)), horizon_s=500, rng=3)
    assert fine.status == "ok" and fine.success
    for result in (plain, repaired, fine):
        assert result.status in STATUSES and result.to_dict()["status"] == result.status


def test_a_request_that_never_fits_in_blocks_is_refused_up_front():
    workload = preset_workload("p512d20")
    profile = preset_profile("a100-80gb-llama-2-7b").with_capacity(540)  # 532 tokens = 544 in 16-token blocks
    with pytest.raises(InputError, match="cannot hold one request at its peak in 16-token blocks"):
        simulate(workload, profile, VLLMPolicy(), requests=50)
    with pytest.raises(InputError, match="16-token blocks"):
        simulate(workload, profile, SarathiPolicy(), requests=50)
