"""Vidur's execution-time predictor (timing kind ``vidur-predictor``): hand-solved lookups, the
simulator and the fluid core on it, the shipped preset's KV-save lookup, and bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.errors import InputError
from fluidopt.fluid.fixed_point import fluid_batch
from fluidopt.profile import GPUProfile
from fluidopt.sim import DeterministicArrivals, FCFSPolicy, SarathiPolicy, simulate
from fluidopt.timing.fit.predictor import pooled_kv_save_table, vidur_attention_grid
from fluidopt.timing.predictor import VidurPredictorTiming, nearest_lookup, round_up

PRESET = "a100-80gb-llama-3-8b-vidur-predictor"


def _toy_timing(**overrides) -> VidurPredictorTiming:
    """Small tables whose every value is easy to add up by hand (seconds)."""
    values = {
        "layers": 1,
        "compute_tokens": (8.0, 16.0, 24.0, 512.0),
        "compute_s": (0.010, 0.011, 0.012, 0.050),
        "save_tokens": (1.0, 2.0, 16.0, 512.0),
        "save_s": (0.0001, 0.0002, 0.0016, 0.0100),
        "prefill_attention": (0.001, 1e-5, 1e-8, 1e-7),
        "decode_attention": (0.0005, 1e-5, 1e-7, 0.0, 0.0),
    }
    values.update(overrides)
    return VidurPredictorTiming(**values)


def test_nearest_lookup_and_rounding_by_hand():
    keys, values = np.array([4.0, 8.0, 16.0]), np.array([1.0, 2.0, 3.0])
    assert nearest_lookup(5, keys, values) == 1.0
    assert nearest_lookup(6, keys, values) == 1.0  # a tie goes to the lower key (a split at the midpoint)
    assert nearest_lookup(7, keys, values) == 2.0
    assert nearest_lookup(100, keys, values) == 3.0 and nearest_lookup(0, keys, values) == 1.0
    assert round_up(1, 64) == 64 and round_up(64, 64) == 64 and round_up(65, 64) == 128 and round_up(0, 64) == 0


def test_pooled_table_by_hand():
    tokens, means = pooled_kv_save_table(np.array([2, 2]), np.array([1.0, 3.0]), np.array([2, 1]), np.array([0.0, 5.0]))
    assert tokens.tolist() == [1.0, 2.0]
    assert means.tolist() == [5.0, pytest.approx(4.0 / 3.0)]


def test_batch_time_by_hand():
    t = _toy_timing()
    # A decode batch of 3 requests with 100, 101, 130 processed tokens: 3 new tokens, rounded to 8
    # for the compute lookup (0.010), KV save at exactly 3 tokens (nearest key 2: 0.0002), decode
    # attention at B = 3 and ceil64(int(331 / 3)) = ceil64(110) = 128, times 1.1.
    decode = (0.0005 + 1e-5 * 3 + 1e-7 * 3 * 128) * 1.1
    assert t.batch_time([], [], [100, 101, 130]) == pytest.approx(0.010 + 0.0002 + decode, rel=1e-12)
    # Two prefill chunks (12 and 5 tokens, 70 and 0 cached) and one decode at 40 processed tokens:
    # 18 new tokens -> rounded 24 (0.012); save at 18 -> key 16 (0.0016); prefill attention keyed
    # (ceil64(70) + ceil64(0), round(sqrt(144 + 25))^2) = (128, 13^2), times 1.1 for two prefills;
    # decode attention of one request at ceil64(40) = 64, no overhead for a single decode.
    prefill = (0.001 + 1e-5 * 13 + 1e-8 * 13 * 128 + 1e-7 * 169) * 1.1
    single = 0.0005 + 1e-5 + 1e-7 * 64
    assert t.batch_time([12, 5], [70, 0], [40]) == pytest.approx(0.012 + 0.0016 + prefill + single, rel=1e-12)


def test_toml_round_trip_and_kernel_tables(tmp_path):
    profile = GPUProfile("toy-predictor", 10_000, (), "", {}, _toy_timing(), 16)
    path = tmp_path / "p.toml"
    fo.tomlio.write_toml(path, profile.to_dict())
    loaded = fo.load_profile(str(path))
    assert loaded.timing == profile.timing and loaded.timing_kind == "vidur-predictor"
    coef, table = loaded.timing.kernel_arrays()
    assert table[1, 17] == pytest.approx(0.012) and table[2, 17] == pytest.approx(0.0016)
    assert table[1, 0] == 0 and table[2, 0] == 0


def test_the_simulator_charges_the_predictor_exactly():
    """One request alone: its latency is the sum of the predictor's batch times, prefill then decodes."""
    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload("p512d20").with_total_rate(0.01)
    result = simulate(
        workload, profile, FCFSPolicy(), requests=1, arrivals=DeterministicArrivals(), rng=0, warmup_s=0, drain=True
    )
    expected = profile.batch_time([512], [0], []) + sum(profile.batch_time([], [], [512 + s - 1]) for s in range(1, 21))
    assert result.completed_requests == 1
    assert result.mean_latency_s == pytest.approx(expected, rel=1e-9)


