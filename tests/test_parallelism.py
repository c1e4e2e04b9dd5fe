"""Data and expert parallelism: weights per GPU, expert-parallel MoE layers, DP replay (issue 24, part 4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fluidopt.answers.replay import least_loaded_engines, read_vllm_run, replay, summed_series
from fluidopt.errors import InputError
from fluidopt.hardware import model_shape
from fluidopt.timing.fit.engine_tables import (
    Interconnect,
    Parallelism,
    expected_experts,
    expert_parallel_moe_seconds,
    moe_layer_seconds,
    profile_for_run,
    vllm_kv_capacity_tokens,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmservingsim"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/llmservingsim absent")
MOE_TABLES = SHARED / "profiles" / "RTXPRO6000" / "Qwen" / "Qwen3-30B-A3B-Instruct-2507"
DENSE_TABLES = SHARED / "profiles" / "RTXPRO6000" / "Qwen" / "Qwen3-32B"
DENSE_RUN = SHARED / "runs" / "RTXPRO6000" / "Qwen3-32B"


def linear_moe_table(per_pair_s: float = 1e-6, per_expert_s: float = 5e-6) -> np.ndarray:
    """A moe.csv whose time is ``per_pair x tokens x 8 + per_expert x experts`` on a grid (exactly interpolable)."""
    rows = [
        (tokens, experts, per_pair_s * tokens * 8 + per_expert_s * experts)
        for tokens in (1, 16, 256, 4096)
        for experts in (1, 4, 16, 64, 128)
    ]
    return np.array(rows, dtype=float)


def test_expert_weights_split_over_the_expert_group_by_hand() -> None:
    shape = model_shape("qwen3-30b-a3b")
    experts = 48 * 128 * 3 * 2048 * 768
    assert shape.expert_parameters == experts
    rest = shape.parameters - experts
    assert shape.weight_bytes_per_gpu(1, 2) == pytest.approx((rest + experts / 2) * 2)
    assert shape.weight_bytes_per_gpu(2, 1) == pytest.approx(shape.parameters)  # TP splits everything
    assert shape.weight_bytes_per_gpu(2, 4) == pytest.approx((rest / 2 + experts / 4) * 2)
    dense = model_shape("llama-3-8b")
    assert dense.weight_bytes_per_gpu(2, 4) == pytest.approx(dense.weight_bytes / 2)


def test_expert_parallelism_frees_kv_memory_on_each_gpu() -> None:
    shape = model_shape("qwen3-30b-a3b")
    alone = vllm_kv_capacity_tokens(shape, 96e9)
    assert vllm_kv_capacity_tokens(shape, 96e9, expert_group=1) == alone
    spread = vllm_kv_capacity_tokens(shape, 96e9, expert_group=2)
    freed_bytes = shape.expert_parameters * shape.bytes_per_value / 2  # half the experts leave each GPU
    assert spread - alone == pytest.approx(freed_bytes / shape.kv_bytes_per_token, abs=16)  # one block


def test_expert_parallel_moe_layer_by_hand() -> None:
    shape = model_shape("qwen3-30b-a3b")
    table = linear_moe_table()
    link = Interconnect(50e9, 8e-6, "test")
    tokens = np.array([4.0, 64.0, 512.0])
    parallel = Parallelism(tensor=1, data=2, expert=True)
    reached = expected_experts(2 * tokens, 128, 8) / 2
    compute = 1e-6 * tokens * 8 + 5e-6 * reached  # 2 T tokens over 2 GPUs: T tokens' pairs each
    exchange = 2 * (8e-6 + (2 - 1) * tokens * 2048 * 2 / 50e9)
    got = expert_parallel_moe_seconds(table, tokens, shape, parallel, link)
    assert got == pytest.approx(compute + exchange, rel=1e-9)
    # Two engines of TP 2: four GPUs hold 32 experts each; the exchange is over the two engines.
    wide = Parallelism(tensor=2, data=2, expert=True)
    reached4 = expected_experts(2 * tokens, 128, 8) / 4
    compute4 = 1e-6 * (tokens / 2) * 8 + 5e-6 * reached4
    got4 = expert_parallel_moe_seconds(table, tokens, shape, wide, link)
    assert got4 == pytest.approx(compute4 + exchange, rel=1e-9)
    # One engine of TP 2 with expert parallelism: no exchange beyond the tensor-parallel all-reduce.
    alone = expert_parallel_moe_seconds(table, tokens, shape, Parallelism(2, 1, True), None)
    assert alone == pytest.approx(1e-6 * (tokens / 2) * 8 + 5e-6 * expected_experts(tokens, 128, 8) / 2, rel=1e-9)


def test_expert_parallelism_over_one_gpu_is_the_plain_moe_layer() -> None:
    shape = model_shape("qwen3-30b-a3b")
    table = linear_moe_table()
    tokens = np.array([1.0, 30.0, 700.0])
    one = expert_parallel_moe_seconds(table, tokens, shape, Parallelism(1, 1, True), None)
    assert one == pytest.approx(moe_layer_seconds(table, tokens, 128, 8))


def test_expert_parallelism_needs_a_link_and_whole_numbers() -> None:
    shape = model_shape("qwen3-30b-a3b")
    with pytest.raises(InputError, match="interconnect"):
        expert_parallel_moe_seconds(linear_moe_table(), [8.0], shape, Parallelism(1, 2, True), None)
    with pytest.raises(InputError, match="data_parallel"):
        Parallelism(1, 0, True)
    with pytest.raises(InputError, match="tensor_parallel"):
        Parallelism(0, 1)


def test_least_loaded_routing() -> None:
    arrivals = np.arange(6, dtype=float)
    same = least_loaded_engines(arrivals, np.full(6, 10.0), 3)
    assert same.tolist() == [0, 1, 2, 0, 1, 2]  # equal loads: round robin
    # Request 0 stays 100 s in engine 0; the short ones leave before the next arrives.
    long_first = least_loaded_engines(arrivals, np.array([100.0, 0.5, 0.5, 0.5, 0.5, 0.5]), 2)
    assert long_first.tolist() == [0, 1, 1, 1, 1, 1]
    assert least_loaded_engines(arrivals, np.ones(6), 1).tolist() == [0] * 6


def test_engines_series_add_up_between_their_steps() -> None:
    a = {"start_s": np.array([0.0, 2.0]), "running": np.array([1, 3]), "waiting": np.array([5, 0])}
    b = {"start_s": np.array([1.0, 3.0]), "running": np.array([2, 0]), "waiting": np.array([1, 1])}
    total = summed_series([a, None, b])
    assert total is not None
    assert total["start_s"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert total["running"].tolist() == [1, 3, 5, 3]
    assert total["waiting"].tolist() == [5, 6, 1, 1]
    assert summed_series([None]) is None


@needs_shared
def test_moe_profile_with_data_and_expert_parallelism(tmp_path: Path) -> None:
    plain, _ = profile_for_run(MOE_TABLES, tensor_parallel=1, gpu="rtx-pro-6000")
    spread, _ = profile_for_run(
        MOE_TABLES, tensor_parallel=1, data_parallel=2, expert_parallel=True, gpu="rtx-pro-6000"
    )
    assert spread.fit["parallel"] == {"tensor": 1, "data": 2, "expert": True}
    assert "dp2-ep" in spread.name and "tp1/moe.csv" in spread.fit["moe"]["source"]
    assert spread.kv_capacity_tokens > plain.kv_capacity_tokens
    assert "spec sheet" in spread.fit["interconnect"]["source"]
    # One token's step: the exchange's two link latencies per MoE layer are in it.
    step = spread.timing.non_attention_time(np.array([1.0]))[0]  # type: ignore[union-attr]
    alone = plain.timing.non_attention_time(np.array([1.0]))[0]  # type: ignore[union-attr]
    assert step - alone > 48 * 2 * 10e-6 * 0.9
    out = tmp_path / "p.toml"
    bad = subprocess.run(
        [sys.executable, "-m", "fluidopt", "profile", "fit", "--format", "llmservingsim", str(MOE_TABLES)]
        + ["--tp", "1", "--dp", "0", "--gpu", "rtx-pro-6000", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "--dp" in bad.stderr and not out.exists()
    missing = subprocess.run(
        [sys.executable, "-m", "fluidopt", "profile", "fit", "--format", "llmservingsim", str(MOE_TABLES)]
        + ["--tp", "1", "--dp", "2", "--ep", "--gpu-memory-gb", "96", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "interconnect" in missing.stderr and not out.exists()


@needs_shared
def test_data_parallel_run_replays_as_engines_sharing_the_load(tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(DENSE_RUN, copy)
    meta_path = copy / "vllm" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["engine_kwargs"]["data_parallel_size"] = 2
    meta_path.write_text(json.dumps(meta))
    one_run, two_run = read_vllm_run(DENSE_RUN), read_vllm_run(copy)
    profile, _ = profile_for_run(DENSE_TABLES, DENSE_RUN)
    one, two = replay(one_run, profile), replay(two_run, profile)
    assert two.success and two.policy["data_parallel_engines"] == 2
    assert two.per_request["request"].size == two_run.num_requests
    assert two.series is not None and one.series is not None
    assert two.series["running"].max() <= 2 * one.series["running"].max()  # each engine holds max_num_seqs
    mean = {(r["metric"], r["statistic"]): r["fluidopt"] for r in two.rows}
    base = {(r["metric"], r["statistic"]): r["fluidopt"] for r in one.rows}
    # The same arrivals on twice the engines: less queueing, more throughput.
    assert mean[("ttft", "mean")] < base[("ttft", "mean")]
    assert mean[("requests_per_s", "overall")] > base[("requests_per_s", "overall")]
    meta["engine_kwargs"]["data_parallel_size"] = 0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="data_parallel_size"):
        replay(read_vllm_run(copy), profile)
