"""The roofline timing kind: hand-solved steps, the work of a model split over GPUs, the calibration, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.cli import main
from fluidopt.errors import InputError
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.model_config import model_from_config
from fluidopt.timing.fit.engine_tables import Parallelism
from fluidopt.timing.fit.roofline import (
    RooflineCalibration,
    roofline_profile,
    roofline_timing,
    roofline_work,
    shipped_calibration,
)
from fluidopt.timing.roofline import RATE_KEYS, WORK_KEYS, RooflineTiming

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RUNS = SHARED / "llmservingsim" / "runs"


def simple_timing(**overrides: float) -> RooflineTiming:
    """Round numbers: 1e12 FLOP/s, 1e12 B/s everywhere, 2 bytes per value, no MoE or collectives."""
    rates = dict.fromkeys(RATE_KEYS, 0.0)
    rates.update(
        compute_flops_per_s=1e12,
        bandwidth_bytes_per_s=1e12,
        attention_flops_per_s=1e12,
        prefill_kv_bytes_per_s=1e12,
        decode_kv_bytes_per_s=1e12,
        mixed_decode_kv_bytes_per_s=0.5e12,
        attention_s=1e-5,
        kernel_s=1e-6,
        step_overhead_s=1e-4,
    )
    work = dict.fromkeys(WORK_KEYS, 0.0)
    work.update(
        bytes_per_value=2.0,
        dense_weight_bytes=2e9,
        lm_head_weight_bytes=2e8,
        elementwise_bytes_per_token=1e5,
        attention_layers=10.0,
        attention_flops_per_pair=1e4,
        kv_bytes_per_token=1e5,
        sampler_bytes_per_sequence=1e6,
        kernels_per_step=100.0,
    )
    for key, value in overrides.items():
        (rates if key in rates else work)[key] = value
    return RooflineTiming(tuple(rates[k] for k in RATE_KEYS), tuple(work[k] for k in WORK_KEYS))


def test_a_lone_decode_by_hand():
    """One decode at 1,000 cached tokens: every GEMM reads its weights (memory-bound at one row)."""
    timing = simple_timing()
    weights = 2e9 / 1e12 + 2e8 / 1e12  # dense and LM head, one read each
    elementwise = (1 * 1e5 + 1 * 1e6) / 1e12
    attention = 10 * 1e-5 + 1000 * 1e5 / 1e12
    expected = weights + elementwise + attention + 100 * 1e-6 + 1e-4
    assert timing.batch_time([], [], [1000]) == pytest.approx(expected, rel=1e-12)


def test_a_prefill_by_hand_is_compute_bound_past_the_knee():
    """4,096 prompt tokens: 2 x 1e9 parameters x 4,096 rows at 1e12 FLOP/s; causal pairs c^2 / 2."""
    timing = simple_timing()
    c = 4096.0
    dense = 2 * 1e9 * c / 1e12
    head = 2e8 / 1e12  # one sequence: the LM head reads its weights
    attention = 10 * 1e-5 + max(1e4 * c * c / 2 / 1e12, 1e5 * c / 1e12)
    expected = dense + head + (c * 1e5 + 1e6) / 1e12 + attention + 100e-6 + 1e-4
    assert timing.batch_time([4096], [0], []) == pytest.approx(expected, rel=1e-12)


def test_decodes_beside_a_prefill_read_at_the_mixed_rate():
    timing = simple_timing(dense_weight_bytes=0.0, lm_head_weight_bytes=0.0)
    fixed = 10 * 1e-5 + 100 * 1e-6 + 1e-4  # attention floor, kernel launches, step overhead
    alone = timing.batch_time([], [], [1000] * 4) - fixed
    beside = timing.batch_time([16], [0], [1000] * 4) - timing.batch_time([16], [0], [])
    # The decodes' reads (4,000 tokens x 1e5 B) take twice as long at half the rate.
    reads = 4000 * 1e5 / 1e12
    assert beside - alone == pytest.approx(reads, rel=1e-6)


def test_moe_reads_the_experts_the_tokens_reach():
    """One token reaches k experts; many tokens reach all E (uniform routing); compute grows with T k."""
    timing = simple_timing(
        moe_layers=1.0,
        experts=8.0,
        experts_per_token=2.0,
        local_experts=8.0,
        expert_weight_bytes=1e8,
        moe_token_factor=1,
    )
    base = simple_timing()
    one = timing.batch_time([], [], [100]) - base.batch_time([], [], [100])
    assert one == pytest.approx(2 * 1e8 / 1e12, rel=1e-9)  # two experts read once
    tokens = 4096
    many = timing.batch_time([tokens], [0], []) - base.batch_time([tokens], [0], [])
    compute = 2 * tokens * 2 * 1e8 / 2 / 1e12
    assert many == pytest.approx(max(compute, 8 * 1e8 / 1e12), rel=1e-6)


def test_the_work_of_llama_3_8b_by_hand_and_split_over_two_gpus():
    model = model_shape("llama-3-8b")
    one = roofline_work(model, Parallelism(1))
    attention = (32 + 2 * 8) * 128 * 4096 + 32 * 128 * 4096
    mlp = 3 * 4096 * 14336
    assert one["dense_weight_bytes"] == 2 * 32 * (attention + mlp)
    assert one["lm_head_weight_bytes"] == 2 * 128_256 * 4096
    assert one["kv_bytes_per_token"] == model.kv_bytes_per_token
    assert one["attention_flops_per_pair"] == 32 * 4 * 32 * 128
    assert one["allreduces_per_step"] == 0
    two = roofline_work(model, Parallelism(2))
    assert two["dense_weight_bytes"] == pytest.approx(one["dense_weight_bytes"] / 2)
    assert two["kv_bytes_per_token"] == one["kv_bytes_per_token"] / 2
    assert two["allreduces_per_step"] == 64 and two["allreduce_bytes_per_token"] == 4096 * 2


def test_expert_parallel_work_holds_whole_experts_and_serves_every_engine():
    model = model_shape("mixtral-8x7b")
    plain = roofline_work(model, Parallelism(2))
    expert = roofline_work(model, Parallelism(2, 2, True))
    assert plain["local_experts"] == 8 and expert["local_experts"] == 2
    assert expert["expert_weight_bytes"] == 2 * plain["expert_weight_bytes"]
    assert expert["moe_token_factor"] == 2 and expert["exchanges_per_step"] == 64


def test_built_in_config_facts_match_their_config_count():
    configs = {
        "mixtral-8x7b": {
            "model_type": "mixtral",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 32000,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
        },
        "codellama-34b": {
            "model_type": "llama",
            "hidden_size": 8192,
            "intermediate_size": 22016,
            "num_hidden_layers": 48,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "vocab_size": 32000,
        },
    }
    for name, config in configs.items():
        assert model_from_config(config, name) == model_shape(name)


def test_a_faster_gpu_is_faster_and_more_memory_holds_more_kv():
    model = model_shape("llama-3-8b")
    h100 = roofline_profile(gpu_spec("h100-80gb"), model)
    h200 = roofline_profile(gpu_spec("h200"), model)
    batch = ([512], [0], [1024] * 32)
    assert h200.batch_time(*batch) < h100.batch_time(*batch)
    assert h200.kv_capacity_tokens > h100.kv_capacity_tokens


def test_step_time_grows_with_work():
    profile = roofline_profile(gpu_spec("h100-80gb"), model_shape("mixtral-8x7b"), Parallelism(2))
    decodes = [profile.batch_time([], [], [1024] * n) for n in (1, 8, 64, 256)]
    prefills = [profile.batch_time([c], [0], []) for c in (16, 256, 2048, 8192)]
    assert np.all(np.diff(decodes) > 0) and np.all(np.diff(prefills) > 0)


def test_the_roofline_profile_round_trips_and_its_presets_are_the_builders():
    for name, (gpu, model, tp) in {
        "h100-80gb-llama-3-8b-tp1-roofline": ("h100-80gb", "llama-3-8b", 1),
        "h100-80gb-mixtral-8x7b-tp2-roofline": ("h100-80gb", "mixtral-8x7b", 2),
    }.items():
        preset = fo.preset_profile(name)
        built = roofline_profile(gpu_spec(gpu), model_shape(model), Parallelism(tp))
        assert preset.kv_capacity_tokens == built.kv_capacity_tokens
        assert preset.timing == built.timing
        assert fo.load_profile(preset).timing == preset.timing


def test_the_fluid_core_simulator_and_recommend_take_a_roofline_profile():
    profile = fo.preset_profile("h100-80gb-mixtral-8x7b-tp2-roofline")
    workload = fo.preset_workload("mix-p512d20-p512d50")
    limit = fo.max_stable_scale(workload, profile)
    assert 1 < limit.max_scale < np.inf and limit.stable
    from fluidopt.sim import FCFSPolicy, simulate

    stable = workload.scaled(0.6 * limit.max_scale)
    result = simulate(stable, profile, FCFSPolicy(), requests=20_000, rng=1)
    # In the stable region the simulator serves the offered decode tokens (within statistical error).
    assert result.throughput_tokens_per_s == pytest.approx(stable.decode_token_rate, rel=0.05)
    assert result.evictions == 0


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--gpu", "no-such-gpu", "--model", "llama-3-8b"], "gpu"),
        (["--gpu", "h100-80gb", "--model", "llama-3-8b", "--tp", "3"], "tensor_parallel"),
        (["--gpu", "l4", "--model", "llama-3.1-70b"], "gpu_memory_utilization"),
        (["--gpu", "h100-80gb", "--model", "llama-3-8b", "--ep"], "--ep"),
        (["--gpu", "h100-80gb", "--model", "llama-3-8b", "--gpu-memory-utilization", "1.5"], "gpu_memory_utilization"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(tmp_path, capsys, argv, field):
    out = tmp_path / "p.toml"
    assert main(["profile", "roofline", *argv, "--out", str(out)]) == 2
    assert field in capsys.readouterr().err
    assert not out.exists()


def test_a_config_json_missing_a_field_is_refused(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}), encoding="utf-8")
    out = tmp_path / "p.toml"
    assert main(["profile", "roofline", "--gpu", "h100-80gb", "--model", str(config), "--out", str(out)]) == 2
    assert "num_hidden_layers" in capsys.readouterr().err and not out.exists()


def test_the_cli_writes_a_profile_the_other_commands_load(tmp_path, capsys):
    out = tmp_path / "p.toml"
    argv = ["profile", "roofline", "--gpu", "h100-80gb", "--model", "mixtral-8x7b", "--tp", "2", "--json"]
    assert main([*argv, "--out", str(out)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kv_capacity_tokens"] == fo.load_profile(str(out)).kv_capacity_tokens
    assert document["decode_64_at_1024_s"] > document["decode_1_at_1024_s"] > 0
    assert main(["stability", "-p", str(out), "-w", "mix-p512d20-p512d50", "--plot", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_calibration_refuses_a_non_positive_efficiency():
    values = shipped_calibration().to_dict()
    values["compute_efficiency"] = 0.0
    with pytest.raises(InputError, match="compute_efficiency"):
        RooflineCalibration(**values)


def test_spec_sheet_and_efficiencies_set_the_rates():
    cal = shipped_calibration()
    timing = roofline_timing(gpu_spec("a100-80gb"), model_shape("llama-3-8b"), calibration=cal)
    assert timing.rate("compute_flops_per_s") == pytest.approx(312e12 * cal.compute_efficiency)
    doubled = replace(gpu_spec("a100-80gb"), hbm_bandwidth_bytes_per_s=2 * 2.039e12)
    faster = roofline_timing(doubled, model_shape("llama-3-8b"), calibration=cal)
    assert faster.batch_time([], [], [100]) < timing.batch_time([], [], [100])


@pytest.mark.skipif(not (SHARED / "profiles").is_dir(), reason="../shared/data is not beside the checkout")
def test_the_shipped_calibration_is_the_fit_of_the_shared_tables():
    from fluidopt.timing.fit.roofline_calibration import fit_calibration, shared_observations

    fitted = fit_calibration(shared_observations(SHARED))
    shipped = shipped_calibration()
    for key, value in fitted.to_dict().items():
        if key != "source":
            assert value == pytest.approx(getattr(shipped, key), rel=1e-6), key


@pytest.mark.skipif(not RUNS.is_dir(), reason="../shared/data/llmservingsim is not beside the checkout")
@pytest.mark.parametrize("run", ["RTX4090/Llama-3.1-8B", "RTXPRO6000/Qwen3-32B"])
def test_roofline_replay_of_the_shared_runs_meets_the_bars(run):
    """From public facts and the run's description alone: mean TPOT and E2E within 15 %, TTFT within 30 %."""
    from fluidopt.answers.replay import read_vllm_run, replay
    from fluidopt.timing.fit.roofline import roofline_profile_for_run

    result = replay(read_vllm_run(RUNS / run), roofline_profile_for_run(RUNS / run))
    errors = {(r["metric"], r["statistic"]): abs(r["fluidopt_error"]) for r in result.rows}
    assert errors[("ttft", "mean")] < 0.30
    assert errors[("tpot", "mean")] < 0.15 and errors[("e2e", "mean")] < 0.15


