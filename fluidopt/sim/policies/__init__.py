"""Simulated scheduling policies: one module per policy, and the one registry of them all.

Each module (``wait``, ``nested_wait``, ``fcfs``, ``vllm``, ``sarathi``, ``wait_cp``,
``vllm_v1``, ``sglang``) holds a policy's validated parameter dataclass, its
``kernel_pack`` (the parameter arrays of its compiled selection function) and the compiled
selection function, and registers its names in ``SPECS``.  :data:`POLICY_MODULE_NAMES` below is the
registry: it orders the selection functions the compiled kernel dispatches over (specialised at
compile time: the kernel unrolls the tuple, so no Python runs per iteration; see
:func:`compiled_selectors`, and :mod:`fluidopt._jit` for why numba loads only
with the kernel) and drives the
policy names, the CLI's choices and knobs, the factories, the tuning grids, the default lists of
``capacity`` / ``compare`` and the glossary's policy table.

Adding a policy: write ``fluidopt/sim/policies/<name>.py`` after the pattern of the others
(dataclass with ``name``, ``kernel_pack``, ``to_dict``; ``select_<name>`` with the common
signature; ``SPECS`` and ``SELECT``) and add its name to :data:`POLICY_MODULE_NAMES` (or, from
outside the package, call :func:`register_policy_module` before the kernel loads).  Tests
parametrised over :data:`POLICY_NAMES` pick it up (compiled = plain Python, conservation, memory).
"""

from __future__ import annotations

import importlib
from dataclasses import fields, replace
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require_finite_number
from fluidopt.sim.policies._base import FluidDesign, KernelPack, Knob, PolicySpec
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

POLICY_MODULES: list[Any] = [importlib.import_module(f"{__name__}.{name}") for name in POLICY_MODULE_NAMES]

REGISTRY: dict[str, PolicySpec] = {}
SELECTOR_INDEX: dict[type, int] = {}


def _register(module: Any, index: int) -> None:
    for spec in module.SPECS:
        REGISTRY[spec.name] = spec
        SELECTOR_INDEX[spec.policy_type] = index


for _index, _module in enumerate(POLICY_MODULES):
    _register(_module, _index)

POLICY_NAMES = tuple(REGISTRY)
BASELINE_POLICIES = tuple(name for name, spec in REGISTRY.items() if spec.baseline)
# The fluid-designed names, and the families of their thresholds files.
FLUID_POLICIES = tuple(name for name, spec in REGISTRY.items() if spec.fluid is not None)
THRESHOLD_FAMILIES = tuple(dict.fromkeys(spec.fluid.family for spec in REGISTRY.values() if spec.fluid is not None))
ENGINE_POLICIES = {spec.engine: name for name, spec in REGISTRY.items() if spec.engine}


def register_policy_module(module: Any) -> None:
    """Add a policy module defined outside the package (``SPECS`` and ``SELECT``, as the modules here).

    Register before :mod:`fluidopt.sim.kernel` (and the command line, whose choices are read
    once) is imported: the kernel binds the selection functions it dispatches over when it loads.
    """
    global POLICY_NAMES
    for attribute in ("SPECS", "SELECT"):
        if not hasattr(module, attribute):
            raise InputError(f"policy module {module.__name__}", attribute, "is missing")
    clash = [spec.name for spec in module.SPECS if spec.name in REGISTRY]
    if clash:
        raise InputError("policy", clash[0], "is already registered")
    POLICY_MODULES.append(module)
    _register(module, len(POLICY_MODULES) - 1)
    POLICY_NAMES = tuple(REGISTRY)


Policy = (
    WaitPolicy | NestedWaitPolicy | FCFSPolicy | VLLMPolicy | SarathiPolicy | WaitCPPolicy | VLLMV1Policy | SGLangPolicy
)


def compiled_selectors() -> tuple[Any, ...]:
    """Compile the policy modules' functions (numba) and return their selection functions in order."""
    from fluidopt._jit import materialize
    from fluidopt.sim.policies import _compiled

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


def fluid_design(name: str) -> FluidDesign | None:
    """The fluid design of policy ``name`` (None for a baseline); an unknown name is an error."""
    return policy_spec(name).fluid


def resolve(reference: str) -> Any:
    """The function a registry entry names as ``"module:function"``."""
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


def apply_variant(name: str, policy: Any) -> Any:
    """``policy`` with the fields that policy ``name`` fixes on its family (``hold``, ``gate``)."""
    design = fluid_design(name)
    return replace(policy, **dict(design.variant)) if design is not None and design.variant else policy


def as_variant(name: str, policy: Any) -> Any:
    """``policy`` (of ``name``'s family) as policy ``name``: the family's variant fields reset, then ``name``'s set."""
    design = fluid_design(name)
    if design is None:
        return policy
    defaults = {f.name: f.default for f in fields(policy)}
    family_fields = {
        key
        for spec in REGISTRY.values()
        if spec.fluid is not None and spec.fluid.family == design.family
        for key, _ in spec.fluid.variant
    }
    return replace(policy, **{key: defaults[key] for key in family_fields}, **dict(design.variant))


def design_policy(name: str, workload: Workload, profile: Any, **options: Any) -> Any:
    """Policy ``name`` designed from the fluid model (its registered designer and variant)."""
    design = fluid_design(name)
    if design is None:
        raise InputError("policy", name, "is not designed from the fluid model (a baseline takes its knobs)")
    return apply_variant(name, resolve(design.designer)(workload, profile, **options))


def tuning_candidates(name: str, workload: Workload, profile: Any, conventions: str = "fluidopt") -> list[Any]:
    """The ``[(policy, setting)]`` candidates registered for ``name`` (the fluid family's tuning grid)."""
    design = fluid_design(name)
    if design is None:
        raise InputError("policy", name, "has no fluid tuning grid (a baseline's grid is PolicySpec.grid)")
    return [
        (apply_variant(name, policy), setting)
        for policy, setting in resolve(design.tuning)(workload, profile, conventions)
    ]


def policy_from_document(document: dict[str, Any], where: str, workload: Workload | None = None) -> Any:
    """The policy a thresholds file's table holds (its ``policy`` names a fluid-designed policy)."""
    name = document.get("policy")
    names = FLUID_POLICIES
    if name not in names or REGISTRY[name].fluid is None:
        raise InputError(f"{where}: policy", name, f"must be one of {', '.join(names)}")
    reader: Any = REGISTRY[name].policy_type
    return apply_variant(name, reader.from_document(document, where, workload))


def wait_thresholds_from_kappa(workload: Workload, kappa: float) -> tuple[int, ...]:
    """``n_j = ceil(kappa * lambda_j)`` (at least 1), docs/theory.md (WAIT)."""
    kappa = require_finite_number(kappa, "kappa")
    if not kappa > 0:
        raise InputError("kappa", kappa, "must be > 0")
    return tuple(max(1, int(np.ceil(kappa * rate - 1e-9))) for rate in workload.rates)


__all__ = [
    "BASELINE_POLICIES",
    "ENGINE_POLICIES",
    "FLUID_POLICIES",
    "THRESHOLD_FAMILIES",
    "FluidDesign",
    "apply_variant",
    "as_variant",
    "design_policy",
    "fluid_design",
    "resolve",
    "tuning_candidates",
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
    "policy_from_document",
    "register_policy_module",
    "policy_spec",
    "selector_index",
    "wait_thresholds_from_kappa",
]