def test_compiled_and_plain_python_agree_on_the_predictor():
    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload("mix-p512d20-p512d50").with_total_rate(15)
    runs = [
        simulate(workload, profile, SarathiPolicy(), requests=600, rng=3, compiled=compiled, conventions="vidur")
        for compiled in (True, False)
    ]
    assert runs[0].mean_latency_s == runs[1].mean_latency_s and runs[0].iterations == runs[1].iterations


def test_fluid_fixed_point_under_the_predictor():
    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload("p512d20").with_total_rate(15)
    eq = fo.equilibrium(workload, profile)
    batch = fluid_batch(workload, profile)
    assert eq.stable and eq.method == "fixed-point"
    assert batch.iteration_time(profile, eq.iteration_time_s) == pytest.approx(eq.iteration_time_s, rel=1e-6)
    limit = fo.max_stable_scale(workload, profile)
    assert 1 < limit.max_scale < math.inf


def test_simulated_throughput_matches_the_fluid_benchmark_under_the_predictor():
    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload("p512d20").with_total_rate(12)
    result = simulate(workload, profile, SarathiPolicy(), requests=20_000, rng=5)
    assert result.status == "ok"
    assert result.throughput_tokens_per_s == pytest.approx(workload.decode_token_rate, rel=0.03)


def test_the_shipped_lookup_charges_a_512_token_batch_for_its_prefill_rows():
    """The KV-save key pools prefill chunks and decode batches: 512 holds both, 504 and 508 decodes only."""
    timing = fo.preset_profile(PRESET).timing
    at = {t: timing.kv_save_time(t) for t in (488, 496, 504, 508, 512)}
    decode_only = [at[t] for t in (488, 496, 504, 508)]
    assert at[508] == at[504] and max(decode_only) < 1.05 * min(decode_only)
    assert at[512] > 5 * at[508]
    # The measured model charges the save by what the batch writes: no jump between 508 and 512.
    measured = fo.preset_profile("a100-80gb-llama-3-8b-vidur").timing
    ratio = measured.prefill_kv_save_time(492, 0) / measured.prefill_kv_save_time(488, 0)
    assert 1 < ratio < 1.02


def test_grid_reading_matches_the_profile_size():
    chunk, kv, batch = vidur_attention_grid()
    assert np.all(kv < 16_384) and np.all(chunk >= 32)
    # The shared README: "about 27,000 rows"; the grid read off its row order is of that size.
    assert 20_000 < chunk.size + batch.size < 30_000


def test_a_predictor_profile_needs_prefill_and_decode_rows(tmp_path, shared_data):
    from fluidopt.hardware import gpu_spec, model_shape
    from fluidopt.timing.fit.predictor import fit_vidur_predictor_profile

    folder = shared_data / "profiles" / "vidur" / "a100" / "Meta-Llama-3-8B"
    sample = (folder / "attention-sample.csv").read_text(encoding="utf-8").splitlines()
    no_decode = tmp_path / "no-decode.csv"
    no_decode.write_text("\n".join([sample[0]] + [r for r in sample[1:] if not r.startswith("D,")]) + "\n")
    with pytest.raises(InputError, match=r"no-decode\.csv.*decode rows"):
        fit_vidur_predictor_profile(
            folder / "mlp.csv", no_decode, gpu_spec("a100-80gb"), model_shape("llama-3-8b"), "x"
        )
    no_prefill = tmp_path / "no-prefill.csv"
    no_prefill.write_text("\n".join([sample[0]] + [r for r in sample[1:] if r.startswith("D,")]) + "\n")
    with pytest.raises(InputError, match=r"no-prefill\.csv.*prefill rows"):
        fit_vidur_predictor_profile(
            folder / "mlp.csv", no_prefill, gpu_spec("a100-80gb"), model_shape("llama-3-8b"), "x"
        )


