"""Engine settings from the fluid model (fluidopt recommend) and the stable-by-construction chunked design."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import fluidopt as fo
from fluidopt.answers.recommend import command_line, fluid_settings, recommend, sglang_running_cap
from fluidopt.experiments.evaluate import evaluate_run
from fluidopt.experiments.runs import RunSettings, Targets, pipeline_pass_time_s, steady_state_run
from fluidopt.thresholds.chunked import wait_cp_thresholds

PROFILE = fo.preset_profile("rtx4090-llama-3.1-8b-vllm")
P512 = fo.preset_workload("p512d20")
LIMIT = fo.max_stable_scale(P512, PROFILE).max_rate_per_s


def test_vllm_settings_follow_the_chunked_design():
    workload = P512.with_total_rate(0.85 * LIMIT)
    design = wait_cp_thresholds(workload, PROFILE, conventions="fluidopt")
    knobs, rows = fluid_settings("vllm", workload, PROFILE)
    assert knobs["max_num_batched_tokens"] >= design.total_budget_tokens
    assert knobs["max_num_batched_tokens"] % 8 == 0
    assert knobs["long_prefill_token_threshold"] >= design.prefill_budget_tokens
    assert knobs["long_prefill_token_threshold"] <= knobs["max_num_batched_tokens"]
    widest = wait_cp_thresholds(workload, PROFILE, conventions="fluidopt", kappa=design.interval[1])
    assert design.tl <= knobs["max_num_seqs"] <= widest.tl
    assert {r.knob for r in rows} == set(knobs)
    line = command_line("vllm", knobs, "meta-llama/Llama-3.1-8B")
    assert line.startswith("vllm serve meta-llama/Llama-3.1-8B --max-num-seqs ")
    assert "--long-prefill-token-threshold" in line


def test_sglang_settings_and_running_cap_keep_up():
    workload = P512.with_total_rate(0.85 * LIMIT)
    knobs, _ = fluid_settings("sglang", workload, PROFILE)
    assert set(knobs) == {
        "max_running_requests",
        "chunked_prefill_size",
        "max_prefill_tokens",
        "schedule_conservativeness",
    }
    assert 0.05 <= knobs["schedule_conservativeness"] <= 10
    low, _ = sglang_running_cap(P512.with_total_rate(0.5 * LIMIT), PROFILE, 8192)
    high, _ = sglang_running_cap(P512.with_total_rate(0.9 * LIMIT), PROFILE, 8192)
    assert 1 <= low <= high  # more load needs more running requests to keep up
    assert command_line("sglang", knobs).startswith("python -m sglang.launch_server --model-path MODEL")


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_recommendation_is_the_best_validated_setting(engine):
    result = recommend(engine, P512.with_total_rate(0.8 * LIMIT), PROFILE, replicates=2, requests=1500)
    assert result.status == "ok" and result.knobs
    compared = [e for k, e in result.evaluations.items() if e is not None and "fresh" not in k]
    chosen = [e for e in compared if {k: v for k, v in e.description.items() if k != "source"} == result.knobs]
    assert chosen, "the recommended knobs are one of the validated settings"
    best = min(compared, key=lambda e: (not e.meets, not e.stable, e.mean("mean_latency_s")))
    if "the defaults are handed out" not in result.message:
        assert chosen[0].mean("mean_latency_s") == best.mean("mean_latency_s")
    low, high = result.gain_interval_s
    assert low <= result.gain_s <= high
    assert 0 < result.max_rate_recommended_per_s <= result.fluid_max_rate_per_s
    # The handing-out rule: never a setting that holds less load under the SLO than the defaults.
    assert result.max_rate_recommended_per_s >= result.max_rate_default_per_s
    if low <= 0 <= high and not result.source.startswith("engine defaults"):
        assert "not significantly faster than the defaults" in result.message
    assert result.source.split()[0] in ("fluid-derived", "grid", "engine")


def test_unmeetable_slo_and_overload_are_answers_not_searches():
    tight = recommend("vllm", P512.with_total_rate(10), PROFILE, targets=Targets(p99_tpot_s=1e-4))
    assert tight.status == "no-configuration" and "decode step alone" in tight.message
    assert tight.evaluations == {} and tight.grid_time_s == 0.0
    over = recommend("sglang", P512.with_total_rate(1.2 * LIMIT), PROFILE, replicates=2, requests=800, rate_steps=3)
    assert over.status == "unstable" and f"{LIMIT:.4g}" in over.message
    assert 0 < over.max_rate_recommended_per_s < LIMIT


# The fluid-derived chunked design is stable by construction where the fluid model says the load is,
# judged on runs that reach the steady state (steady_state_run: a warm-up of two passes of the
# longest request through the pipeline, four more measured; at 95 % the lmsys-like pipeline holds
# about 1,800 requests and takes about 100 s to fill, longer than a 4,000-request run lasts).


@pytest.mark.parametrize("profile_name", ["a100-80gb-llama-3-8b-vidur", "a100-80gb-llama-2-7b"])
@pytest.mark.parametrize("workload_name", ["p512d20", "mix-p512d20-p512d50", "p512d1000", "lmsys-like"])
def test_fluid_derived_chunked_design_is_stable(profile_name, workload_name):
    profile = fo.preset_profile(profile_name)
    base = fo.preset_workload(workload_name)
    limit = fo.max_stable_scale(base, profile).max_rate_per_s
    for fraction in (0.7, 0.85, 0.95):
        workload = base.with_total_rate(fraction * limit)
        nested = len({c.decode_tokens for c in workload.classes}) > 1
        design = wait_cp_thresholds(workload, profile, conventions="fluidopt", nested=nested)
        assert design.utilisation < 1.0
        pass_time = pipeline_pass_time_s(workload, design.kappa, design.chunk_tokens)
        run, options = steady_state_run(
            RunSettings(replicates=2, requests=4000, seed=1), workload.total_rate_per_s, pass_time
        )
        evaluation = evaluate_run(workload, profile, [(design.policy(), {})], run, options=options)[0]
        assert evaluation.stable, (profile_name, workload_name, fraction, run.requests)


def fluidopt(*args):
    return subprocess.run([sys.executable, "-m", "fluidopt", *args], capture_output=True, text=True)


def test_cli_recommend():
    run = fluidopt(
        "recommend",
        "--engine",
        "vllm",
        "-w",
        "p512d20",
        "-p",
        "rtx4090-llama-3.1-8b-vllm",
        "--rate",
        "12",
        "--p99-e2e-s",
        "10",
        "--replicates",
        "2",
        "--requests",
        "1000",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["command"].startswith("vllm serve MODEL") and data["recommended"]
    assert {"fluid-derived", "engine defaults", "grid best"} <= set(data["evaluations"])
    for args, flag in (
        (["--engine", "tgi"], "--engine"),
        (["--engine", "vllm", "--p99-tpot-s", "-1"], "--p99-tpot-s"),
        (["--engine", "vllm", "--replicates", "1"], "--replicates"),
        (["--engine", "vllm", "--rate", "-2"], "rate"),
    ):
        bad = fluidopt("recommend", "-w", "p512d20", *args)
        assert bad.returncode == 2 and flag in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    over = fluidopt(
        "recommend",
        "--engine",
        "vllm",
        "-w",
        "p512d20",
        "-p",
        "rtx4090-llama-3.1-8b-vllm",
        "--rate",
        "40",
        "--replicates",
        "2",
        "--requests",
        "500",
    )
    assert over.returncode == 0 and "above the fluid limit" in over.stdout


def test_steady_state_run_by_hand_and_it_still_sees_overload():
    run, options = steady_state_run(RunSettings(replicates=2, requests=100, seed=0), 10.0, 5.0)
    assert run.requests == 300 and options == {"warmup_s": 10.0}  # 10/s x (2 + 4) passes of 5 s
    longer, options = steady_state_run(RunSettings(replicates=2, requests=10_000, seed=0), 10.0, 5.0)
    assert longer.requests == 10_000 and options["warmup_s"] == pytest.approx(100.0)  # simulate's 10 % of the span
    assert steady_state_run(run, 10.0, float("nan")) == (run, {})
    assert pipeline_pass_time_s(fo.preset_workload("p512d20"), 0.05, 256) == pytest.approx(0.05 * (2 + 20))
    # Overload is still overload on the longer runs: a design for the fluid limit, fed 30 % more.
    workload = P512.with_total_rate(0.9 * LIMIT)
    design = wait_cp_thresholds(workload, PROFILE)
    over = P512.with_total_rate(1.3 * LIMIT)
    run, options = steady_state_run(
        RunSettings(replicates=2, requests=2000, seed=1),
        over.total_rate_per_s,
        pipeline_pass_time_s(over, design.kappa, design.chunk_tokens),
    )
    assert not evaluate_run(over, PROFILE, [(design.policy(), {})], run, options=options)[0].stable


@pytest.mark.parametrize(
    ("memory_gib", "name", "usage", "tokens", "seqs"),
    [
        # vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults (vLLM 0.10-0.19)
        (79.2, "NVIDIA H100 80GB HBM3", "api-server", 8192, 1024),
        (139.8, "NVIDIA H200", "api-server", 8192, 1024),
        (89.4, "RTXPRO6000", "api-server", 8192, 1024),
        (79.2, "NVIDIA A100-SXM4-80GB", "api-server", 2048, 256),
        (23.5, "NVIDIA GeForce RTX 4090", "api-server", 2048, 256),
        (None, "", "api-server", 2048, 256),
        (79.2, "NVIDIA H100 80GB HBM3", "llm-class", 16384, 1024),
        (44.4, "NVIDIA L40S", "llm-class", 8192, 256),
    ],
)
def test_vllm_defaults_as_vllm_computes_them(memory_gib, name, usage, tokens, seqs):
    from fluidopt.answers.engine_defaults import vllm_defaults

    knobs = vllm_defaults(memory_gib, name, usage).knobs
    assert (knobs["max_num_batched_tokens"], knobs["max_num_seqs"]) == (tokens, seqs)


@pytest.mark.parametrize(
    ("memory_gib", "chunk"),
    # sglang/srt/server_args.py, ServerArgs._handle_gpu_memory_settings (0.5 series)
    [(15.0, 2048), (23.5, 2048), (39.4, 4096), (44.4, 4096), (79.2, 8192), (139.8, 8192), (178.4, 16384), (None, 4096)],
)
def test_sglang_defaults_as_sglang_computes_them(memory_gib, chunk):
    from fluidopt.answers.engine_defaults import sglang_defaults

    knobs = sglang_defaults(memory_gib).knobs
    assert knobs["chunked_prefill_size"] == chunk and knobs["max_prefill_tokens"] == 16384
    assert knobs["schedule_conservativeness"] == 1.0


def test_recommend_compares_against_the_defaults_of_the_profiles_gpu():
    h100 = fo.preset_profile("h100-80gb-llama-3-8b")
    result = recommend("vllm", P512.with_total_rate(30), h100, replicates=2, requests=800, rate_steps=2)
    defaults = result.evaluations["engine defaults"].description
    assert (defaults["max_num_seqs"], defaults["max_num_batched_tokens"]) == (1024, 8192)
    assert "70 GiB" in result.to_dict()["engine_defaults"]
    sglang = recommend("sglang", P512.with_total_rate(0.8 * LIMIT), PROFILE, replicates=2, requests=800, rate_steps=2)
    assert sglang.evaluations["engine defaults"].description["chunked_prefill_size"] == 2048  # a 24 GB GPU
    derived = {row.knob: row.value for row in sglang.derivation}
    assert derived == sglang.fluid_knobs  # the derivation shows the knobs handed to the engine


def test_printed_recommendation_is_its_json(capsys):
    from table_check import assert_table, json_then_text

    from fluidopt.cli import main
    from fluidopt.cli.tables import parse_tables

    args = [
        "recommend",
        "--engine",
        "sglang",
        "-w",
        "p512d20",
        "-p",
        "rtx4090-llama-3.1-8b-vllm",
        "--rate",
        "15.95",
        "--p99-tpot-s",
        "0.1",
        "--replicates",
        "2",
        "--requests",
        "600",
    ]
    data, text = json_then_text(main, capsys, args)
    lines = text.splitlines()
    assert lines[1].startswith(f"status: {data['status']}") or lines[2].startswith(f"status: {data['status']}")
    if not data["success"]:
        assert "sglang.launch_server" not in text  # no launch command under a failed answer
    evaluations = {k: v for k, v in data["evaluations"].items() if v is not None}
    tables = parse_tables(text)
    latency = next(t for t in tables if "mean E2E s" in t)
    assert_table(
        latency,
        {
            "setting": list(evaluations),
            "mean E2E s": [e["mean_latency_s"] for e in evaluations.values()],
            "p99 TPOT ms": [1e3 * e["p99_tpot_s"] for e in evaluations.values()],
            "meets SLO": [e["meets_targets"] for e in evaluations.values()],
        },
    )
    knobs = next(t for t in tables if "running" in t)
    assert_table(knobs, {"running": [e["settings"].get("max_running_requests") for e in evaluations.values()]})
