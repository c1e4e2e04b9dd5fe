"""Chunked WAIT (WAIT-CP): thresholds from the fluid model and the simulated policy's invariants."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidopt as fo
from fluidopt.errors import InputError
from fluidopt.sim import simulate
from fluidopt.sim.policies import WaitCPPolicy
from fluidopt.thresholds.chunked import wait_cp_thresholds


@pytest.fixture(scope="module")
def profile():
    return fo.preset_profile("a100-80gb-llama-3-8b-vidur")


def test_thresholds_follow_the_fluid_batch(profile):
    workload = fo.preset_workload("p512d20").with_total_rate(16)
    design = wait_cp_thresholds(workload, profile, chunk_tokens=256, conventions="fluidopt")
    n = design.kappa * 16
    # Single class, 2 prefill stages of 256 and 20 decode stages (fluidopt conventions).
    assert design.tl == pytest.approx(n * 22, abs=1)
    assert design.decode_budgets[0] == pytest.approx(n * 20, abs=1)
    assert design.interval[0] <= design.kappa <= design.interval[1]
    assert design.conditions.all_hold
    assert design.total_budget_tokens == design.prefill_budget_tokens + sum(design.decode_budgets)


def test_vidur_design_uses_the_delivered_rate(profile):
    workload = fo.preset_workload("p512d20").with_total_rate(16)
    design = wait_cp_thresholds(workload, profile, conventions="vidur")
    assert design.design_rate_per_s == pytest.approx(16 / (1 - 2.718281828459045**-3))
    assert wait_cp_thresholds(workload, profile).conventions == "fluidopt"  # the one default


def test_nested_segments(profile):
    workload = fo.preset_workload("mix-p512d20-p512d50").with_total_rate(16)
    design = wait_cp_thresholds(workload, profile, nested=True)
    assert design.policy_name == "nested-wait-cp" and design.boundaries == (20, 50)
    assert design.per_stage[1] < design.per_stage[0]


@given(rate=st.floats(4, 20), tl=st.integers(2, 40), chunk=st.sampled_from([64, 128, 256, 512]), gate=st.booleans())
def test_policy_invariants(rate, tl, chunk, gate, profile):
    workload = fo.preset_workload("mix-p512d20-p512d50").with_total_rate(rate)
    budget = max(chunk, 64)
    policy = WaitCPPolicy(tl, chunk, budget, budget + 12, (8, 4), (20, 50), wait_gate=gate)
    result = simulate(
        workload, profile.with_capacity(40_000), policy, requests=400, rng=1, record_series=True, drain=True
    )
    assert result.evictions == 0
    assert result.arrived_requests == result.completed_requests + result.unfinished_requests
    assert result.peak_memory_tokens <= 40_000
    assert (result.series["prefill_tokens"] <= budget).all()
    assert (result.series["batch_size"] <= budget + 12).all()
    assert result.mean_resident <= tl * (1 + 1e-9)


def test_bad_chunked_inputs(profile):
    workload = fo.preset_workload("p512d20").with_total_rate(10)
    with pytest.raises(InputError, match="chunk_tokens"):
        wait_cp_thresholds(workload, profile, chunk_tokens=0)
    with pytest.raises(InputError, match="chunk_tokens = 1024: is larger than every prompt"):
        wait_cp_thresholds(workload, profile, chunk_tokens=1024)
    with pytest.raises(InputError, match="total_budget_tokens"):
        WaitCPPolicy(10, 256, 8, 8, (8,), (20,))
    with pytest.raises(InputError, match="decode_budgets"):
        WaitCPPolicy(10, 256, 256, 300, (0,), (20,))
    with pytest.raises(InputError, match="tl"):
        WaitCPPolicy(1, 256, 256, 300, (8, 4), (20, 50))
    with pytest.raises(InputError, match="kappa"):
        wait_cp_thresholds(workload, profile, kappa=1e-6)
    with pytest.raises(InputError, match="no chunked equilibrium"):
        wait_cp_thresholds(workload.with_total_rate(40), profile)


def test_cli_thresholds_json_and_simulate(tmp_path):
    out = tmp_path / "wcp.toml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidopt",
            "thresholds",
            "-w",
            "p512d20",
            "-p",
            "a100-80gb-llama-3-8b-vidur",
            "--policy",
            "wait-cp",
            "--rate",
            "14",
            "--chunk-tokens",
            "256",
            "--conventions",
            "vidur",
            "--json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    for key in (
        "tl",
        "chunk_tokens",
        "prefill_budget_tokens",
        "decode_budgets",
        "total_budget_tokens",
        "kappa",
        "conditions",
    ):
        assert key in document
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidopt",
            "simulate",
            "-w",
            "p512d20",
            "-p",
            "a100-80gb-llama-3-8b-vidur",
            "--policy",
            "wait-cp",
            "--thresholds",
            str(out),
            "--rate",
            "14",
            "--requests",
            "2000",
            "--conventions",
            "vidur",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["settings"]["conventions"] == "vidur" and result["evictions"] == 0
    # The file carries its conventions: simulating it under the other ones is an error, not a silent mix.
    mixed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidopt",
            "simulate",
            "-w",
            "p512d20",
            "-p",
            "a100-80gb-llama-3-8b-vidur",
            "--policy",
            "wait-cp",
            "--thresholds",
            str(out),
            "--rate",
            "14",
            "--requests",
            "200",
        ],
        capture_output=True,
        text=True,
    )
    assert mixed.returncode == 2 and "designed under conventions 'vidur'" in mixed.stderr
