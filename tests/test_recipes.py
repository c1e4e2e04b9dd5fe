"""docs/ARCHITECTURE.md's two recipes, followed to the letter by a toy module each.

"Add a timing kind" and "add a policy" are one module and one registry call.  Each toy is
registered before the simulator's kernel loads and run through ``simulate``, ``equilibrium`` and
``max_stable_scale``, in a fresh interpreter with numba's JIT off (the kernel then runs as plain
Python, so the test compiles nothing and leaves numba's on-disk cache alone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parent / "recipes"


def _run(code: str) -> dict:
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(RECIPES)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_toy_timing_kind_runs_through_simulate_equilibrium_and_stability():
    step_s, per_token_s = 0.01, 1e-4
    out = _run(
        f"""
import json
import toy_timing
from fluidopt.timing import register_timing_module
register_timing_module(toy_timing)  # the one registry call, before the kernel loads
import fluidopt as fo
from fluidopt.sim import FCFSPolicy, simulate
profile = fo.GPUProfile("toy-gpu", 10**13, timing=toy_timing.ToyTiming({step_s}, {per_token_s}))
again = fo.GPUProfile.from_dict(profile.to_dict())
workload = fo.Workload("w", (fo.RequestClass("a", 64, 16, 1.0),))
eq = fo.equilibrium(workload, profile)
limit = fo.max_stable_scale(workload, profile)
low = workload.with_total_rate(0.5 * limit.max_rate_per_s)
result = simulate(low, profile, FCFSPolicy(), requests=600, rng=3, drain=True)
alone = simulate(workload.with_total_rate(0.01), profile, FCFSPolicy(), requests=5, rng=1, drain=True)
print(json.dumps({{"kind": profile.timing_kind, "same": again == profile, "method": eq.method,
    "dt": eq.iteration_time_s, "max_rate": limit.max_rate_per_s, "limit_method": limit.method,
    "completed": result.completed_requests, "throughput": result.throughput_tokens_per_s,
    "offered": low.decode_token_rate, "alone_latency": alone.mean_latency_s}}))
"""
    )
    tokens_per_request = 64 + 16  # prompt + one per decode stage
    assert out["kind"] == "toy-per-token" and out["same"]
    assert out["method"] == "fixed-point" and out["limit_method"] == "bisection"
    # dT = step + per_token * (lambda dT) * tokens  =>  dT = step / (1 - per_token * lambda * tokens)
    assert abs(out["dt"] - step_s / (1 - per_token_s * 1.0 * tokens_per_request)) < 1e-9
    # The limit: per_token * lambda * tokens = 1 (memory is ample; the fixed point searches dT up to 1e6 x its floor).
    assert abs(out["max_rate"] - 1 / (per_token_s * tokens_per_request)) / out["max_rate"] < 1e-5
    assert out["completed"] == 600
    assert abs(out["throughput"] - out["offered"]) / out["offered"] < 0.1
    # A lone request: one prefill step and 16 decode steps.
    expected = (step_s + per_token_s * 64) + 16 * (step_s + per_token_s)
    assert abs(out["alone_latency"] - expected) < 1e-9


def test_a_toy_policy_runs_through_simulate_equilibrium_and_stability():
    out = _run(
        """
import json
import toy_policy
from fluidopt.sim.policies import register_policy_module
register_policy_module(toy_policy)  # the one registry call, before the kernel loads
import fluidopt as fo
from fluidopt.sim import simulate
from fluidopt.sim.policies import make_policy
profile = fo.preset_profile("toy")
workload = fo.preset_workload("toy").with_total_rate(0.05)
policy = make_policy("one-at-a-time")
result = simulate(workload, profile, policy, requests=200, rng=2, drain=True, record_series=True)
eq = fo.equilibrium(workload, profile)
limit = fo.max_stable_scale(workload, profile)
print(json.dumps({"policy": result.policy, "completed": result.completed_requests,
    "largest_batch": int(max(result.series["batch_size"])), "evictions": result.evictions,
    "stable": eq.stable, "limit": limit.max_rate_per_s}))
"""
    )
    assert out["policy"] == "one-at-a-time" and out["completed"] == 200
    assert out["largest_batch"] == 1 and out["evictions"] == 0
    assert out["stable"] and out["limit"] > 0.05
