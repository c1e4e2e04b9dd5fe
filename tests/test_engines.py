"""The policy registry and the engine schedulers (vllm-v1, sglang): hand-traced steps and properties."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fluidopt as fo
from fluidopt.errors import InputError
from fluidopt.profile import linear_profile
from fluidopt.sim import SGLangPolicy, TraceArrivals, VLLMV1Policy, WaitPolicy, simulate
from fluidopt.sim.policies import (
    BASELINE_POLICIES,
    POLICY_NAMES,
    REGISTRY,
    make_policy,
    policy_spec,
    selector_index,
)
from fluidopt.thresholds.io import default_policy
from fluidopt.trace import Trace
from fluidopt.workload import workload_from_trace

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmservingsim"
RTX_RUN = SHARED / "runs" / "RTX4090" / "Llama-3.1-8B" / "vllm"


def trace_of(prompts, outputs, times=None) -> tuple[fo.Workload, TraceArrivals]:
    times = np.zeros(len(prompts)) if times is None else np.asarray(times, dtype=float)
    trace = Trace("hand", np.asarray(prompts, dtype=np.int64), np.asarray(outputs, dtype=np.int64), times)
    workload = workload_from_trace(trace, bins=1, rate_per_s=1.0)
    return workload, TraceArrivals(trace, bins=1)


UNIT_STEP = linear_profile("unit-step", 12, 1.0, 0.0)  # every step takes 1 s; C = 12 tokens


def series_table(result, columns):
    return [tuple(int(result.series[c][k]) for c in columns) for k in range(result.series["start_s"].size)]


COLUMNS = ("batch_size", "prefill_tokens", "scheduled_tokens", "admitted", "preempted", "memory_tokens", "running")


def test_vllm_v1_hand_traced_steps():
    # Requests A (3 prompt, 3 out), B (2, 2), C (4, 2), D (1, 1), all at t = 0; 1-token blocks, one null block
    # (11 usable), max_num_seqs 3, max_num_batched_tokens 4.  Step by step, from the rules in ENGINES.md:
    #  1: admit A (chunk 3) and B (chunk 1: the budget's last token).          A emits its first token.
    #  2: A decodes (KV 4), B finishes its prompt (KV 2), admit C (chunk 2).  (C's whole prompt, 4, fits in 5 free)
    #  3: A decodes (KV 5), B decodes (KV 3); C needs 2 blocks, 1 is free: C, the latest admitted, preempts itself;
    #     no admission in this step.  A and B complete.
    #  4: C readmitted, whole prompt (4).  5: C decodes, D admitted (prompt 1 = its only output token).
    # (Prefix caching off here; the next test traces the same requests with it on.)
    workload, arrivals = trace_of([3, 2, 4, 1], [3, 2, 2, 1])
    policy = VLLMV1Policy(max_num_seqs=3, max_num_batched_tokens=4, block_size=1, enable_prefix_caching=False)
    result = simulate(
        workload, UNIT_STEP, policy, requests=4, arrivals=arrivals, drain=True, record_series=True, record_requests=True
    )
    assert series_table(result, COLUMNS) == [
        (2, 4, 4, 2, 0, 4, 2),
        (3, 3, 4, 1, 0, 8, 3),
        (2, 0, 2, 0, 1, 8, 2),
        (1, 4, 4, 1, 0, 4, 1),
        (2, 1, 2, 1, 0, 6, 2),
    ]
    done = dict(zip(result.requests["id"].tolist(), result.requests["completion_s"].tolist()))
    first = dict(zip(result.requests["id"].tolist(), result.requests["first_token_s"].tolist()))
    assert done == {0: 3.0, 1: 3.0, 2: 5.0, 3: 5.0}
    assert first == {0: 1.0, 1: 2.0, 2: 4.0, 3: 5.0}
    assert result.evictions == 1 and result.preemption_steps == 1 and result.eviction == "recompute"


def test_vllm_v1_hand_traced_steps_with_prefix_caching():
    # As above with vLLM's default prefix caching.  Blocks 0-10 start free; by C's preemption in step 3 the
    # queue has handed out 10 (A 5, B 3, C 2), and C's two computed blocks join its tail as numbers 11 and 12:
    # neither is reused before step 4, so C is readmitted with 2 cached tokens and computes the other 2,
    # leaving 2 of the budget for D in the same step (D completes: its prompt is its only output token).
    workload, arrivals = trace_of([3, 2, 4, 1], [3, 2, 2, 1])
    policy = VLLMV1Policy(max_num_seqs=3, max_num_batched_tokens=4, block_size=1)
    result = simulate(
        workload, UNIT_STEP, policy, requests=4, arrivals=arrivals, drain=True, record_series=True, record_requests=True
    )
    assert series_table(result, COLUMNS) == [
        (2, 4, 4, 2, 0, 4, 2),
        (3, 3, 4, 1, 0, 8, 3),
        (2, 0, 2, 0, 1, 8, 2),
        (2, 3, 3, 2, 0, 5, 2),
        (1, 0, 1, 0, 0, 5, 1),
    ]
    done = dict(zip(result.requests["id"].tolist(), result.requests["completion_s"].tolist()))
    assert done == {0: 3.0, 1: 3.0, 2: 5.0, 3: 4.0}
    assert result.prefix_hit_tokens == 2 and result.recomputed_tokens == 0  # the 2 tokens it had computed


def test_sglang_hand_traced_steps():
    # The same requests; C = 12 tokens, page 1, max_running_requests 3, chunked_prefill_size = max_prefill_tokens = 4,
    # conservativeness 1 (new_token_ratio 0.7).  Room = free - sum(min(max_new - generated, 4096) x ratio):
    #  1: prefill A (needs 3 + 3 < 12); B's prompt (2) exceeds the 1 prefill token left.
    #  2: room 9 - 2 x 0.7 = 7.6: prefill B (2 + 2 < 7.6); C needs 4 + 2 >= 3.6.
    #  3: room 7 - 2.1 = 4.9 < 6 for C: no prefill batch, A and B decode (B completes).
    #  4: room 8 - 0.699 = 7.3: prefill C.  5: room 4 - 1.398 = 2.6 > 1 + 1: prefill D (completes).
    #  6: A and C decode and complete.
    workload, arrivals = trace_of([3, 2, 4, 1], [3, 2, 2, 1])
    policy = SGLangPolicy(max_running_requests=3, chunked_prefill_size=4, max_prefill_tokens=4)
    result = simulate(
        workload, UNIT_STEP, policy, requests=4, arrivals=arrivals, drain=True, record_series=True, record_requests=True
    )
    assert series_table(result, COLUMNS) == [
        (1, 3, 3, 1, 0, 3, 1),
        (1, 2, 2, 1, 0, 5, 2),
        (2, 0, 2, 0, 0, 7, 2),
        (1, 4, 4, 1, 0, 8, 2),
        (1, 1, 1, 1, 0, 9, 3),
        (2, 0, 2, 0, 0, 10, 2),
    ]
    done = dict(zip(result.requests["id"].tolist(), result.requests["completion_s"].tolist()))
    assert done == {0: 6.0, 1: 3.0, 2: 6.0, 3: 5.0}


def test_sglang_retracts_fewest_generated_longest_prompt_first():
    # Two decoding requests fill C: the one with fewer generated tokens (ties: the longer prompt) is retracted,
    # requeued at the back and recomputed; everything completes.
    workload, arrivals = trace_of([4, 5, 1], [6, 6, 1], [0.0, 0.0, 0.5])
    profile = linear_profile("unit-step", 16, 1.0, 0.0)
    policy = SGLangPolicy(
        max_running_requests=4, chunked_prefill_size=16, max_prefill_tokens=16, schedule_conservativeness=0.01
    )
    result = simulate(workload, profile, policy, requests=3, arrivals=arrivals, drain=True, record_requests=True)
    assert result.evictions >= 1 and result.unfinished_requests == 0
    assert result.peak_memory_tokens <= 16


# ---------------------------------------------------------------- registry


def registered_policy(name: str, workload, profile):
    spec = policy_spec(name)
    if spec.needs_thresholds:
        if name in ("wait-cp", "nested-wait-cp"):
            from fluidopt.thresholds.chunked import wait_cp_thresholds

            return wait_cp_thresholds(workload, profile, nested=name == "nested-wait-cp").policy()
        return default_policy(name, workload, profile)
    return make_policy(name)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_registered_policy_compiled_equals_python_conserves_and_respects_memory(name):
    profile = fo.preset_profile("a100-80gb-llama-2-7b")
    workload = fo.preset_workload("mix-p512d20-p512d50").with_total_rate(12)
    policy = registered_policy(name, workload, profile)
    assert policy.name == name
    compiled = simulate(workload, profile, policy, requests=300, rng=3)
    plain = simulate(workload, profile, policy, requests=300, rng=3, compiled=False)
    keys = ("completed_requests", "iterations", "evictions", "mean_latency_s", "peak_memory_tokens", "mean_tpot_s")
    assert [getattr(compiled, k) for k in keys] == [getattr(plain, k) for k in keys]
    assert compiled.arrived_requests == compiled.completed_requests + compiled.unfinished_requests
    if compiled.status != "overflow":
        assert compiled.peak_memory_tokens <= profile.kv_capacity_tokens


def test_unknown_policy_is_an_error_not_a_fallback():
    with pytest.raises(InputError, match="unknown policy"):
        make_policy("vllm-v2")
    with pytest.raises(InputError, match="unknown policy"):
        policy_spec("sarathi2")

    class Unregistered:
        name = "x"

    with pytest.raises(InputError, match="not a registered policy type"):
        selector_index(Unregistered())


def test_registry_drives_the_baseline_lists_and_glossary():
    from fluidopt.experiments.catalog import CAPACITY_POLICIES
    from fluidopt.experiments.compare import baseline_candidates

    assert set(BASELINE_POLICIES) <= set(CAPACITY_POLICIES)
    assert {"vllm-v1", "sglang"} <= set(BASELINE_POLICIES)
    families = {setting["family"] for _, setting in baseline_candidates()}
    assert families == {name for name in BASELINE_POLICIES if REGISTRY[name].grid is not None}
    glossary = (Path(__file__).resolve().parents[1] / "docs" / "GLOSSARY.md").read_text()
    for name, spec in REGISTRY.items():
        assert f"| `{name}` | {spec.summary} |" in glossary, name


# ---------------------------------------------------------------- the WAIT invariant


class AdmitsOneTooMany(WaitPolicy):
    """WAIT whose admission cap is one above the thresholds the invariant is checked against."""

    def kernel_pack(self, workload, max_stage):
        pack = super().kernel_pack(workload, max_stage)
        params = pack.params_i.copy()
        m = len(self.thresholds)
        params[4 : 4 + m] += 1  # admission / per-stage caps; the invariant caps stay n_j
        return replace(pack, params_i=params)  # the same pack (it still tracks the invariant), caps + 1


def test_wait_invariant_tracked_and_catches_a_broken_wait():
    workload = fo.preset_workload("p512d20").with_total_rate(20)
    profile = fo.preset_profile("a100-80gb-llama-2-7b")
    real = simulate(workload, profile, WaitPolicy((4,)), requests=2000, rng=1)
    broken = simulate(workload, profile, AdmitsOneTooMany((4,)), requests=2000, rng=1)
    assert real.max_stage_excess is not None and -(10**9) < real.max_stage_excess <= 0
    assert broken.max_stage_excess >= 1


# ---------------------------------------------------------------- properties


request_lists = st.lists(st.tuples(st.integers(1, 40), st.integers(1, 12), st.floats(0, 3)), min_size=1, max_size=25)


def _run(policy, requests, capacity):
    prompts, outputs, gaps = zip(*requests)
    workload, arrivals = trace_of(prompts, outputs, np.cumsum(gaps))
    profile = linear_profile("prop", capacity, 0.5, 0.001)
    return simulate(workload, profile, policy, requests=len(prompts), arrivals=arrivals, drain=True, record_series=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=request_lists,
    seqs=st.integers(1, 6),
    budget=st.integers(1, 48),
    threshold=st.integers(0, 48),
    block=st.sampled_from([1, 4, 16]),
    reserve=st.booleans(),
)
def test_vllm_v1_properties(requests, seqs, budget, threshold, block, reserve):
    capacity = 128
    policy = VLLMV1Policy(
        max_num_seqs=seqs,
        max_num_batched_tokens=budget,
        long_prefill_token_threshold=min(threshold, budget),
        block_size=block,
        scheduler_reserve_full_isl=reserve,
    )
    result = _run(policy, requests, capacity)
    s = result.series
    assert result.unfinished_requests == 0 and result.completed_requests == len(requests)  # preempted ones complete
    assert np.all(s["scheduled_tokens"] <= budget)
    assert np.all(s["running"] <= seqs)
    assert np.all(s["memory_tokens"] <= capacity - block)  # one null block
    assert not np.any((s["preempted"] > 0) & (s["admitted"] > 0))  # no admission in a step that preempted
    assert result.overflow_iterations == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=request_lists,
    running=st.integers(1, 6),
    chunk=st.integers(1, 48),
    prefill=st.integers(1, 64),
    conservativeness=st.floats(0.05, 3.0),
    mixed=st.booleans(),
)
def test_sglang_properties(requests, running, chunk, prefill, conservativeness, mixed):
    capacity = 128
    policy = SGLangPolicy(
        max_running_requests=running,
        chunked_prefill_size=chunk,
        max_prefill_tokens=prefill,
        schedule_conservativeness=conservativeness,
        enable_mixed_chunk=mixed,
    )
    result = _run(policy, requests, capacity)
    s = result.series
    assert result.unfinished_requests == 0 and result.completed_requests == len(requests)  # retracted ones complete
    assert np.all(s["prefill_tokens"] <= chunk)
    assert np.all(s["running"] <= running)
    assert np.all(s["memory_tokens"] <= capacity)
    assert result.overflow_iterations == 0
    if not mixed:  # a step is a prefill batch or a decode batch
        decodes = s["scheduled_tokens"] - s["prefill_tokens"]
        assert not np.any((s["prefill_tokens"] > 0) & (decodes > 0))


# ---------------------------------------------------------------- memory pressure


def sharegpt_like(n: int = 300, seed: int = 0):
    """A ShareGPT-like request list (lognormal prompts and outputs), arriving at about 10 requests/s."""
    rng = np.random.default_rng(seed)
    prompts = np.clip(rng.lognormal(5.3, 1.0, n), 4, 3000).astype(int)
    outputs = np.clip(rng.lognormal(5.2, 0.9, n), 1, 1500).astype(int)
    times = np.cumsum(rng.exponential(0.1, n))
    return prompts, outputs, times


def rtx4090_requests():
    """The RTX 4090 run's own requests when the shared data is present, else a ShareGPT-like stand-in."""
    path = RTX_RUN / "requests.jsonl"
    if not path.exists():
        return sharegpt_like()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    arrivals = np.array([r["arrival_time"] for r in rows], dtype=float)
    order = np.argsort(arrivals, kind="stable")
    prompts = np.array([rows[i]["input_toks"] for i in order])
    outputs = np.array([max(1, rows[i]["output_toks"]) for i in order])
    return prompts, outputs, arrivals[order] - arrivals[order][0]


