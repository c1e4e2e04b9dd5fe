"""WAIT, Nested WAIT and WAIT-CP inside vLLM's CPU build, and whole vLLM engines against fluidopt (marker engine).

Each test needs the ``engine`` extra (``pip install -e ".[engine]"``) and skips with one line without it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fluidopt.cli import main
from fluidopt.engines.vllm_parity import Scenario, run_vllm

pytestmark = [
    pytest.mark.engine,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch.jit and friends, as vLLM imports them
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_policies_inside_vllm_step_for_step_with_the_simulator(model_dir):
    from fluidopt.engines.policy_parity import POLICIES, policy_check, random_policy_scenario

    for policy in POLICIES:
        rows = policy_check(policy, 12, 0, model_dir)
        assert all(r["identical_step_share"] == 1.0 for r in rows), policy
        assert all(r["preemptions_vllm"] == r["preemptions_fluidopt"] == 0 for r in rows), policy
        assert all(r["requests_differing"] == 0 for r in rows), policy
    # The gate decides: on the same requests vLLM's own scheduler takes other steps in most scenarios.
    cases = [random_policy_scenario("nested-wait", np.random.default_rng(s)) for s in range(6)]
    own = [run_vllm(c.scenario, model_dir).tokens for c in cases]
    gated = [simulated_tokens(c) for c in cases]
    assert sum(a != b for a, b in zip(own, gated)) >= 3


def simulated_tokens(case):
    from fluidopt.engines.vllm_parity import run_fluidopt

    return run_fluidopt(case.scenario, case.policy, case.bins).tokens


def claim_scenario(requests: int, num_blocks: int) -> Scenario:
    # Every request at once: 96-token prompts, 32, 96 or 192 output tokens.
    outputs = np.random.default_rng(0).choice([32, 96, 192], size=requests)
    return Scenario(
        (96,) * requests,
        tuple(int(o) for o in outputs),
        (0,) * requests,
        max_num_seqs=1024,
        max_num_batched_tokens=8192,
        num_blocks=num_blocks,
        block_size=32,
        enable_prefix_caching=False,
    )


def test_nested_wait_inside_vllm_serves_every_request_without_preemption(model_dir, tmp_path, monkeypatch):
    """The paper's claim inside the engine: where vLLM's own scheduler preempts, Nested WAIT does not."""
    from fluidopt.engines.engine_runs import run_engine
    from fluidopt.engines.gate import THRESHOLDS_ENV, load_thresholds

    blocks, block = 3600, 32
    workload = tmp_path / "workload.toml"
    workload.write_text(
        "\n".join(
            f'[[classes]]\nname = "d{d}"\nprefill_tokens = 96\ndecode_tokens = {d}\nrate_per_s = 1.0'
            for d in (32, 96, 192)
        ),
        encoding="utf-8",
    )
    thresholds = tmp_path / "nested-wait.toml"
    args = ["thresholds", "-w", str(workload), "--rate", "5", "--policy", "nested-wait"]
    assert main([*args, "--capacity-tokens", str(blocks * block), "--out", str(thresholds)]) == 0
    monkeypatch.setenv(THRESHOLDS_ENV, str(thresholds))
    policy, _ = load_thresholds(("nested-wait",))
    design = _read(thresholds)["design"]
    # Why it fits: at most n_k requests per stage of segment k, each holding at most one partial block.
    starts = (0, *(b + 1 for b in policy.boundaries[:-1]))
    residents = sum(n * (end - start + 1) for n, start, end in zip(policy.thresholds, starts, policy.boundaries))
    assert design["memory_required_tokens"] + residents * (block - 1) <= blocks * block
    scenario = claim_scenario(900, blocks)
    own = run_engine(scenario, model_dir)
    assert own.preemptions > 0 and own.metric_preemptions == own.preemptions
    nested = run_engine(scenario, model_dir, "fluidopt.engines.vllm.NestedWaitScheduler")
    assert nested.completed == len(scenario.prompts)
    assert nested.preemptions == 0 and nested.metric_preemptions == 0


def _read(path: Path) -> dict:
    from fluidopt.tomlio import read_toml

    return read_toml(path)


def test_a_bad_thresholds_file_is_one_error_at_engine_start(model_dir, tmp_path, monkeypatch):
    from fluidopt.engines import vllm as plugin
    from fluidopt.engines.engine_runs import EngineRunError, run_engine
    from fluidopt.engines.gate import THRESHOLDS_ENV, ThresholdsFileError
    from fluidopt.engines.vllm_parity import _vllm_scheduler

    scenario = claim_scenario(4, 100)
    monkeypatch.delenv(THRESHOLDS_ENV, raising=False)
    with pytest.raises(ThresholdsFileError, match=f"^{THRESHOLDS_ENV} is not set"):
        _vllm_scheduler(scenario, model_dir, plugin.WaitScheduler)
    missing = tmp_path / "missing.toml"
    monkeypatch.setenv(THRESHOLDS_ENV, str(missing))
    # A whole engine stops at start with the one line (the engine process's exception).
    with pytest.raises(EngineRunError, match=f"ThresholdsFileError: {THRESHOLDS_ENV}={missing}: no such file"):
        run_engine(scenario, model_dir, "fluidopt.engines.vllm.NestedWaitScheduler")


def test_replay_of_a_cpu_run_gives_its_steps_and_preemptions(model_dir, tmp_path, capsys):
    from fluidopt.engines.engine_runs import CONSTANT_STEP_PROFILE, engine_scenario, run_engine, write_plain_run
    from fluidopt.tomlio import dumps_toml

    scenario = engine_scenario(np.random.default_rng(np.random.SeedSequence([0, 7]).spawn(1)[0]))
    run = run_engine(scenario, model_dir)
    assert run.preemptions > 0 and run.completed == len(scenario.prompts)
    folder = write_plain_run(tmp_path / "cpu-run", scenario, run)
    profile = tmp_path / "constant-step.toml"
    profile.write_text(dumps_toml(CONSTANT_STEP_PROFILE), encoding="utf-8")
    capsys.readouterr()
    assert main(["replay", str(folder), "-p", str(profile), "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert (replay["steps"], replay["preemptions"]) == (run.steps, run.preemptions)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_vllm_serve_with_a_fluidopt_scheduler_class(model_dir, tmp_path):
    from fluidopt.engines.engine_runs import ENGINE_MEMORY_SHARE

    thresholds = tmp_path / "wait.toml"
    assert main(["thresholds", "-w", "p512d20", "--policy", "wait", "--out", str(thresholds)]) == 0
    port = _free_port()
    command = [sys.executable, "-m", "fluidopt.engines.serve", "serve", str(model_dir), "--load-format", "dummy"]
    command += ["--skip-tokenizer-init", "--dtype", "float32", "--max-model-len", "1024", "--block-size", "32"]
    command += ["--num-gpu-blocks-override", "400", "--no-async-scheduling", "--port", str(port)]
    command += ["--gpu-memory-utilization", str(ENGINE_MEMORY_SHARE)]
    command += ["--scheduler-cls", "fluidopt.engines.vllm.WaitScheduler"]
    env = {**os.environ, "FLUIDOPT_VLLM_THRESHOLDS": str(thresholds)}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(base + "/v1/models", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "vllm serve did not start in 240 s"
                time.sleep(2)
        results: list[dict] = []

        def ask(i: int) -> None:
            prompt = [3 + (i + 7 * k) % 31_000 for k in range(512)]
            body = {"model": str(model_dir), "prompt": prompt, "max_tokens": 20, "ignore_eos": True}
            results.append(_post(base + "/v1/completions", body))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert len(results) == 9 and all(r["usage"]["completion_tokens"] == 20 for r in results)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        log.close()
