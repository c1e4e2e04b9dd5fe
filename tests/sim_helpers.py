"""Helpers shared by the simulator tests."""

from __future__ import annotations

import numpy as np

from fluidopt.sim import simulate

# The JSON keys the simulator issue requires of every summary.
REQUIRED_SUMMARY_KEYS = (
    "arrived_requests",
    "completed_requests",
    "unfinished_requests",
    "evictions",
    "throughput_tokens_per_s",
    "completed_per_s",
    "mean_latency_s",
    "p99_latency_s",
    "mean_ttft_s",
    "peak_memory_tokens",
    "iterations",
    "seed",
    "policy",
)


def replicate(workload, profile, policy, seeds: int, root: int = 2504, **kwargs):
    """Independent replicates with seeds spawned from one root."""
    children = np.random.SeedSequence(root).spawn(seeds)
    return [simulate(workload, profile, policy, rng=np.random.default_rng(child), **kwargs) for child in children]


def confidence_interval(values, level: float = 0.999) -> tuple[float, float]:
    """The package's Student-t helper at the tests' (strict) default level."""
    from fluidopt.stats import confidence_interval as interval

    return interval(values, level)