def test_memory_pressure_vllm_preempts_and_sglang_reservation_retracts_fewer():
    # The RTX 4090 run (41,408 KV tokens, 300 ShareGPT requests in 29 s): KV demand far above C.
    prompts, outputs, times = rtx4090_requests()
    workload, arrivals = trace_of(prompts, outputs, times)
    profile = linear_profile("rtx4090-kv", 41_408, 0.02, 1e-7)  # the run's 2,588 blocks x 16 tokens
    run = {"requests": prompts.size, "arrivals": arrivals, "drain": True, "warmup_s": 0.0}
    vllm = simulate(workload, profile, VLLMV1Policy(), **run)
    assert vllm.evictions > 0 and vllm.recomputed_tokens > 0 and vllm.unfinished_requests == 0
    assert vllm.peak_memory_tokens <= profile.kv_capacity_tokens
    for conservativeness in (0.3, 1.0, 3.0):
        sglang = simulate(workload, profile, SGLangPolicy(schedule_conservativeness=conservativeness), **run)
        assert sglang.unfinished_requests == 0 and sglang.peak_memory_tokens <= profile.kv_capacity_tokens
        # SGLang reserves KV for the running requests' future tokens; vLLM V1 reserves none.
        assert 0 < sglang.evictions < vllm.evictions


