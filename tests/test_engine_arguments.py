"""Engine arguments that change what a step costs: prefix-cache hits, cpu_offload_gb, async scheduling."""

from __future__ import annotations

import numpy as np
import pytest

from fluidopt.answers.prefix_hits import conversation_hits, rate_hits
from fluidopt.answers.replay import read_vllm_run, replay
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.profile import load_profile
from fluidopt.sim import TraceArrivals, VLLMV1Policy, simulate
from fluidopt.timing.fit.roofline import engine_roofline_profile, vllm_async_scheduling
from fluidopt.trace import Trace
from fluidopt.workload import workload_from_trace

PROFILE = "h100-80gb-llama-3-8b-tp1-roofline"


def run_trace(trace: Trace, policy: VLLMV1Policy, profile=None):
    profile = profile or load_profile(PROFILE)
    workload = workload_from_trace(trace, bins=1, rate_per_s=10.0)
    return simulate(
        workload,
        profile,
        policy,
        requests=trace.num_requests,
        arrivals=TraceArrivals(trace, bins=1),
        drain=True,
        warmup_s=0.0,
        record_requests=True,
    )


def test_conversation_hits_by_hand():
    # Block 16; group a: turn 1 (prompt 40, output 10) leaves 48 tokens (3 blocks) cached; turn 2
    # (prompt 70) finds them.  Group b's first turn finds nothing.
    hits = conversation_hits(np.array(["a", "b", "a"]), np.array([40, 30, 70]), np.array([10, 5, 5]), 10_000, 16)
    assert hits.tolist() == [0, 0, 48]
    # A cache of 48 tokens holds one group: b's turn drops a's context, so a's second turn misses.
    hits = conversation_hits(np.array(["a", "b", "a"]), np.array([40, 40, 70]), np.array([10, 10, 5]), 48, 16)
    assert hits.tolist() == [0, 0, 0]
    # At least one prompt token is computed.
    hits = conversation_hits(np.array(["a", "a"]), np.array([32, 32]), np.array([16, 1]), 10_000, 16)
    assert hits.tolist() == [0, 16]


def test_rate_hits_by_hand():
    assert rate_hits(np.array([100, 33, 16]), 0.5, 16).tolist() == [48, 16, 0]


