"""Capacity that cannot overstate, the drift test, and the fluid-guided vs tuned-baselines verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fluidopt as fo
import fluidopt.answers.capacity as capacity_module
import fluidopt.experiments.sustained as sustained_module
from fluidopt.errors import InputError
from fluidopt.experiments.compare import compare_policies, paired_gain
from fluidopt.experiments.evaluate import Evaluation, Targets, run_settings
from fluidopt.experiments.runs import RunSettings, RunSummary
from fluidopt.experiments.tasks import SimulationTask, run_simulation_task
from fluidopt.sim import SarathiPolicy

PROFILE = fo.preset_profile("a100-80gb-llama-2-7b")
P512 = fo.preset_workload("p512d20")


def test_drift_test_separates_overload_from_a_stable_run():
    limit = fo.max_stable_scale(P512, PROFILE).max_rate_per_s
    stable = run_simulation_task(
        SimulationTask(P512.with_total_rate(0.5 * limit), PROFILE, SarathiPolicy(), 1, (("requests", 6000),))
    )
    overload = run_simulation_task(
        SimulationTask(P512.with_total_rate(1.3 * limit), PROFILE, SarathiPolicy(), 1, (("requests", 6000),))
    )
    assert not stable["drift"] and stable["drift_latency_ratio"] < 1.2
    assert overload["drift"] and overload["drift_latency_ratio"] > 1.2 and overload["drift_queue_ratio"] > 1.5


def test_a_rate_above_the_fluid_limit_is_a_method_error_never_a_capacity(monkeypatch):
    # A test that always passes (a broken finite-run check) drives the bisection above the fluid
    # limit: the result must be flagged, not reported.
    def always_meets(workload, profile, candidates, run, **options):
        return [
            Evaluation(policy, d, workload.total_rate_per_s, [{"mean_latency_s": 1.0, "p99_latency_s": 2.0}], Targets())
            for policy, d in candidates
        ]

    monkeypatch.setattr(sustained_module, "evaluate_run", always_meets)
    monkeypatch.setattr(Evaluation, "meets", property(lambda self: True))
    fluid = fo.max_stable_scale(P512, PROFILE).max_rate_per_s
    found = sustained_module.max_sustained_rate(
        "sarathi", P512, PROFILE, low=0.0, high=1.25 * fluid, steps=6, run=RunSettings()
    )
    assert found.status == "method-error" and math.isnan(found.max_rate_per_s)
    assert found.flagged_rate_per_s > fluid
    assert found.to_dict()["max_rate_per_s"] is None


def _run(status: str) -> dict:
    return {
        "status": status,
        "measured_arrivals": 1000,
        "arrived_requests": 1000,
        "completed_in_window": 1000,
        "drift_latency_ratio": 1.0,
        "drift_queue_ratio": 1.0,
        "mean_latency_s": 1.0,
        "p99_latency_s": 2.0,
    }


@pytest.mark.parametrize("bad", ["overflow", "livelock", "starved", "truncated"])
def test_a_replicate_that_did_not_run_as_simulated_is_never_stable(bad):
    policy = SarathiPolicy()
    assert Evaluation(policy, {}, 1.0, [_run("ok"), _run("ok")], Targets()).meets
    evaluation = Evaluation(policy, {}, 1.0, [_run("ok"), _run(bad)], Targets())
    assert not evaluation.stable and not evaluation.meets


def test_literal_wait_capacity_on_a_ray_is_within_the_fluid_limit():
    # WAIT thresholds designed above the fluid limit overflow the KV cache while their latency
    # still looks finite; such runs used to pass and put WAIT above the fluid limit.
    profile = fo.preset_profile("a100-80gb-llama-3-8b")
    ray = fo.preset_workload("mix-p512d20-p512d50").with_rates(np.array([math.cos(0.785), math.sin(0.785)]))
    fluid = fo.max_stable_scale(ray.with_total_rate(1.0), profile).max_rate_per_s
    run = run_settings(Targets(), replicates=2, requests=10_000, seed=0)
    found = sustained_module.max_sustained_rate(
        "wait", ray.with_total_rate(1.0), profile, low=0.0, high=1.2 * fluid, steps=6, run=run
    )
    assert found.status == "ok" and 0.9 * fluid < found.max_rate_per_s <= fluid
    assert all(r.status == "ok" for r in found.evaluation.runs)


def test_every_policy_capacity_is_within_the_fluid_limit():
    result = capacity_module.capacity(
        P512, PROFILE, policies=("wait-cp", "sarathi", "vllm"), replicates=2, requests=3000, steps=5
    )
    # Short runs cannot tell a slight overload from critical load, so a search may land above the
    # fluid limit; it must then be flagged as a method error, never reported as capacity.
    for entry in result.policies.values():
        if entry.status == "ok":
            assert 0 < entry.max_rate_per_s <= result.fluid_max_rate_per_s
        else:
            assert entry.status == "method-error" and math.isnan(entry.max_rate_per_s)
            assert entry.flagged_rate_per_s > result.fluid_max_rate_per_s
    assert any(entry.status == "ok" for entry in result.policies.values())


def test_paired_gain_interval():
    class Fake:
        def __init__(self, values):
            self.runs = [RunSummary({"mean_latency_s": v}) for v in values]

    gain, (low, high) = paired_gain(Fake([2.0, 2.2, 2.1, 2.3]), Fake([1.0, 1.1, 1.2, 1.2]))
    diff = np.array([1.0, 1.1, 0.9, 1.1])
    assert gain == pytest.approx(diff.mean())
    assert low < gain < high and high - low == pytest.approx(2 * 3.182446 * diff.std(ddof=1) / 2, rel=1e-4)


def test_compare_reports_both_sides_and_a_verdict():
    result = compare_policies(P512, PROFILE, fractions=(0.6,), replicates=2, requests=2000)
    verdict = result.verdicts[0]
    assert verdict.fluid_guided is not None and verdict.baseline is not None
    assert verdict.fluid_guided.policy.name == "wait-cp"
    assert verdict.baseline.policy.name in ("vllm", "sarathi")
    assert set(verdict.paper_defaults) == {"vllm", "sarathi"}
    assert len(verdict.fluid_guided.runs) == 2
    assert verdict.verdict and verdict.rate_per_s == pytest.approx(0.6 * result.fluid_max_rate_per_s)
    assert verdict.to_dict()["gain_ci_s"][0] <= verdict.gain_s <= verdict.to_dict()["gain_ci_s"][1]


def test_run_settings_are_frozen_and_validated():
    run = RunSettings(Targets(p99_latency_s=2.0), replicates=2, requests=500, seed=3)
    with pytest.raises(AttributeError):
        run.seed = 4  # type: ignore[misc]
    assert run.with_seed(9).seed == 9 and run.seed == 3
    assert run.describe()["targets"] == "p99 latency <= 2 s"
    with pytest.raises(InputError, match="replicates"):
        RunSettings(replicates=0)
    with pytest.raises(InputError, match="conventions"):
        RunSettings(conventions="vllm")


def test_one_rule_for_missing_values():
    # A replicate with no measured completion: its latency is infinite in an Evaluation and in a rate sweep.
    empty = {"mean_latency_s": None, "p99_latency_s": float("nan"), "completed_per_s": None}
    summary = RunSummary(empty)
    assert summary.metric("mean_latency_s") == math.inf and summary.metric("p99_latency_s") == math.inf
    assert summary.metric("completed_per_s") == 0.0
    evaluation = Evaluation(SarathiPolicy(), {}, 1.0, [{"mean_latency_s": 1.0}, empty], Targets())
    assert evaluation.mean("mean_latency_s") == math.inf


def test_capacity_with_few_requests_and_an_unmeetable_target_answer():
    # 29 requests used to end in an UnboundLocalError in the drift test; a target no single request
    # meets used to search for minutes before printing 0.
    few = capacity_module.capacity(P512, PROFILE, policies=("fcfs",), replicates=2, requests=29, steps=2)
    assert "fcfs" in few.policies
    never = capacity_module.capacity(P512, PROFILE, targets=Targets(p99_latency_s=1e-3))
    assert never.status == "no-configuration" and "served alone" in never.message
    assert all(c.evaluation is None for c in never.policies.values())


def test_printed_capacity_and_comparison_are_their_json(capsys):

    from table_check import assert_table, json_then_text

    from fluidopt.cli import main
    from fluidopt.cli.tables import parse_tables

    args = [
        "capacity",
        "-w",
        "p512d20",
        "-p",
        "a100-80gb-llama-3-8b",
        "--policies",
        "fcfs,sarathi",
        "--replicates",
        "2",
        "--requests",
        "400",
        "--steps",
        "2",
        "--executor",
        "serial",
    ]
    data, text = json_then_text(main, capsys, args)
    (table,) = parse_tables(text)
    policies = data["policies"]
    assert_table(
        table,
        {
            "policy": list(policies),
            "status": [c["status"] for c in policies.values()],
            "max rate/s": [c["max_rate_per_s"] for c in policies.values()],
            "mean latency s": [c.get("mean_latency_s") for c in policies.values()],
        },
    )
    args = [
        "compare",
        "-w",
        "p512d20",
        "-p",
        "a100-80gb-llama-3-8b",
        "--fractions",
        "0.6",
        "--replicates",
        "2",
        "--requests",
        "600",
        "--executor",
        "serial",
    ]
    data, text = json_then_text(main, capsys, args)
    (table,) = parse_tables(text)
    picks = [
        e
        for v in data["verdicts"]
        for e in (v["fluid_guided"], v["baseline"], *v["paper_defaults"].values())
        if e is not None
    ]
    assert_table(table, {"policy": [e["policy"] for e in picks], "mean s": [e["mean_latency_s"] for e in picks]})


def test_printed_stability_is_its_json(capsys):
    import json

    from table_check import assert_table

    from fluidopt.cli import main
    from fluidopt.cli.tables import parse_tables

    args = ["stability", "-w", "p512d20", "-p", "a100-80gb-llama-3-8b"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    text = capsys.readouterr().out
    (table,) = parse_tables(text)
    assert_table(
        table,
        {"requests/s": [data["rate_per_s"], data["max_rate_per_s"], *data["peer_max_rate_per_s"].values()]},
    )
    assert "compute-bound" in text and "memory" in table["binds at the limit"]