# ---------------------------------------------------------------- results and CLI


def test_engine_metrics_named_as_vllm_bench_serve():
    workload = fo.preset_workload("p512d20").with_total_rate(10)
    profile = fo.preset_profile("a100-80gb-llama-2-7b")
    out = simulate(workload, profile, VLLMV1Policy(), requests=500, rng=2).to_dict()
    for key in ("ttft", "tpot", "itl", "e2e", "e2el"):
        assert set(out[key]) == {"mean_ms", "median_ms", "p90_ms", "p99_ms"}
    assert out["preemptions"] == out["evictions"] and out["peak_running_requests"] >= 1
    assert math.isclose(out["tpot"]["mean_ms"], 1e3 * out["mean_tpot_s"])
    assert out["e2e"]["mean_ms"] > out["ttft"]["mean_ms"]


def fluidopt(*args):
    return subprocess.run([sys.executable, "-m", "fluidopt", *args], capture_output=True, text=True)


def test_cli_engine_policies_with_their_knobs(tmp_path):
    vllm = fluidopt(
        "simulate",
        "-w",
        "p512d20",
        "-p",
        "a100-80gb-llama-2-7b",
        "--rate",
        "15",
        "--requests",
        "2000",
        "--policy",
        "vllm-v1",
        "--max-num-seqs",
        "64",
        "--max-num-batched-tokens",
        "2048",
        "--long-prefill-token-threshold",
        "512",
        "--json",
    )
    assert vllm.returncode == 0, vllm.stderr
    data = json.loads(vllm.stdout)
    assert data["settings"]["max_num_seqs"] == 64 and data["settings"]["long_prefill_token_threshold"] == 512
    assert data["peak_running_requests"] <= 64 and {"ttft", "tpot", "e2e", "preemptions"} <= set(data)
    sglang = fluidopt(
        "simulate",
        "-w",
        "p512d20",
        "-p",
        "a100-80gb-llama-2-7b",
        "--rate",
        "15",
        "--requests",
        "2000",
        "--policy",
        "sglang",
        "--max-running-requests",
        "64",
        "--chunked-prefill-size",
        "2048",
        "--schedule-conservativeness",
        "1.0",
        "--json",
    )
    assert sglang.returncode == 0, sglang.stderr
    data = json.loads(sglang.stdout)
    assert data["settings"]["max_running_requests"] == 64 and data["retractions"] == data["evictions"]
    assert data["peak_running_requests"] <= 64


