"""Speed of the fluidopt side of ``fluidopt engine-check vllm``: one seeded scenario simulated step by step.

Target (issue 28): the harness's fluidopt side adds < 1 s per scenario.  It times
:func:`fluidopt.engines.vllm_parity.run_fluidopt` on the scenarios the check draws (``vllm-v1``)
and on the plugin scenarios (``wait``, ``nested-wait``, ``wait-cp``); no vLLM is needed.  The
first call compiles the simulator and is timed apart.

    python benchmarks/bench_engine_check.py [--scenarios 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fluidopt.engines.policy_parity import POLICIES, random_policy_scenario
from fluidopt.engines.vllm_parity import random_scenario, run_fluidopt

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    run_fluidopt(random_scenario(np.random.default_rng(args.seed)))
    print(f"first scenario (compiles the simulator): {time.perf_counter() - started:.2f} s")
    for name in ("vllm-v1", *POLICIES):
        seeds = np.random.SeedSequence([args.seed, 11]).spawn(args.scenarios)
        times = []
        for s in seeds:
            rng = np.random.default_rng(s)
            if name == "vllm-v1":
                scenario, policy, bins = random_scenario(rng), None, 1
            else:
                case = random_policy_scenario(name, rng)
                scenario, policy, bins = case.scenario, case.policy, case.bins
            t0 = time.perf_counter()
            run_fluidopt(scenario, policy, bins)
            times.append(time.perf_counter() - t0)
        worst, mean = max(times), float(np.mean(times))
        print(
            f"{name:12s} {args.scenarios} scenarios: mean {1e3 * mean:.1f} ms, worst {1e3 * worst:.1f} ms per "
            f"scenario; worst / target {worst / TARGET_S:.3f} ({'met' if worst < TARGET_S else 'missed'})"
        )


if __name__ == "__main__":
    main()
