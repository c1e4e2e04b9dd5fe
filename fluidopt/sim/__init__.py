"""Stochastic simulator of one GPU serving LLM requests under a KV-cache limit (imported lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluidopt._lazy import lazy_exports

_EXPORTS = {
    "DeterministicArrivals": "fluidopt.sim.arrivals",
    "MMPPArrivals": "fluidopt.sim.arrivals",
    "PoissonArrivals": "fluidopt.sim.arrivals",
    "TraceArrivals": "fluidopt.sim.arrivals",
    "arrival_process": "fluidopt.sim.arrivals",
    "InitialRequests": "fluidopt.sim.engine",
    "simulate": "fluidopt.sim.engine",
    "POLICY_NAMES": "fluidopt.sim.policies",
    "FCFSPolicy": "fluidopt.sim.policies",
    "NestedWaitPolicy": "fluidopt.sim.policies",
    "SarathiPolicy": "fluidopt.sim.policies",
    "SGLangPolicy": "fluidopt.sim.policies",
    "VLLMV1Policy": "fluidopt.sim.policies",
    "policy_spec": "fluidopt.sim.policies",
    "VLLMPolicy": "fluidopt.sim.policies",
    "WaitCPPolicy": "fluidopt.sim.policies",
    "WaitPolicy": "fluidopt.sim.policies",
    "make_policy": "fluidopt.sim.policies",
    "wait_thresholds_from_kappa": "fluidopt.sim.policies",
    "SimulationResult": "fluidopt.sim.results",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from fluidopt.sim.arrivals import (
        DeterministicArrivals,
        MMPPArrivals,
        PoissonArrivals,
        TraceArrivals,
        arrival_process,
    )
    from fluidopt.sim.engine import InitialRequests, simulate
    from fluidopt.sim.policies import (
        POLICY_NAMES,
        FCFSPolicy,
        NestedWaitPolicy,
        SarathiPolicy,
        SGLangPolicy,
        VLLMPolicy,
        VLLMV1Policy,
        WaitCPPolicy,
        WaitPolicy,
        make_policy,
        policy_spec,
        wait_thresholds_from_kappa,
    )
    from fluidopt.sim.results import SimulationResult
