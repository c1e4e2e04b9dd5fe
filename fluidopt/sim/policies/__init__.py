"""Simulated scheduling policies: one module per policy, and the one registry of them all.

Each module (``wait``, ``nested_wait``, ``fcfs``, ``vllm``, ``sarathi``, ``wait_cp``,
``vllm_v1``, ``sglang``) holds a policy's validated parameter dataclass, its
``kernel_pack`` (the parameter arrays of its compiled selection function) and the compiled
selection function, and registers its names in ``SPECS``.  :data:`POLICY_MODULE_NAMES` below is the
registry: it orders the selection functions the compiled kernel dispatches over (specialised at
compile time: the kernel unrolls the tuple, so no Python runs per iteration; see
:func:`compiled_selectors`, and :mod:`fluidopt.sim.policies._jit` for why numba loads only
with the kernel) and drives the
policy names, the CLI's choices and knobs, the factories, the tuning grids, the default lists of
``capacity`` / ``compare`` and the glossary's policy table.

Adding a policy: write ``fluidopt/sim/policies/<name>.py`` after the pattern of the others
(dataclass with ``name``, ``kernel_pack``, ``to_dict``; ``select_<name>`` with the common
signature; ``SPECS`` and ``SELECT``) and add its name to :data:`POLICY_MODULE_NAMES`.  Tests
parametrised over :data:`POLICY_NAMES` pick it up (compiled = plain Python, conservation, memory).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require_finite_number
from fluidopt.sim.policies._base import KernelPack, Knob, PolicySpec
from fluidopt.sim.policies.fcfs import FCFSPolicy
from fluidopt.sim.policies.nested_wait import NestedWaitPolicy
from fluidopt.sim.policies.sarathi import SarathiPolicy
from fluidopt.sim.policies.sglang import SGLangPolicy
from fluidopt.sim.policies.vllm import VLLMPolicy
from fluidopt.sim.policies.vllm_v1 import VLLMV1Policy
from fluidopt.sim.policies.wait import WaitPolicy
from fluidopt.sim.policies.wait_cp import WaitCPPolicy
from fluidopt.workload import Workload

# The registry: one module name per policy module, in the kernel's dispatch order.
POLICY_MODULE_NAMES = ("wait", "nested_wait", "fcfs", "vllm", "sarathi", "wait_cp", "vllm_v1", "sglang")

POLICY_MODULES = tuple(importlib.import_module(f"{__name__}.{name}") for name in POLICY_MODULE_NAMES)

REGISTRY: dict[str, PolicySpec] = {}
for _index, _module in enumerate(POLICY_MODULES):
    for _spec in _module.SPECS:
        REGISTRY[_spec.name] = _spec
SELECTOR_INDEX: dict[type, int] = {}
for _index, _module in enumerate(POLICY_MODULES):
    for _spec in _module.SPECS:
        SELECTOR_INDEX[_spec.policy_type] = _index

POLICY_NAMES = tuple(REGISTRY)
BASELINE_POLICIES = tuple(name for name, spec in REGISTRY.items() if spec.baseline)
ENGINE_POLICIES = {spec.engine: name for name, spec in REGISTRY.items() if spec.engine}

Policy = (
    WaitPolicy | NestedWaitPolicy | FCFSPolicy | VLLMPolicy | SarathiPolicy | WaitCPPolicy | VLLMV1Policy | SGLangPolicy
)


def compiled_selectors() -> tuple[Any, ...]:
    """Compile the policy modules' functions (numba) and return their selection functions in order."""
    from fluidopt.sim.policies import _compiled
    from fluidopt.sim.policies._jit import materialize

    materialize((_compiled, *POLICY_MODULES))
    return tuple(module.SELECT for module in POLICY_MODULES)


def policy_spec(name: str) -> PolicySpec:
    """The registered policy ``name``; an unknown name is an error, never a fallback."""
    if name not in REGISTRY:
        raise InputError("policy", name, f"unknown policy; choose one of {', '.join(POLICY_NAMES)}")
    return REGISTRY[name]


def selector_index(policy: Any) -> int:
    """The kernel's index of ``policy``'s selection function (a subclass uses its registered base's)."""
    for cls in type(policy).__mro__:
        if cls in SELECTOR_INDEX:
            return SELECTOR_INDEX[cls]
    raise InputError("policy", type(policy).__name__, "is not a registered policy type")


def all_knobs() -> dict[str, Knob]:
    """Every CLI knob of every registered policy, by flag (shared flags appear once)."""
    out: dict[str, Knob] = {}
    for spec in REGISTRY.values():
        for knob in spec.knobs:
            out.setdefault(knob.flag, knob)
    return out


def make_policy(name: str, **options: Any) -> Policy:
    """Build a policy by name with keyword options (the fields of its dataclass)."""
    spec = policy_spec(name)
    try:
        return spec.build(**options)
    except TypeError as error:
        known = [k.field for k in spec.knobs]
        raise InputError(
            "policy options", sorted(options), f"{name} takes {', '.join(known) or 'no options'}: {error}"
        ) from None


def wait_thresholds_from_kappa(workload: Workload, kappa: float) -> tuple[int, ...]:
    """``n_j = ceil(kappa * lambda_j)`` (at least 1), docs/theory.md (WAIT)."""
    kappa = require_finite_number(kappa, "kappa")
    if not kappa > 0:
        raise InputError("kappa", kappa, "must be > 0")
    return tuple(max(1, int(np.ceil(kappa * rate - 1e-9))) for rate in workload.rates)


__all__ = [
    "BASELINE_POLICIES",
    "ENGINE_POLICIES",
    "POLICY_MODULES",
    "POLICY_NAMES",
    "REGISTRY",
    "FCFSPolicy",
    "KernelPack",
    "Knob",
    "NestedWaitPolicy",
    "Policy",
    "PolicySpec",
    "SGLangPolicy",
    "SarathiPolicy",
    "VLLMPolicy",
    "VLLMV1Policy",
    "WaitCPPolicy",
    "WaitPolicy",
    "all_knobs",
    "compiled_selectors",
    "make_policy",
    "policy_spec",
    "selector_index",
    "wait_thresholds_from_kappa",
]