def test_cached_prompt_tokens_skip_prefill_and_are_counted():
    rng = np.random.default_rng(0)
    n = 200
    prompts = rng.integers(500, 3000, n)
    outputs = rng.integers(10, 200, n)
    arrivals = np.cumsum(rng.exponential(0.1, n)) - 0.0
    arrivals -= arrivals[0]
    cold = run_trace(Trace("cold", prompts, outputs, arrivals), VLLMV1Policy())
    cached = (prompts * 0.75).astype(np.int64)
    warm = run_trace(Trace("warm", prompts, outputs, arrivals, cached), VLLMV1Policy())
    off = run_trace(Trace("off", prompts, outputs, arrivals, cached), VLLMV1Policy(enable_prefix_caching=False))
    assert warm.prefix_hit_tokens == int(np.sum(cached // 16 * 16))
    assert off.prefix_hit_tokens == 0 and cold.prefix_hit_tokens == 0
    ttft = {
        name: np.mean(r.requests["first_token_s"] - r.requests["arrival_s"])
        for name, r in (("cold", cold), ("warm", warm))
    }
    assert ttft["warm"] < 0.6 * ttft["cold"]
    assert warm.recomputed_tokens == 0


def test_cpu_offload_reads_the_offloaded_weights_every_step_and_frees_kv():
    spec, shape = gpu_spec("h100-80gb"), model_shape("llama-3-8b")
    plain = engine_roofline_profile(spec, shape, {}, {}, "llama-3-8b")
    offloaded = engine_roofline_profile(spec, shape, {"cpu_offload_gb": 4}, {}, "llama-3-8b")
    extra = 4 * 2**30 / spec.host_bandwidth_bytes_per_s
    decode = [1000] * 8
    assert offloaded.batch_time([], [], decode) == pytest.approx(plain.batch_time([], [], decode) + extra, rel=1e-9)
    kv_bytes = plain.timing.amount("kv_bytes_per_token")
    assert offloaded.kv_capacity_tokens - plain.kv_capacity_tokens == pytest.approx(4 * 2**30 / kv_bytes, abs=16)
    logged = engine_roofline_profile(
        spec, shape, {"cpu_offload_gb": 4}, {"num_gpu_blocks": 1000, "block_size": 16}, "llama-3-8b"
    )
    assert logged.kv_capacity_tokens == 16_000  # the engine's own count already holds the freed memory


def test_async_scheduling_hides_cpu_work_and_delays_arrivals_of_a_busy_step():
    base = load_profile(PROFILE)
    cpu_heavy = base.timing.scaled(step_overhead_s=0.02)
    sync = cpu_heavy.batch_time([], [], [1000] * 8)
    overlapped = cpu_heavy.scaled(async_scheduling=True).batch_time([], [], [1000] * 8)
    gpu = base.timing.batch_time([], [], [1000] * 8)
    assert sync == pytest.approx(gpu + 0.02, rel=1e-9)
    sampler = base.timing.rate("step_overhead_s")
    assert overlapped == pytest.approx(max(gpu - sampler, 0.02 + sampler), rel=1e-9)
    # A steady stream of short requests: under async scheduling a request arriving during a busy
    # step waits for the step after next, so mean TTFT grows by a fraction of a step.
    n = 300
    arrivals = np.arange(n) * 0.004
    trace = Trace("steady", np.full(n, 64), np.full(n, 50), arrivals)
    plain = run_trace(trace, VLLMV1Policy())
    lagged = run_trace(trace, VLLMV1Policy(async_scheduling=True))
    ttft = [np.mean(r.requests["first_token_s"] - r.requests["arrival_s"]) for r in (plain, lagged)]
    assert ttft[1] > ttft[0]
    # An idle engine plans at once: one request alone sees no lag.
    alone = Trace("alone", np.array([64]), np.array([5]), np.array([0.0]))
    one = [run_trace(alone, VLLMV1Policy(async_scheduling=flag)).requests["first_token_s"][0] for flag in (False, True)]
    assert one[0] == one[1]


def test_async_scheduling_is_read_from_the_run_or_its_version():
    assert vllm_async_scheduling({"engine_kwargs": {"async_scheduling": False}, "vllm_version": "0.19.0"}) is False
    assert vllm_async_scheduling({"resolved_config": {"scheduler_config": {"async_scheduling": True}}}) is True
    assert vllm_async_scheduling({"engine_kwargs": {}, "vllm_version": "0.19.1"}) is True
    assert vllm_async_scheduling({"engine_kwargs": {}, "vllm_version": "0.10.2"}) is False


def test_plain_run_with_hit_columns_replays_faster_than_without(tmp_path):
    engine = '[engine]\nname = "vllm"\nversion = "0.19.0"\nmodel = "llama-3-8b"\ngpu = "h100-80gb"\n'
    rows = [f"{0.05 * i:.3f},{2000},{20},1.0,2.0" for i in range(60)]
    for name, header, extra in (
        ("cold", "arrival_s,input_tokens,output_tokens,ttft_s,e2e_s", [""] * 60),
        ("warm", "arrival_s,input_tokens,output_tokens,ttft_s,e2e_s,cached_prompt_tokens", [",1800"] * 60),
        ("chat", "arrival_s,input_tokens,output_tokens,ttft_s,e2e_s,prefix_group", [",g"] * 60),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "engine.toml").write_text(engine, encoding="utf-8")
        lines = [header, *[row + more for row, more in zip(rows, extra)]]
        (folder / "requests.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ttft = {}
    for name in ("cold", "warm", "chat"):
        run = read_vllm_run(tmp_path / name)
        result = replay(run, engine_roofline_profile(gpu_spec("h100-80gb"), model_shape("llama-3-8b"), {}, {}, ""))
        ttft[name] = next(r["fluidopt"] for r in result.rows if r["metric"] == "ttft" and r["statistic"] == "mean")
    assert ttft["warm"] < ttft["cold"] and ttft["chat"] < ttft["cold"]


def test_replay_and_simulate_report_steps_and_preemptions(tmp_path):
    import json
    import subprocess
    import sys

    engine = (
        '[engine]\nname = "vllm"\nversion = "0.19.0"\nmodel = "llama-3-8b"\ngpu = "h100-80gb"\nnum_gpu_blocks = 40\n'
    )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "engine.toml").write_text(engine, encoding="utf-8")
    rows = [f"{0.01 * i:.2f},300,200,0.1,2.0" for i in range(40)]
    (folder / "requests.csv").write_text("\n".join(["arrival_s,input_tokens,output_tokens,ttft_s,e2e_s", *rows]) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "fluidopt", "replay", str(folder), "-p", "roofline", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["steps"] > 200 and document["preemptions"] > 0  # 640 KV tokens for 40 requests of 500
    done = subprocess.run(
        [sys.executable, "-m", "fluidopt", "simulate", "-w", "p512d20", "-p", "a100-80gb-llama-3-8b"]
        + ["--policy", "vllm-v1", "--requests", "200", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    document = json.loads(done.stdout)
    assert document["steps"] == document["iterations"] > 0 and "preemptions" in document
