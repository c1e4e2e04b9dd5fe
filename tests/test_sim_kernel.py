"""The compiled kernel and its plain-Python source give identical results."""

import json
import subprocess
import sys

SCRIPT = r"""
import json
from fluidopt.profile import preset_profile
from fluidopt.sim import FCFSPolicy, NestedWaitPolicy, SarathiPolicy, VLLMPolicy, WaitPolicy, simulate
from fluidopt.workload import preset_workload

workload = preset_workload("mix-p512d20-p512d50").with_total_rate(25)
profile = preset_profile("a100-80gb-llama-2-7b").with_capacity(6000)
policies = [WaitPolicy((2, 1)), WaitPolicy((2, 1), gate=False), WaitPolicy((2, 1), hold=False),
            NestedWaitPolicy((20, 50), (2, 1), repair=True), NestedWaitPolicy((20, 50), (2, 1), hold=False),
            FCFSPolicy(), VLLMPolicy(), SarathiPolicy()]
out = {}
for index, policy in enumerate(policies):
    for eviction in ("restart", "recompute"):
        result = simulate(workload, profile, policy, requests=300, rng=3, eviction=eviction, drain=True)
        data = result.to_dict()
        data.pop("wall_time_s")
        out[str(index) + policy.name + "/" + eviction] = data
print(json.dumps(out))
"""


def _run(env_extra):
    import os

    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


def test_compiled_and_plain_python_agree_exactly():
    compiled = _run({})
    plain = _run({"NUMBA_DISABLE_JIT": "1"})
    assert compiled.keys() == plain.keys()
    for key in compiled:
        assert compiled[key] == plain[key], key
    assert any(v["evictions"] > 0 for v in compiled.values())