def test_cli_engine_policy_on_trace_arrivals():
    trace = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "splitwise_conv.csv"
    if not trace.exists():
        pytest.skip("shared traces absent")
    run = fluidopt(
        "simulate",
        "-w",
        str(trace),
        "-p",
        "a100-80gb-llama-3-8b",
        "--arrivals",
        "trace",
        "--requests",
        "1500",
        "--policy",
        "vllm-v1",
        "--max-num-seqs",
        "128",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["completed_requests"] > 1000


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--policy", "vllm-v1", "--max-num-seqs", "0"], "max_num_seqs"),
        (["--policy", "vllm-v1", "--max-num-seqs", "-3"], "max_num_seqs"),
        (
            ["--policy", "vllm-v1", "--max-num-batched-tokens", "256", "--long-prefill-token-threshold", "512"],
            "long_prefill_token_threshold",
        ),
        (["--policy", "sglang", "--schedule-conservativeness", "0"], "schedule_conservativeness"),
        (["--policy", "sglang", "--schedule-conservativeness", "-1"], "schedule_conservativeness"),
        (["--policy", "sglang", "--max-running-requests", "-1"], "max_running_requests"),
        (["--policy", "wait", "--max-num-seqs", "64"], "--max-num-seqs"),
        (["--policy", "sglang", "--max-num-batched-tokens", "64"], "--max-num-batched-tokens"),
        (["--policy", "vllm-v1", "--eviction", "restart"], "eviction"),
    ],
)
def test_cli_engine_bad_input(args, flag, tmp_path):
    run = fluidopt("simulate", "-w", "p512d20", "--requests", "100", *args)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0]
    assert not any(tmp_path.iterdir())
