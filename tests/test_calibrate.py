"""Calibration on a user's run (fluidopt.answers.calibrate, ``fluidopt profile calibrate``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fluidopt.answers.calibrate import SCALES, calibrate, run_on_profile, scaled_profile
from fluidopt.answers.replay import read_vllm_run
from fluidopt.answers.run_format import write_plain_run
from fluidopt.errors import InputError
from fluidopt.profile import load_profile

BASE = "h100-80gb-llama-3-8b-tp1-roofline"
TRUTH = {"compute": 0.8, "bandwidth": 1.15, "step_overhead_s": 0.003, "sequence_overhead_s": 2e-5}


@pytest.fixture(scope="module")
def base():
    return load_profile(BASE)


@pytest.fixture(scope="module")
def truth_run(base):
    """Two rate stages on a known profile: a calibration whose answer is known."""
    return run_on_profile(scaled_profile(base, TRUTH), (8.0, 14.0), 150, seed=3)


def test_scaled_roofline_moves_the_right_terms(base):
    prefill = base.batch_time([2048], [0], [])  # compute-bound
    decode = base.batch_time([], [], [512] * 8)  # bandwidth-bound
    faster = scaled_profile(base, {"compute": 2.0})
    assert faster.batch_time([2048], [0], []) < 0.7 * prefill
    assert faster.batch_time([], [], [512] * 8) == pytest.approx(decode, rel=0.02)
    wider = scaled_profile(base, {"bandwidth": 2.0})
    assert wider.batch_time([], [], [512] * 8) < 0.7 * decode
    overheads = scaled_profile(base, {"step_overhead_s": 0.002, "sequence_overhead_s": 1e-4})
    assert overheads.batch_time([], [], [512] * 8) == pytest.approx(decode + 0.002 + 8 * 1e-4, rel=1e-9)
    batch = overheads.timing  # the fluid form carries the same overheads
    assert batch.kind == "roofline" and batch.rate("sequence_overhead_s") == pytest.approx(1e-4)


def test_calibration_on_the_first_stage_predicts_the_second(base, truth_run):
    split = float(truth_run.arrival_s[150])
    result = calibrate(truth_run, base, split_at_s=split)
    assert result.success and result.requests_fitted == 150
    for metric in ("ttft", "tpot", "e2e"):
        before, after = result.errors["split"]["base"][metric], result.errors["split"]["fitted"][metric]
        assert abs(after) < 0.05, (metric, after)
        assert abs(after) < abs(before)
    # Prefill sets TTFT and nothing else does: the compute factor is found within 10 %.
    assert result.values["compute"] == pytest.approx(TRUTH["compute"], rel=0.10)
    low, high = result.interval("compute")
    assert low <= result.values["compute"] <= high


def test_the_fitted_profile_round_trips_and_records_its_calibration(base, truth_run, tmp_path):
    result = calibrate(truth_run, base, fit=("compute", "bandwidth"))
    assert result.fitted_scales == ("compute", "bandwidth")
    path = tmp_path / "fitted.toml"
    from fluidopt.tomlio import write_toml

    write_toml(path, result.profile.to_dict())
    loaded = load_profile(path)
    assert loaded.timing == result.profile.timing
    assert loaded.fit["calibration"]["compute"] == pytest.approx(result.values["compute"])
    assert result.values["step_overhead_s"] == 0.0 and result.values["sequence_overhead_s"] == 0.0


def test_too_few_requests_and_foreign_bases_are_refused(base, truth_run):
    with pytest.raises(InputError, match="too few"):
        calibrate(truth_run.subset(np.arange(truth_run.num_requests) < 40), base)
    with pytest.raises(InputError, match="timing kind 'measured'"):
        calibrate(truth_run, load_profile("rtx4090-llama-3.1-8b-vllm"))
    with pytest.raises(InputError, match="--split-at-s"):
        calibrate(truth_run, base, split_at_s=1e6)
    with pytest.raises(InputError, match="--fit"):
        calibrate(truth_run, base, fit=("speed",))


def test_a_scale_the_run_cannot_see_is_held_or_refused(base):
    # One-token outputs: no request ever decodes, so nothing in the run reads the per-sequence
    # overhead apart from the prefill steps' few sequences, and TPOT is never measured.
    run = run_on_profile(base, (4.0,), 120, seed=5, mean_output_tokens=1.0)
    run = replace(run, output_tokens=np.ones_like(run.output_tokens))
    run = run_on_profile_outputs_one(base, run)
    with pytest.raises(InputError, match="cannot be determined"):
        calibrate(run, base, fit=("compute", "bandwidth", "step_overhead_s", "sequence_overhead_s"))
    auto = calibrate(run, base)
    assert len(auto.fitted_scales) < len(SCALES) and "held at the base" in auto.message


def run_on_profile_outputs_one(base, run):
    """``run`` with its observed times re-simulated for one-token outputs."""
    from fluidopt.answers.calibrate import simulated_latencies

    times = simulated_latencies(run, base)
    return replace(run, ttft_s=times["ttft"], e2e_s=times["e2e"], tpot_s=times["tpot"])


def test_shared_runs_calibrated_on_the_first_half_replay_the_second_within_5_percent(shared_data):
    from fluidopt.timing.fit.roofline import roofline_profile_for_run

    for name in ("RTX4090/Llama-3.1-8B", "RTXPRO6000/Qwen3-32B"):
        folder = shared_data / "llmservingsim" / "runs" / name
        run = read_vllm_run(folder)
        split = float(run.arrival_s[run.num_requests // 2])
        result = calibrate(run, roofline_profile_for_run(folder), split_at_s=split)
        for metric, error in result.errors["split"]["fitted"].items():
            assert abs(error) < 0.05, (name, metric, error)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fluidopt", *args], capture_output=True, text=True, check=False)


def test_cli_calibrates_a_plain_run_checks_another_and_writes_a_loadable_profile(base, truth_run, tmp_path):
    first = write_plain_run(truth_run, tmp_path / "run1", gpu="h100-80gb")
    other = run_on_profile(scaled_profile(base, TRUTH), (12.0,), 120, seed=9)
    second = write_plain_run(other, tmp_path / "run2", gpu="h100-80gb")
    out = tmp_path / "fitted.toml"
    done = cli("profile", "calibrate", str(first), "-p", BASE, "--check", str(second), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document["scales"]) == set(SCALES)
    assert str(second) in document["errors"]
    held_out = document["errors"][str(second)]["fitted"]
    assert all(abs(v) < 0.05 for v in held_out.values()), held_out
    assert load_profile(out).timing.kind == "roofline"
    text = cli("profile", "calibrate", str(first), "-p", BASE, "--out", str(tmp_path / "again.toml"))
    assert text.returncode == 0 and "95 % interval" in text.stdout and "mean error" in text.stdout


def test_cli_bad_input_writes_nothing(truth_run, tmp_path):
    first = write_plain_run(truth_run, tmp_path / "run1", gpu="h100-80gb")
    out = tmp_path / "fitted.toml"
    for args in (
        ("--fit", "speed"),
        ("--split-at-s", "-3"),
        ("-p", "rtx4090-llama-3.1-8b-vllm"),
        ("--check", str(Path(__file__).parent)),
    ):
        done = cli(
            "profile", "calibrate", str(first), "--out", str(out), *(args if "-p" in args else ("-p", BASE, *args))
        )
        assert done.returncode == 2, (args, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_a_calibrated_profile_feeds_stability_and_recommend(base, truth_run, tmp_path):
    from fluidopt.tomlio import write_toml

    path = tmp_path / "fitted.toml"
    write_toml(path, calibrate(truth_run, base, fit=("compute", "bandwidth")).profile.to_dict())
    done = cli("stability", "-w", "sharegpt-like", "-p", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["max_rate_per_s"] > 0
    done = cli("recommend", "--engine", "vllm", "-w", "sharegpt-like", "--rate", "1", "-p", str(path), "--json")
    assert done.returncode == 0, done.stderr
