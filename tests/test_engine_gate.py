"""The WAIT-family gate for engines (fluidopt.engines.gate) and the vllm serve line, without vLLM."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluidopt.cli import main
from fluidopt.engines.gate import THRESHOLDS_ENV, EngineRequest, PolicyGate, ThresholdsFileError, load_thresholds
from fluidopt.engines.launch import policy_limits, serve_command
from fluidopt.engines.policy_parity import PolicyScenario, random_policy_scenario
from fluidopt.engines.vllm_parity import Scenario, run_fluidopt
from fluidopt.sim.policies import NestedWaitPolicy, WaitCPPolicy, WaitPolicy
from fluidopt.tomlio import dumps_toml
from fluidopt.workload import RequestClass, Workload


def waiting(prompt: int, max_tokens: int) -> EngineRequest:
    return EngineRequest(prompt, max_tokens, output_tokens=0, computed_tokens=0, known_tokens=prompt)


def decoding(prompt: int, max_tokens: int, outputs: int) -> EngineRequest:
    # vLLM computes every known token but the last sampled one.
    known = prompt + outputs
    return EngineRequest(prompt, max_tokens, outputs, computed_tokens=known - 1, known_tokens=known, kv_tokens=known)


def test_wait_gate_by_hand():
    gate = PolicyGate(WaitPolicy((2,)), [(32, 4)], block_size=16, num_blocks=100)
    # One request waits, the class needs two: nothing runs (unless flushed).
    assert gate.plan([], [waiting(32, 4)], flush=False).empty
    flushed = gate.plan([], [waiting(32, 4)], flush=True)
    assert flushed.admitted == [(0, 32)]
    # Two wait: both are admitted with their whole prompts.
    assert gate.plan([], [waiting(32, 4), waiting(32, 4)], flush=False).admitted == [(0, 32), (1, 32)]
    # WAIT holds: a resident decodes only while its class is open (two more waiting).
    resident = [decoding(32, 4, 1)]
    assert gate.plan(resident, [waiting(32, 4)], flush=False).empty
    opened = gate.plan(resident, [waiting(32, 4), waiting(32, 4)], flush=False)
    assert opened.running == {0: 1} and opened.admitted == [(0, 32), (1, 32)]


def test_wait_gate_sorts_requests_into_the_nearest_class():
    gate = PolicyGate(WaitPolicy((1, 1)), [(100, 10), (100, 200)], block_size=16, num_blocks=100)
    assert gate.class_of(waiting(90, 12)) == 0 and gate.class_of(waiting(120, 150)) == 1
    # Only the first `window` waiting requests of each queue are laid out (the rest cannot change the step).
    prompts, limits = np.array([100] * 6 + [100] * 2), np.array([10] * 6 + [200] * 2)
    assert list(gate.waiting_window(prompts, limits)) == [0, 1, 6, 7]  # window = max threshold + 1 = 2


def test_nested_wait_gate_caps_each_stage():
    # Segments: stages 0..2 (n = 2), 3..5 (n = 1).  Three residents at decode stage 3 (two outputs each) plus
    # a closed entry: only the first segment's threshold opens it; stage 3 is segment 2's entry stage.
    gate = PolicyGate(NestedWaitPolicy((2, 5), (2, 1)), [(1, 5)], block_size=16, num_blocks=100)
    residents = [decoding(16, 5, 2), decoding(16, 5, 2)]
    plan = gate.plan(residents, [waiting(16, 5), waiting(16, 5)], flush=False)
    assert plan.running == {0: 1} and plan.admitted == [(0, 16), (1, 16)]


def test_wait_cp_gate_chunks_prefills():
    policy = WaitCPPolicy(
        tl=4, chunk_tokens=32, prefill_budget_tokens=48, total_budget_tokens=60, decode_budgets=(4,), boundaries=(8,)
    )
    gate = PolicyGate(policy, [(1, 8)], block_size=16, num_blocks=100)
    plan = gate.plan([], [waiting(100, 8), waiting(100, 8)], flush=False)
    assert plan.admitted == [(0, 32), (1, 16)]  # chunks of 32 within a prefill budget of 48


def test_engine_request_prefilling():
    assert waiting(10, 3).prefilling
    assert not decoding(10, 3, 1).prefilling
    # A preempted request re-admitted recomputes its prompt and outputs: a prefill until one token remains.
    assert EngineRequest(10, 3, output_tokens=2, computed_tokens=5, known_tokens=12).prefilling


def test_load_thresholds_errors_name_the_variable_and_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(THRESHOLDS_ENV, raising=False)
    with pytest.raises(ThresholdsFileError, match=f"^{THRESHOLDS_ENV} is not set"):
        load_thresholds(("wait",))
    missing = tmp_path / "none.toml"
    monkeypatch.setenv(THRESHOLDS_ENV, str(missing))
    with pytest.raises(ThresholdsFileError, match=f"^{THRESHOLDS_ENV}={missing}: no such file"):
        load_thresholds(("wait",))
    bad = tmp_path / "bad.toml"
    bad.write_text("policy = [", encoding="utf-8")
    monkeypatch.setenv(THRESHOLDS_ENV, str(bad))
    with pytest.raises(ThresholdsFileError, match=f"^{THRESHOLDS_ENV}={bad}: "):
        load_thresholds(("wait",))
    nested = tmp_path / "nested.toml"
    nested.write_text(dumps_toml({"policy": "nested-wait", "thresholds": [2], "boundaries": [8]}), encoding="utf-8")
    monkeypatch.setenv(THRESHOLDS_ENV, str(nested))
    with pytest.raises(ThresholdsFileError, match="holds a nested-wait policy; this scheduler runs wait"):
        load_thresholds(("wait",))
    assert load_thresholds(("nested-wait",))[1] == [(1, 8)]
    old_wait = tmp_path / "wait.toml"
    old_wait.write_text(dumps_toml({"policy": "wait", "thresholds": [2, 3]}), encoding="utf-8")
    monkeypatch.setenv(THRESHOLDS_ENV, str(old_wait))
    with pytest.raises(ThresholdsFileError, match="class_prompt_tokens is missing"):
        load_thresholds(("wait",))


def test_thresholds_file_carries_the_class_lengths_and_prints_the_serve_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "w.toml"
    assert main(["thresholds", "-w", "p512d20", "--policy", "wait", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"FLUIDOPT_VLLM_THRESHOLDS={out} vllm serve MODEL" in printed
    assert "--scheduler-cls fluidopt.engines.vllm.WaitScheduler" in printed
    monkeypatch.setenv(THRESHOLDS_ENV, str(out))
    policy, classes = load_thresholds(("wait",))
    assert classes == [(512, 20)] and policy.thresholds
    assert main(["thresholds", "-w", "p512d20", "--policy", "wait-cp", "--json"]) == 0
    assert "WaitCPScheduler" in json.loads(capsys.readouterr().out)["vllm_serve"]


def test_policy_limits_by_hand():
    workload = Workload("w", (RequestClass("a", 100, 10, 1.0), RequestClass("b", 50, 40, 1.0)))
    # WAIT: n_j per stage over d_j + 1 stages; tokens n_j (l_j + d_j).
    assert policy_limits(WaitPolicy((2, 3)), workload) == (2 * 11 + 3 * 41, 2 * 110 + 3 * 90)
    # Nested WAIT: stages 0..9 (n = 2) and 10..40 (n = 1); prompts up to 100.
    assert policy_limits(NestedWaitPolicy((9, 40), (2, 1)), workload) == (2 * 10 + 31, 2 * 100 + 51)
    line = serve_command(NestedWaitPolicy((9, 40), (2, 1)), workload, "nw.toml", "my/model")
    assert line.startswith("FLUIDOPT_VLLM_THRESHOLDS=nw.toml vllm serve my/model --no-async-scheduling")
    assert "--max-num-seqs 51 --max-num-batched-tokens 256" in line  # 251 rounded up to 8


def test_simulated_wait_by_hand_with_the_engines_conventions():
    # WAIT, threshold 2, one class (32, 3): the first request waits for the second (a wave at step 3);
    # then both prefill (64 tokens, first tokens out) and decode twice.
    case = PolicyScenario(
        Scenario((32, 32), (3, 3), (0, 3), max_num_seqs=64, max_num_batched_tokens=4096, num_blocks=100),
        WaitPolicy((2,)),
        ((32, 3),),
    )
    assert run_fluidopt(case.scenario, case.policy, case.bins).tokens == [64, 2, 2]


def test_policy_scenarios_are_seeded():
    for name in ("wait", "nested-wait", "wait-cp"):
        one = random_policy_scenario(name, np.random.default_rng(5))
        assert one == random_policy_scenario(name, np.random.default_rng(5))
        assert max(one.scenario.outputs) <= max(d for _, d in one.classes)
