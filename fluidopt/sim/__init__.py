"""Stochastic simulator of one GPU serving LLM requests under a KV-cache limit."""

from fluidopt.sim.arrivals import DeterministicArrivals, MMPPArrivals, PoissonArrivals, TraceArrivals, arrival_process
from fluidopt.sim.engine import InitialRequests, simulate
from fluidopt.sim.policies import (
    POLICY_NAMES,
    FCFSPolicy,
    NestedWaitPolicy,
    SarathiPolicy,
    VLLMPolicy,
    WaitPolicy,
    make_policy,
    wait_thresholds_from_kappa,
)
from fluidopt.sim.results import SimulationResult

__all__ = [
    "POLICY_NAMES",
    "DeterministicArrivals",
    "FCFSPolicy",
    "InitialRequests",
    "MMPPArrivals",
    "NestedWaitPolicy",
    "PoissonArrivals",
    "SarathiPolicy",
    "SimulationResult",
    "TraceArrivals",
    "VLLMPolicy",
    "WaitPolicy",
    "arrival_process",
    "make_policy",
    "simulate",
    "wait_thresholds_from_kappa",
]
