"""The timing interface: every registered kind answers the simulator, the fluid core and the LP alike."""

from __future__ import annotations

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.errors import InputError
from fluidopt.fluid.fixed_point import fluid_batch
from fluidopt.timing import TimingModel, timing_from_dict, timing_kinds
from fluidopt.timing.registry import kind_index

PRESETS = {
    "affine": "a100-80gb-llama-3-8b",
    "measured": "a100-80gb-llama-3-8b-vidur",
    "vidur-predictor": "a100-80gb-llama-3-8b-vidur-predictor",
    "roofline": "h100-80gb-mixtral-8x7b-tp2-roofline",
    "engine-grid": "synthetic engine grid",  # no shipped preset carries a measured grid: built below
}


def synthetic_grid_profile() -> fo.GPUProfile:
    """An engine-grid profile on a small synthetic grid (attention ~ pairs and KV reads, non-attention affine)."""
    from fluidopt.timing.grid import GridTiming

    axes = ((0.0, 16.0, 256.0, 2048.0), (0.0, 512.0, 4096.0), (0.0, 1.0, 16.0, 128.0), (0.0, 256.0, 2048.0, 8192.0))
    grid = np.zeros([len(a) for a in axes])
    for index in np.ndindex(grid.shape):
        chunk, cached, decodes, mean = (axes[d][i] for d, i in enumerate(index))
        grid[index] = 2e-5 + 1e-10 * chunk * (cached + chunk / 2) + 2e-9 * decodes * mean + 1e-8 * cached
    knots = (1.0, 64.0, 512.0, 2048.0)
    timing = GridTiming(
        layers=32,
        knots_tokens=knots,
        non_attention_s=(0.01, 0.011, 0.03, 0.1),
        per_sequence_s=(0.001, 0.0012, 0.002, 0.005),
        axes=axes,
        attention_s=tuple(grid.reshape(-1)),
    )
    return fo.GPUProfile("synthetic-grid", 100_000, timing=timing, block_tokens=16)


def profile_of(kind: str) -> fo.GPUProfile:
    return synthetic_grid_profile() if kind == "engine-grid" else fo.preset_profile(PRESETS[kind])


def test_every_registered_kind_has_a_preset_here():
    assert set(timing_kinds()) == set(PRESETS)


@pytest.mark.parametrize("kind", sorted(PRESETS))
def test_a_kind_implements_the_protocol_and_round_trips(kind):
    timing = profile_of(kind).timing
    assert isinstance(timing, TimingModel) and timing.kind == kind
    assert timing_kinds()[kind_index(timing)] == kind
    assert timing_from_dict(timing.to_dict(), "iteration_time") == timing


@pytest.mark.parametrize("kind", sorted(PRESETS))
@pytest.mark.parametrize(("prompt", "outputs", "chunk"), [(512, 20, None), (300, 7, 128), (1000, 40, 256)])
def test_the_fluid_form_equals_the_step_formula_on_a_whole_batch(kind, prompt, outputs, chunk):
    """At one request per stage (rate 1, x = 1) the fluid batch is a concrete batch: both forms agree."""
    profile = profile_of(kind)
    workload = fo.Workload("w", (fo.RequestClass("a", prompt, outputs, 1.0),))
    batch = fluid_batch(workload, profile, chunk_tokens=chunk)
    size = chunk or prompt
    chunks = [min(size, prompt - start) for start in range(0, prompt, size)]
    cached = [i * size for i in range(len(chunks))]
    decodes = [prompt + s - 1 for s in range(1, outputs + 1)]
    step = profile.timing.batch_time(chunks, cached, decodes)
    assert profile.timing.fluid_time(batch, 1.0) == pytest.approx(step, rel=1e-12)


@pytest.mark.parametrize("kind", sorted(PRESETS))
def test_python_step_time_is_the_simulators(kind):
    """A lone request's simulated latency is the sum of the Python step times of its steps."""
    profile = profile_of(kind)
    workload = fo.Workload("w", (fo.RequestClass("a", 200, 6, 0.01),))
    result = fo_simulate(workload, profile)
    expected = profile.batch_time([200], [0], []) + sum(profile.batch_time([], [], [200 + s - 1]) for s in range(1, 7))
    assert result.mean_latency_s == pytest.approx(expected, rel=1e-12)


def fo_simulate(workload, profile):
    from fluidopt.sim import FCFSPolicy, simulate

    return simulate(workload, profile, FCFSPolicy(), requests=3, rng=0, drain=True, warmup_s=0.0)


def test_lp_capabilities_come_from_the_timing():
    assert fo.preset_profile(PRESETS["affine"]).timing.exact_affine
    measured = fo.preset_profile(PRESETS["measured"])
    assert not measured.timing.exact_affine and not measured.timing.lp_refusal
    predictor = fo.preset_profile(PRESETS["vidur-predictor"])
    workload = fo.preset_workload("p512d20").with_total_rate(10)
    with pytest.raises(InputError, match="step function"):
        fo.equilibrium(workload, predictor, method="lp")


def test_a_table_mixing_two_kinds_is_refused_naming_the_keys():
    data = fo.preset_profile(PRESETS["measured"]).timing.to_dict()
    data["base_s"] = 0.01
    with pytest.raises(InputError, match=r"base_s.*mixes incompatible timing kinds"):
        timing_from_dict(data, "iteration_time")
    with pytest.raises(InputError, match="iteration_time.kind"):
        timing_from_dict({"kind": "no-such-kind"}, "iteration_time")


def test_the_affine_pieces_of_an_affine_timing_are_its_own():
    profile = fo.preset_profile(PRESETS["affine"])
    np.testing.assert_array_equal(profile.coefficient_matrix(), profile.timing.coefficient_matrix())
