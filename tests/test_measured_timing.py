"""Measured (attention-aware) timing: fits, the fixed-point equilibrium, Vidur conventions."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidopt as fo
from fluidopt.errors import InputError
from fluidopt.fluid.fixed_point import fluid_batch, max_stable_scale_bisection, solve_fixed_point
from fluidopt.hardware import gpu_spec, model_shape, vidur_kv_capacity_tokens
from fluidopt.profile import AffinePiece, GPUProfile
from fluidopt.sim import FCFSPolicy, SarathiPolicy, simulate
from fluidopt.timing.fit.attention import fit_vidur_measured_profile, read_attention_csv
from fluidopt.timing.fit.vidur_csv import read_vidur_mlp_csv
from fluidopt.workload import RequestClass, Workload

LLAMA3 = "profiles/vidur/a100/Meta-Llama-3-8B"
# Public Vidur attention.csv (A100, Meta-Llama-3-8B, FlashInfer; repository sw5sh/cs378-assignment3,
# data/profiling/compute/a100/meta-llama/Meta-Llama-3-8B/attention.csv): the decode row with batch 20
# and 512 cached tokens has median attn_decode 0.043 ms and attn_kv_cache_save 0.003 ms per layer.
DECODE_20_AT_512_MS_PER_LAYER = 0.043 + 0.003


@pytest.fixture(scope="module")
def vidur_preset() -> GPUProfile:
    return fo.preset_profile("a100-80gb-llama-3-8b-vidur")


def test_vidur_planner_reproduces_the_authors_block_count():
    # The paper's runs record 29,952 blocks of 16 tokens (shared/data/paper/README).
    capacity = vidur_kv_capacity_tokens(gpu_spec("a100-80gb"), model_shape("llama-3-8b"))
    assert capacity == 29_952 * 16
    assert fo.preset_profile("a100-80gb-llama-3-8b-vidur").kv_capacity_tokens == capacity


def test_component_fits_and_whole_batches_against_measurements(shared_data):
    root = shared_data / LLAMA3
    profile, quality = fit_vidur_measured_profile(
        root / "mlp.csv", root / "attention-sample.csv", gpu_spec("a100-80gb"), model_shape("llama-3-8b"), "x"
    )
    assert set(quality) == {
        "non_attention",
        "prefill_kv_save",
        "decode_kv_save",
        "prefill_attention",
        "decode_attention",
    }
    for fit in quality.values():
        assert fit.mape < 0.15 and fit.max_abs_pct_error >= fit.mape and fit.points > 100
    mlp = read_vidur_mlp_csv(root / "mlp.csv", 32)
    attention = read_attention_csv(root / "attention-sample.csv", 32)
    at = np.flatnonzero((attention.prefill_chunk == 512) & (attention.prefill_kv == 0))[0]
    measured = np.interp(512, mlp.tokens, mlp.time_s) + attention.prefill_s[at] + attention.prefill_save_s[at]
    predicted = profile.batch_time([512], [0], [])
    assert abs(predicted / measured - 1) < 0.10
    measured = np.interp(20, mlp.tokens, mlp.time_s) + 32 * DECODE_20_AT_512_MS_PER_LAYER / 1000
    predicted = profile.batch_time([], [], [512] * 20)
    assert abs(predicted / measured - 1) < 0.10


def test_preset_carries_fit_quality_and_provenance(vidur_preset):
    components = vidur_preset.fit["components"]
    assert {"mape", "max_abs_pct_error", "points", "model"} <= set(components["prefill_attention"])
    assert "attention-sample.csv" in vidur_preset.fit["source"]
    assert "No measured attention" in fo.preset_profile("a100-80gb-llama-3-8b").description


def test_measured_profile_round_trips_through_toml(vidur_preset, tmp_path):
    from fluidopt.tomlio import write_toml

    path = tmp_path / "m.toml"
    write_toml(path, vidur_preset.to_dict())
    again = fo.load_profile(str(path))
    assert again.timing == vidur_preset.timing
    assert again.batch_time([256], [256], [600] * 7) == vidur_preset.batch_time([256], [256], [600] * 7)


affine = st.tuples(st.floats(1e-3, 0.05), st.floats(1e-9, 1e-6), st.floats(0, 1e-4), st.floats(0, 1e-4)).map(
    lambda t: AffinePiece(*t)
)


@given(
    pieces=st.lists(affine, min_size=1, max_size=3),
    classes=st.lists(st.tuples(st.integers(1, 600), st.integers(1, 60), st.floats(0.1, 5)), min_size=1, max_size=3),
)
def test_fixed_point_equals_closed_form_on_affine_profiles(pieces, classes):
    workload = Workload("w", tuple(RequestClass(f"c{i}", l, d, r) for i, (l, d, r) in enumerate(classes)))
    profile = GPUProfile("p", 10**9, tuple(pieces))
    closed = fo.equilibrium(workload, profile, method="closed-form")
    fixed = solve_fixed_point(workload, profile)
    assert closed.stable == fixed.stable
    if closed.stable:
        assert fixed.iteration_time_s == pytest.approx(closed.iteration_time_s, rel=1e-9)
        assert fixed.memory_tokens == pytest.approx(closed.memory_tokens, rel=1e-9)
        theta = max_stable_scale_bisection(workload, profile)
        assert theta == pytest.approx(fo.max_stable_scale(workload, profile, method="closed-form").max_scale, rel=1e-6)


def test_measured_equilibrium_is_a_fixed_point_and_lp_tangent_agrees(vidur_preset):
    workload = fo.preset_workload("mix-p512d20-p512d50").with_total_rate(18)
    exact = fo.equilibrium(workload, vidur_preset)
    assert exact.method == "fixed-point" and exact.stable
    batch = fluid_batch(workload, vidur_preset)
    assert batch.iteration_time(vidur_preset, exact.iteration_time_s) == pytest.approx(exact.iteration_time_s)
    lp = fo.equilibrium(workload, vidur_preset, method="lp")
    assert lp.method == "lp-tangent"
    assert lp.iteration_time_s == pytest.approx(exact.iteration_time_s, rel=1e-6)
    limit = fo.max_stable_scale(workload, vidur_preset)
    assert limit.method == "bisection"
    assert not fo.equilibrium(workload.scaled(limit.max_scale * 1.01), vidur_preset).stable


def test_simulated_iteration_time_matches_the_fluid_batch(vidur_preset):
    # FCFS admits every arrival at once, so each stage holds lambda dT requests on average.  With
    # short prompts and long outputs every batch holds ~100 decodes, tau(batch) concentrates, and
    # the mean simulated iteration time must equal tau of the fluid batch (the fixed point).
    # (With p512d20 at low load it does not: a 512-token prefill lands in a fraction of the
    # iterations and tau is convex, so the mean of tau exceeds tau of the mean batch.)
    workload = Workload("long", (RequestClass("long", 32, 200, 40.0),))
    means = []
    for seed in range(4):
        result = simulate(workload, vidur_preset, FCFSPolicy(), requests=6000, rng=seed)
        means.append(result.busy_fraction * (result.window_end_s - result.window_start_s) / result.iterations)
    fluid = fo.equilibrium(workload, vidur_preset).iteration_time_s
    spread = np.std(means, ddof=1) / np.sqrt(len(means))
    assert abs(np.mean(means) - fluid) < 4 * spread + 0.02 * fluid


def test_vidur_conventions(vidur_preset):
    workload = fo.preset_workload("p512d20").with_total_rate(10)
    runs = [
        simulate(workload, vidur_preset, SarathiPolicy(), requests=4000, rng=seed, conventions="vidur")
        for seed in range(4)
    ]
    delivered = np.array([r.settings["delivered_rate_per_s"] for r in runs]) / 10
    expected = 1 / (1 - math.exp(-3))
    assert abs(delivered.mean() - expected) < 4 * delivered.std(ddof=1) / 2 + 0.01
    assert all(r.measured_completions == 2000 and r.settings["conventions"] == "vidur" for r in runs)
    assert all(r.eviction == "recompute" for r in runs)
    # First token from the prefill: a one-token request completes with its prefill iteration.
    single = Workload("one", (RequestClass("one", 64, 1, 1.0),))
    result = simulate(
        single, vidur_preset, SarathiPolicy(), requests=50, rng=1, conventions="vidur", record_requests=True
    )
    assert np.allclose(result.requests["completion_s"], result.requests["first_token_s"])
    assert result.completed_requests == 50


def test_bad_inputs(tmp_path, vidur_preset, shared_data):
    root = shared_data / LLAMA3
    missing = tmp_path / "att.csv"
    missing.write_text("regime,chunk,kv\nP,64,0\n", encoding="utf-8")
    with pytest.raises(InputError, match="att.csv: columns.*must include .batch"):
        read_attention_csv(missing, 32)
    negative = tmp_path / "neg.csv"
    negative.write_text("regime,chunk,kv,batch,save,prefill,decode\nP,64,0,1,-0.1,0.01,\n", encoding="utf-8")
    with pytest.raises(InputError, match="neg.csv row 2 column save"):
        read_attention_csv(negative, 32)
    short = tmp_path / "short.csv"
    short.write_text(
        "regime,chunk,kv,batch,save,prefill,decode\nP,64,0,1,0.1,0.01,\nD,0,32,1,0.002,,0.006\n", encoding="utf-8"
    )
    with pytest.raises(InputError, match="need at least"):
        fit_vidur_measured_profile(root / "mlp.csv", short, gpu_spec("a100-80gb"), model_shape("llama-3-8b"), "x")
    data = vidur_preset.to_dict()
    data["iteration_time"]["base_s"] = 0.01
    with pytest.raises(InputError, match="mixes incompatible timing kinds"):
        GPUProfile.from_dict(data)
    data = vidur_preset.to_dict()
    data["iteration_time"]["tokens"]["non_attention_s"][5] = 0.0
    with pytest.raises(InputError, match="non-monotone"):
        GPUProfile.from_dict(data)
    with pytest.raises(InputError, match="conventions"):
        simulate(fo.preset_workload("toy"), fo.preset_profile("toy"), FCFSPolicy(), requests=5, conventions="x")
    data = fo.preset_profile("toy").to_dict()
    data["iteration_time"]["per_kv_tokens_s"] = 1e-3
    with pytest.raises(InputError, match="did you mean 'per_kv_token_s'"):
        GPUProfile.from_dict(data)


def test_profile_fit_cli_writes_nothing_on_bad_input(tmp_path, shared_data):
    out = tmp_path / "p.toml"
    bad = tmp_path / "bad.csv"
    bad.write_text("prefill_tokens,decode_sequences,seconds\n1,2,3\n", encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidopt",
            "profile",
            "fit",
            str(bad),
            "--batch-log",
            "--kv-capacity-tokens",
            "1000",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "cached_tokens" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not out.exists()
    log = tmp_path / "log.csv"
    rng = np.random.default_rng(0)
    rows = ["prefill_tokens,decode_sequences,cached_tokens,seconds"]
    for _ in range(40):
        p, b, k = int(rng.integers(0, 1024)), int(rng.integers(1, 64)), int(rng.integers(0, 40000))
        rows.append(f"{p},{b},{k},{max(0.01, 0.004 + 8e-5 * (p + b) + 8e-8 * k):.6f}")
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidopt",
            "profile",
            "fit",
            str(log),
            "--batch-log",
            "--kv-capacity-tokens",
            "100000",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["components"]["iteration_time"]["mape"] < 0.05
    assert fo.load_profile(str(out)).kv_capacity_tokens == 100000
