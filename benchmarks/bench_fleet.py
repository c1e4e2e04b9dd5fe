"""Speed of the fleet tools: the multi-replica simulation and a whole plan.

Targets (issue 26): at least 500,000 requests/s of simulated traffic in aggregate on 2 cores for
64 replicas; a plan in < 60 s on 2 cores for 3 deployment types and a rate that needs about 20
replicas.  The fleet is Llama-3-8B on H100 roofline replicas (vLLM's defaults on an H100) at 80 %
of their fluid limit on p512d20 (the simulator benchmark's traffic); the plan uses the example fleet plus an A100 type.

    python benchmarks/bench_fleet.py [--requests 1000000] [--skip-plan]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fluidopt.answers.fleet_model import Deployment, read_fleet, replica_region
from fluidopt.answers.fleet_program import Simulation
from fluidopt.hardware import gpu_spec, model_shape
from fluidopt.sim.fleet import Replica, simulate_fleet
from fluidopt.timing.fit.roofline import roofline_profile
from fluidopt.workload import load_workload


def fleet_speed(requests: int, replicas: int, router: str, executor: object = None) -> float:
    profile = roofline_profile(gpu_spec("h100-80gb"), model_shape("llama-3-8b"))
    deployment = read_fleet("examples/fleet-h100-l40s.toml")[0]
    workload = load_workload("p512d20")
    limit = 1.0 / float(np.max(replica_region(workload, profile) @ workload.rates))
    workload = workload.scaled(0.8 * limit * replicas)
    fleet = [Replica("h100", profile, deployment.policy()) for _ in range(replicas)]
    simulate_fleet(workload, fleet[:2], router, requests=2000, rng=0)  # compile
    started = time.perf_counter()
    run = simulate_fleet(workload, fleet, router, requests=requests, rng=1, executor=executor)
    wall = time.perf_counter() - started
    assert run.statistics()["unfinished_fraction"] < 0.02
    return requests / wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--skip-plan", action="store_true")
    args = parser.parse_args()
    from fluidopt.experiments.sweep import ProcessExecutor, SerialExecutor

    for label, executor in (("in process", SerialExecutor()), ("2 local processes", ProcessExecutor(2))):
        for router in ("round-robin", "vllm-dp"):
            speed = fleet_speed(args.requests, 64, router, executor)
            verdict = "met" if speed >= 500_000 else "missed"
            print(f"64 replicas, {router}, {label}: {speed:,.0f} simulated requests/s (target 500,000: {verdict})")
    if args.skip_plan:
        return
    from fluidopt.answers.fleet import plan_fleet
    from fluidopt.experiments.runs import Targets

    deployments = read_fleet("examples/fleet-h100-l40s.toml")
    a100 = roofline_profile(gpu_spec("a100-80gb"), model_shape("llama-3-8b"))
    deployments.append(Deployment("a100", a100, "vllm", dict(deployments[1].knobs), 1.19, 64))
    workload = load_workload("mix-long-prompts-long-decodes", rate_per_s=150.0)
    started = time.perf_counter()
    answer = plan_fleet(workload, deployments, Targets(p99_ttft_s=3.0, p99_tpot_s=0.1), Simulation(), baselines=False)
    wall = time.perf_counter() - started
    replicas = sum(answer.plan.counts.values()) if answer.plan else 0
    print(f"plan for 3 types at 150 requests/s: {replicas} replicas, {answer.status}, {wall:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