def test_the_preset_is_what_the_build_script_makes_from_the_shared_rows(shared_data):
    from fluidopt.hardware import gpu_spec, model_shape
    from fluidopt.timing.fit.predictor import fit_vidur_predictor_profile

    folder = shared_data / "profiles" / "vidur" / "a100" / "Meta-Llama-3-8B"
    profile, quality = fit_vidur_predictor_profile(
        folder / "mlp.csv", folder / "attention-sample.csv", gpu_spec("a100-80gb"), model_shape("llama-3-8b"), PRESET
    )
    preset = fo.preset_profile(PRESET)
    assert profile.kv_capacity_tokens == preset.kv_capacity_tokens == 479_232
    np.testing.assert_allclose(profile.timing.save_s, preset.timing.save_s, rtol=1e-9)
    np.testing.assert_allclose(profile.timing.compute_s, preset.timing.compute_s, rtol=1e-9)
    # The non-attention lookup reproduces its rows (rounding to 8 only moves the odd counts 1, 2, 4).
    assert quality["non_attention"].mape < 0.005
    # The pooled KV-save table is far from the decode rows it pools: the artefact, not a fitting error.
    assert quality["kv_save_decode_rows"].mape > 1.0


@pytest.mark.parametrize(
    "mutation, field",
    [
        (lambda t: t["non_attention"].pop("seconds"), "non_attention.seconds"),
        (lambda t: t["kv_cache_save"].update(tokens=[3, 2, 1], seconds=[1, 1, 1]), "kv_cache_save.tokens"),
        (lambda t: t.update(kv_granularity=0), "kv_granularity"),
        (lambda t: t.update(colour=1), "colour"),
        (lambda t: t["decode_attention"].pop("base_s"), "decode_attention.base_s"),
    ],
)
def test_malformed_predictor_tables_name_the_field(mutation, field):
    data = fo.preset_profile(PRESET).to_dict()
    mutation(data["iteration_time"])
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        GPUProfile.from_dict(data)


def test_the_lp_methods_are_refused_under_the_step_function_predictor():
    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload("p512d20")
    with pytest.raises(InputError, match="step function"):
        fo.equilibrium(workload, profile, method="lp")
    with pytest.raises(InputError, match="step function"):
        fo.max_stable_scale(workload, profile, method="lp")


@pytest.mark.parametrize("workload_name", ["p512d20", "mix-p512d20-p512d50"])
def test_the_stability_limit_is_where_the_fixed_point_stops(workload_name):
    """Bisection scales the per-unit batch, prefill keys included: the limit agrees with direct fixed points."""
    from fluidopt.fluid.fixed_point import solve_fixed_point

    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload(workload_name)
    limit = fo.max_stable_scale(workload, profile).max_rate_per_s
    assert solve_fixed_point(workload.with_total_rate(0.99 * limit), profile).stable
    assert not solve_fixed_point(workload.with_total_rate(1.01 * limit), profile).stable


def test_every_rate_weighted_field_of_the_fluid_batch_is_scaled_and_combined():
    """Scaling the batch by theta, or combining unit batches with weights, scales every rate-weighted total."""
    from dataclasses import fields

    from fluidopt.fluid.fixed_point import LINEAR_FIELDS, FluidBatch

    per_class = {"prefill_per_class", "stages_per_class", "terms"}
    scalar = {f.name for f in fields(FluidBatch) if f.name not in per_class}
    assert set(LINEAR_FIELDS) == scalar and len(LINEAR_FIELDS) == len(scalar)
    profile = fo.preset_profile(PRESET)
    workload = fo.preset_workload("mix-p512d20-p512d50").with_total_rate(10)
    batch = fluid_batch(workload, profile, chunk_tokens=256)
    assert batch.terms.size == 3 and np.all(batch.terms > 0)
    scaled = batch.scaled(2.5)
    for name in LINEAR_FIELDS:
        assert getattr(scaled, name) == pytest.approx(2.5 * getattr(batch, name))
    np.testing.assert_allclose(scaled.terms, 2.5 * batch.terms)
    units = [
        fluid_batch(fo.Workload(c.name, (replace(c, rate_per_s=1.0),)), profile, chunk_tokens=256)
        for c in workload.classes
    ]
    combined = FluidBatch.combine(units, workload.rates)
    for name in LINEAR_FIELDS:
        assert getattr(combined, name) == pytest.approx(getattr(batch, name))
    np.testing.assert_allclose(combined.terms, batch.terms)