@pytest.mark.parametrize(
    ("hardware", "device", "expected"),
    [
        ("RTXPRO6000", "", "rtx-pro-6000"),
        ("h200", "", "h200"),
        ("", "NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("", "NVIDIA H100 PCIe", "h100-pcie"),
        ("", "NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("", "NVIDIA GeForce RTX 4090", "rtx4090"),
        ("", "NVIDIA L40S", "l40s"),
        ("", "Tesla V100-SXM2-16GB", None),
    ],
)
def test_a_runs_gpu_is_found_from_its_hardware_or_device_name(hardware, device, expected):
    from fluidopt.timing.fit.roofline import gpu_for_run

    assert gpu_for_run(hardware, device) == expected


def test_the_fluid_limit_is_where_vllm_stops_keeping_up():
    """Long decodes (p512d1000) on the H100 roofline: vllm-v1 keeps up at 90 % of the fluid limit, not at 115 %.

    The fluid batch carries less than one prefill per step here, so only that share of steps pays
    the mixed-batch decode rate; charging every step for it would put the limit near half.
    """
    from fluidopt.sim import VLLMV1Policy, simulate

    profile = fo.preset_profile("h100-80gb-llama-3-8b-tp1-roofline")
    workload = fo.preset_workload("p512d1000")
    limit = fo.max_stable_scale(workload, profile).max_scale
    below = simulate(workload.scaled(0.9 * limit), profile, VLLMV1Policy(), requests=20_000, rng=2)
    above = simulate(workload.scaled(1.15 * limit), profile, VLLMV1Policy(), requests=20_000, rng=2)
    assert below.status == "ok" and below.evictions == 0
    assert below.throughput_tokens_per_s == pytest.approx(workload.scaled(0.9 * limit).decode_token_rate, rel=0.05)
    assert above.status == "overloaded"
