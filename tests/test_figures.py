"""Regenerate the quick figures and check their data files (not pixels)."""

import csv
import json
import math

import numpy as np
import pytest
from conftest import SHARED_DATA

from fluidopt.cli import main
from fluidopt.experiments.figures import FIGURES, make_figures
from fluidopt.experiments.sweep import ProcessExecutor


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    written = make_figures(out, quick=True, executor=ProcessExecutor(), shared_data=SHARED_DATA)
    return out, written


def rows(out, name):
    with open(out / f"{name}.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_every_figure_has_png_data_and_config(figures):
    out, written = figures
    assert set(written) == set(FIGURES)
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 5000
        assert rows(out, name)
        config = json.loads((out / f"{name}.json").read_text())
        assert config["figure"] == name and "seed" in config and config["quick"] is True


def test_latency_grows_near_the_boundary(figures):
    out, _ = figures
    for name in ("p512d20", "two-class", "long-decode"):
        data = rows(out, name)
        # WAIT and Nested WAIT hold residents until their gates open, which slows them at low rates
        # (docs/theory.md section 4); the other policies' latency grows towards the boundary.
        for policy in {r["policy"] for r in data} - {"wait", "nested-wait"}:
            latency = [float(r["mean_latency_s"]) for r in data if r["policy"] == policy]
            assert latency[-1] > latency[0], (name, policy)


def test_completions_follow_arrivals_in_the_stable_range(figures):
    out, _ = figures
    for r in rows(out, "p512d20"):
        if float(r["rate_per_s"]) <= 20:
            assert abs(float(r["completed_per_s"]) / float(r["rate_per_s"]) - 1) < 0.05


def test_stability_region_points_inside_fluid_boundary(figures):
    out, _ = figures
    data = rows(out, "stability-region")
    fluid = [r for r in data if r["series"] == "fluid"]
    rate_1 = np.array([float(r["rate_1"]) for r in fluid])
    assert np.all(np.diff(rate_1) <= 1e-9)  # the boundary sweeps from the rate_1 axis to the rate_2 axis
    reach = {float(r["angle"]): np.hypot(float(r["rate_1"]), float(r["rate_2"])) for r in fluid}
    angles = np.array(sorted(reach))
    for r in data:
        if r["series"] in ("wait", "vllm", "sarathi", "nested-wait"):
            if r["status"] != "ok":  # flagged as a method error: never drawn as a capacity
                assert r["status"] == "method-error" and math.isnan(float(r["rate_1"]))
                continue
            radius = np.interp(float(r["angle"]), angles, [reach[a] for a in angles])
            # The fluid boundary is interpolated between 91 rays; the capacity is checked exactly
            # against its own ray's limit in max_sustained_rate.
            assert np.hypot(float(r["rate_1"]), float(r["rate_2"])) <= radius * (1 + 2e-3)


def test_nested_memory_u_shape(figures):
    out, _ = figures
    data = [r for r in rows(out, "nested-memory") if float(r["rate_per_s"]) == 50 and float(r["horizon_s"]) == 600]
    required = [float(r["memory_required_tokens"]) for r in data]
    best = int(np.argmin(required))
    assert 0 < best < len(required) - 1


def test_asymptotic_slopes_in_the_data(figures):
    out, _ = figures
    data = rows(out, "asymptotics")
    slope = {r["experiment"]: float(r["gap_slope"]) for r in data}
    assert slope["wait-slack"] < -0.8 and slope["nested-wait"] < -0.8
    assert -0.8 < slope["wait-boundary"] < -0.35 and slope["fcfs-at-m-star"] > -0.2


def test_memory_cascade_fcfs_evicts_and_wait_stays_within_capacity(figures):
    out, _ = figures
    data = rows(out, "memory-cascade")
    wait = [float(r["memory_tokens"]) for r in data if r["policy"] == "wait"]
    assert max(wait) <= 12


def test_figures_cli_only(tmp_path, capsys):
    assert main(["figures", "--quick", "--only", "memory-cascade", "--out", str(tmp_path), "--executor", "serial"]) == 0
    assert (tmp_path / "memory-cascade.png").exists() and not (tmp_path / "p512d20.png").exists()


def test_paper_setup_figures_carry_the_paper_series_and_measured_completions(figures):
    out, _ = figures
    for name in ("paper-b-p512d20", "paper-c-two-class", "paper-g-p512d1000", "paper-k-wait-gate"):
        data = rows(out, name)
        ours = [r for r in data if r["series"] == "fluidopt"]
        assert ours and all(float(r["completed_per_s"]) > 0 for r in ours)
        config = json.loads((out / f"{name}.json").read_text())
        assert config["conventions"] == "vidur" and config["profile_used"] == "a100-80gb-llama-3-8b-vidur"
        if SHARED_DATA.is_dir():
            paper = [r for r in data if r["series"] == "paper"]
            assert paper and all("shared/data/paper" in r["source"] for r in paper)
    verdicts = rows(out, "paper-fluid-vs-tuned")
    assert {r["role"] for r in verdicts} == {"fluid_guided", "baseline"}


def test_paper_b_predictor_has_both_timings_and_the_kv_save_panel(figures):
    out, _ = figures
    data = rows(out, "paper-b-predictor")
    ours = [r for r in data if r["series"] == "fluidopt"]
    assert {r["timing"] for r in ours} == {"measured", "vidur-predictor"}
    assert {r["policy"] for r in ours} == {"wait-cp (tl 21, cs 256)", "sarathi-512", "sarathi-508", "vllm"}
    save = {(r["timing"], int(r["batch_tokens"])): float(r["kv_save_ms"]) for r in data if r["series"] == "kv-save"}
    assert save[("vidur-predictor", 512)] > 5 * save[("vidur-predictor", 508)]
    assert save[("measured", 512)] < 1.02 * save[("measured", 508)]
    config = json.loads((out / "paper-b-predictor.json").read_text())
    assert config["profile_used"] == {
        "measured": "a100-80gb-llama-3-8b-vidur",
        "vidur-predictor": "a100-80gb-llama-3-8b-vidur-predictor",
    }


def test_figures_timing_vidur_predictor_redraws_the_paper_figures_under_it(tmp_path, capsys):
    argv = ["figures", "--quick", "--timing", "vidur-predictor", "--only", "paper-k-wait-gate", "--out", str(tmp_path)]
    assert main([*argv, "--executor", "serial"]) == 0
    config = json.loads((tmp_path / "paper-k-wait-gate-vidur-predictor.json").read_text())
    assert config["profile_used"] == "a100-80gb-llama-3-8b-vidur-predictor"
    assert {r["timing"] for r in rows(tmp_path, "paper-k-wait-gate-vidur-predictor") if r["series"] == "fluidopt"} == {
        "vidur-predictor"
    }
    assert not (tmp_path / "paper-k-wait-gate.png").exists()
