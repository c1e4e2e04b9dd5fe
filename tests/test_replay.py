"""Engine-measured profiles (LLMServingSim's tables) and the replay of real vLLM runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.answers.replay import read_vllm_run, replay, write_replay
from fluidopt.errors import InputError
from fluidopt.hardware import model_for_engine_name
from fluidopt.timing.fit.engine_tables import (
    fit_engine_timing,
    profile_for_run,
    read_llmservingsim_profile,
    vllm_kv_capacity_tokens,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmservingsim"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/llmservingsim absent")

OPS = ("layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn", "down_proj")
GRID = (0, 16, 64, 256, 1024)
DECODES = (0, 1, 4, 16)


def prefill_us(c, k):
    return 5.0 + 0.01 * c + 2e-5 * c * k + 1e-5 * c * c + 0.002 * k


def decode_us(n, k, mixed=False):
    scale = 2.0 if mixed else 1.0
    return scale * max(4.0 + 0.5 * n + 1e-3 * n * k, 3.0 + 0.004 * k)


def write_tables(root: Path, *, model="meta-llama/Llama-3.1-8B", hole=False, drop_column=False) -> Path:
    folder = root / "profile"
    (folder / "tp1").mkdir(parents=True)
    (folder / "meta.yaml").write_text(f"model: {model}\ngpu: Test GPU\nhardware: TESTGPU\nvllm_version: 0.19.0\n")
    rows = ["layer,tokens,time_us"]
    for op in (*OPS, "embedding", "final_layernorm"):
        for t in (1, 2, 4, 8, 16, 64, 256, 1024, 2048):
            rows.append(f"{op},{t},{10.0 + 0.05 * t}")
    (folder / "tp1" / "dense.csv").write_text("\n".join(rows) + "\n")
    rows = ["layer,sequences,time_us"]
    for op in ("lm_head", "sampler"):
        for n in (1, 2, 4, 16, 64, 256):
            rows.append(f"{op},{n},{100.0 + n}")
    (folder / "tp1" / "per_sequence.csv").write_text("\n".join(rows) + "\n")
    header = "prefill_chunk,kv_prefill,n_decode,kv_decode" + ("" if drop_column else ",time_us")
    rows = [header]
    for c in GRID:
        for kp in GRID if c else (0,):
            for n in DECODES:
                for kd in GRID[1:] if n else (0,):
                    if c == 0 and n == 0:
                        continue
                    if hole and (c, kp, n, kd) == (0, 0, 4, 64):
                        continue
                    t = (prefill_us(c, kp) if c else 0.0) + (decode_us(n, kd, mixed=c > 0) if n else 0.0)
                    rows.append(f"{c},{kp},{n},{kd}" + ("" if drop_column else f",{t}"))
    (folder / "tp1" / "attention.csv").write_text("\n".join(rows) + "\n")
    return folder


def write_run(root: Path, *, model="meta-llama/Llama-3.1-8B", requests=40, bad=None) -> Path:
    folder = root / "run"
    (folder / "vllm").mkdir(parents=True)
    meta = {
        "model": model,
        "vllm_version": "0.19.0",
        "engine_kwargs": {"model": model, "max_num_seqs": 16, "max_num_batched_tokens": 512},
        "kv_cache": {"num_gpu_blocks": 400, "block_size": 16},
    }
    (folder / "vllm" / "meta.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(0)
    lines = []
    clock = 1000.0
    for i in range(requests):
        clock += float(rng.exponential(0.2))
        row = {
            "input_toks": int(rng.integers(20, 300)),
            "output_toks": int(rng.integers(2, 60)),
            "arrival_time": 1.7e9 + clock,
            "queued_ts": clock,
            "scheduled_ts": clock,
            "first_token_ts": clock + 0.1,
            "last_token_ts": clock + 1.0,
        }
        if bad == "missing" and i == 3:
            del row["first_token_ts"]
        if bad == "negative" and i == 3:
            row["queued_ts"] = -1.0
        lines.append(json.dumps(row))
    (folder / "vllm" / "requests.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_composition_recovers_the_tables(tmp_path):
    tables = read_llmservingsim_profile(write_tables(tmp_path))
    timing, quality = fit_engine_timing(tables, layers=2)
    # Non-attention: 2 layers x (2 norms + 6 other operators) + embedding + final norm, exact at the points.
    tokens = np.array([1.0, 16.0, 256.0, 2048.0])
    expected = (2 * (2 + 6) + 2) * (10.0 + 0.05 * tokens) * 1e-6
    assert np.allclose(timing.non_attention_time(tokens), expected, rtol=1e-9)
    assert math.isclose(timing.per_sequence_time(4), 2 * 104e-6, rel_tol=1e-9)
    # The prefill form is exact on these tables; decodes beside a prefill cost twice what they cost alone.
    assert quality["prefill_attention"].mape < 1e-6
    assert math.isclose(timing.prefill_attention_time(256, 1024), 2 * prefill_us(256, 1024) * 1e-6, rel_tol=1e-6)
    assert quality["decode_attention"].mape < 0.02 and quality["mixed_attention"].mape < 0.02
    alone = timing.decode_attention_time(16, 16 * 1024)
    beside = timing.decode_attention_time(16, 16 * 1024, mixed=True)
    assert math.isclose(beside / alone, 2.0, rel_tol=0.05)
    # One step of one prefill chunk and three decodes, as the simulator composes it.
    step = timing.batch_time([256], [0], [64, 64, 64])
    parts = (
        timing.non_attention_time(259)
        + timing.prefill_attention_time(256, 0)
        + timing.decode_attention_time(3, 192, mixed=True)
        + timing.per_sequence_time(4)
    )
    assert math.isclose(step, parts, rel_tol=1e-12)


def test_engine_profile_runs_in_the_simulator_and_the_fluid_core(tmp_path):
    profile, _ = profile_for_run(write_tables(tmp_path), write_run(tmp_path))
    assert profile.kv_capacity_tokens == 400 * 16
    again = fo.GPUProfile.from_dict(profile.to_dict())
    assert again.timing == profile.timing
    workload = fo.preset_workload("p512d20")
    limit = fo.max_stable_scale(workload, profile)
    assert limit.max_rate_per_s > 0 and math.isfinite(limit.max_rate_per_s)
    eq = fo.equilibrium(workload.with_total_rate(0.5 * limit.max_rate_per_s), profile)
    assert eq.stable and eq.method == "fixed-point"
    from fluidopt.sim import VLLMV1Policy, simulate

    run = simulate(
        workload.with_total_rate(0.5 * limit.max_rate_per_s), profile, VLLMV1Policy(), requests=500, drain=True
    )
    assert run.status == "ok" and run.unfinished_requests == 0


def test_replay_of_a_synthetic_run_writes_its_files(tmp_path):
    tables, run_dir = write_tables(tmp_path), write_run(tmp_path)
    run = read_vllm_run(run_dir)
    profile, _ = profile_for_run(tables, run_dir)
    result = replay(run, profile)
    assert result.status == "ok" and result.policy["max_num_seqs"] == 16
    metrics = {(r["metric"], r["statistic"]) for r in result.rows}
    assert {("ttft", "mean"), ("tpot", "p90"), ("e2e", "p99"), ("requests_per_s", "overall")} <= metrics
    assert result.per_request["request"].size == 40
    paths = write_replay(result, tmp_path / "out")
    assert [p.name for p in paths] == ["requests.csv", "summary.json", "replay.png"]
    assert json.loads(paths[1].read_text())["requests"] == 40
    assert len(paths[0].read_text().splitlines()) == 41


def test_vllm_memory_rule_close_to_the_logged_capacity():
    # RTX 4090 (25,250,627,584 bytes), Llama-3.1-8B, 0.9 utilisation, 2,048 batched tokens: vLLM logged
    # 2,588 blocks; the rule's activation estimate leaves 10 % more.
    rule = vllm_kv_capacity_tokens(model_for_engine_name("meta-llama/Llama-3.1-8B"), 25_250_627_584)
    assert 1.0 < rule / 41_408 < 1.15


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: write_tables(p, hole=True), "holes"),
        (lambda p: write_tables(p, drop_column=True), "time_us"),
    ],
)
def test_bad_tables(tmp_path, make, match):
    with pytest.raises(InputError, match=match):
        read_llmservingsim_profile(make(tmp_path))


def test_bad_tables_and_runs(tmp_path):
    folder = write_tables(tmp_path)
    with pytest.raises(InputError, match="tensor-parallel degrees"):
        read_llmservingsim_profile(folder, 2)
    (folder / "meta.yaml").unlink()
    with pytest.raises(InputError, match="meta.yaml"):
        read_llmservingsim_profile(folder)
    for bad, match in (("missing", "first_token_ts"), ("negative", "must be >= 0")):
        with pytest.raises(InputError, match=match):
            read_vllm_run(write_run(tmp_path / bad, bad=bad))
    empty = tmp_path / "empty"
    (empty / "vllm").mkdir(parents=True)
    with pytest.raises(InputError, match="meta.json"):
        read_vllm_run(empty)
    (empty / "vllm" / "meta.json").write_text(json.dumps({"engine_kwargs": {}}))
    with pytest.raises(InputError, match="requests.jsonl"):
        read_vllm_run(empty)


def test_profile_for_another_model_is_refused(tmp_path):
    tables = write_tables(tmp_path / "a", model="Qwen/Qwen3-32B")
    run_dir = write_run(tmp_path / "b")
    with pytest.raises(InputError, match="measured for Qwen/Qwen3-32B"):
        profile_for_run(tables, run_dir)
    profile, _ = profile_for_run(write_tables(tmp_path / "c", model="Qwen/Qwen3-32B"), None, gpu_memory_bytes=96e9)
    with pytest.raises(InputError, match="was measured for"):
        replay(read_vllm_run(run_dir), profile)


def fluidopt(*args):
    return subprocess.run([sys.executable, "-m", "fluidopt", *args], capture_output=True, text=True)


def test_cli_replay_and_profile_fit(tmp_path):
    tables, run_dir = write_tables(tmp_path), write_run(tmp_path)
    fit = fluidopt(
        "profile",
        "fit",
        "--format",
        "llmservingsim",
        str(tables),
        "--run",
        str(run_dir),
        "--json",
        "--out",
        str(tmp_path / "p.toml"),
    )
    assert fit.returncode == 0, fit.stderr
    assert "attention" in json.loads(fit.stdout)["components"]  # the measured grid, checked against its rows
    run = fluidopt(
        "replay", str(run_dir), "--profile", str(tmp_path / "p.toml"), "--json", "--out", str(tmp_path / "o")
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["requests"] == 40 and "affine surrogate (2 pieces)" in data["variants"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["replay.png", "requests.csv", "summary.json"]
    for args in (
        ["replay", str(tmp_path), "--profile", str(tmp_path / "p.toml")],
        ["replay", str(run_dir), "--profile", str(tables), "--tp", "4"],
        ["profile", "fit", "--format", "llmservingsim", str(tables), "--tp", "0"],
        ["profile", "fit", "--format", "llmservingsim", str(tmp_path / "nope")],
        ["profile", "fit", str(tables), "--tp", "2"],
    ):
        bad = fluidopt(*args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)


@needs_shared
@pytest.mark.parametrize(
    ("run_name", "tables_name", "bound"),
    [
        ("RTX4090/Llama-3.1-8B", "RTX4090/meta-llama/Llama-3.1-8B", 0.05),
        # The TP2 run misses 5 % by about one point; README "How close to a real engine" says why.
        ("RTXPRO6000/Qwen3-32B", "RTXPRO6000/Qwen/Qwen3-32B", 0.07),
    ],
)
def test_shared_runs_replayed_within_bounds(run_name, tables_name, bound):
    run_dir = SHARED / "runs" / run_name
    run = read_vllm_run(run_dir)
    profile, _ = profile_for_run(SHARED / "profiles" / tables_name, run_dir)
    result = replay(run, profile)
    found = {(r["metric"], r["statistic"]): r for r in result.rows}
    for metric in ("ttft", "tpot", "e2e"):
        for stat in ("mean", "p90"):
            assert abs(found[(metric, stat)]["fluidopt_error"]) < bound, (metric, stat)
            assert math.isfinite(found[(metric, stat)]["llmservingsim"])  # its summary is read beside ours
    assert result.wall_time_s < 5.0


MOE_TABLES = SHARED / "profiles" / "RTXPRO6000" / "Qwen" / "Qwen3-30B-A3B-Instruct-2507"


@needs_shared
def test_moe_tables_compose_the_experts_the_tokens_reach(tmp_path):
    import shutil

    from fluidopt.timing.fit.engine_tables import expected_experts, moe_layer_seconds

    tables = read_llmservingsim_profile(MOE_TABLES, 1)
    shape = tables.model_shape
    assert shape.is_moe and (shape.experts, shape.experts_per_token, shape.moe_layers) == (128, 8, 48)
    assert tables.moe is not None and tables.moe_source == "tp1/moe.csv"
    # E (1 - (1 - k/E)^T): one token reaches its 8 experts, two reach 15.5 on average.
    assert expected_experts(1, 128, 8) == pytest.approx(8) and expected_experts(2, 128, 8) == pytest.approx(15.5)
    one = tables.moe[(tables.moe[:, 0] == 1) & (tables.moe[:, 1] == 8), 2][0]
    assert moe_layer_seconds(tables.moe, 1, 128, 8)[0] == pytest.approx(one)  # a measured cell exactly
    two = tables.moe[tables.moe[:, 0] == 2]
    low, high = two[two[:, 1] == 8, 2][0], two[two[:, 1] == 16, 2][0]
    assert moe_layer_seconds(tables.moe, 2, 128, 8)[0] == pytest.approx(low + (high - low) * 7.5 / 8)
    times = moe_layer_seconds(tables.moe, np.array([1, 4, 16, 64, 256, 1024]), 128, 8)
    assert np.all(np.diff(times) > 0)  # more tokens reach more experts and do more work
    timing, _ = fit_engine_timing(tables)
    from fluidopt.timing.fit.engine_tables import PER_LAYER_CALLS

    dense = sum(tables.dense[op][64] * shape.layers * PER_LAYER_CALLS.get(op, 0) for op in tables.dense)
    dense += tables.dense["embedding"][64] + tables.dense["final_layernorm"][64]
    composed = dense + shape.moe_layers * moe_layer_seconds(tables.moe, 64, 128, 8)[0]
    assert timing.non_attention_time(64) == pytest.approx(composed, rel=1e-6)
    assert "uniform routing" in timing.fit["moe"]["model"]
    # Two GPUs with no tp2 table: the tp1 table split over the group, and said so.
    assert read_llmservingsim_profile(MOE_TABLES, 2).moe_source.startswith("tp1/moe.csv / 2")
    # An MoE model without its moe.csv cannot be composed.
    copy = tmp_path / "moe-copy"
    shutil.copytree(MOE_TABLES, copy, ignore=shutil.ignore_patterns("tp2"))
    (copy / "tp1" / "moe.csv").unlink()
    with pytest.raises(InputError, match="moe.csv"):
        fit_engine_timing(read_llmservingsim_profile(copy, 1))


@needs_shared
def test_an_moe_engine_profile_runs_through_the_fluid_core_and_the_simulator():
    from fluidopt.sim import FCFSPolicy, simulate
    from fluidopt.timing.fit.engine_tables import engine_profile

    profile, _ = engine_profile(read_llmservingsim_profile(MOE_TABLES, 1), kv_capacity_tokens=300_000)
    workload = fo.preset_workload("p512d20")
    limit = fo.max_stable_scale(workload, profile).max_rate_per_s
    assert 0 < limit < math.inf
    load = workload.with_total_rate(0.3 * limit)
    assert fo.equilibrium(load, profile).stable
    result = simulate(load, profile, FCFSPolicy(), requests=3000, rng=4)
    assert result.status == "ok"
    assert result.throughput_tokens_per_s == pytest.approx(load.decode_token_rate, rel=0.1)
