"""The designers the policy registry names: a fluid-designed policy from a workload and a profile.

Each function takes ``(workload, profile, **options)`` and returns the family's policy; the
registry (:class:`fluidopt.sim.policies.FluidDesign`) then fixes the variant's fields (``hold``,
``gate``).  Options a designer does not use are ignored, so that one call site can pass the
command line's options to any of them.
"""

from __future__ import annotations

from typing import Any

from fluidopt.profile import GPUProfile
from fluidopt.sim.policies import NestedWaitPolicy, Policy, WaitPolicy, wait_thresholds_from_kappa
from fluidopt.thresholds.nested import nested_wait_thresholds
from fluidopt.thresholds.wait import wait_thresholds
from fluidopt.workload import Workload


def design_wait(
    workload: Workload, profile: GPUProfile, *, kappa: float | None = None, kappa_rounding: bool = False, **_: Any
) -> Policy:
    """WAIT from :func:`~fluidopt.thresholds.wait.wait_thresholds` (``kappa``: that design's kappa).

    With ``kappa_rounding``, the thresholds are ``n_j = ceil(kappa lambda_j)`` straight from the given
    ``kappa`` (the command line's ``--kappa``), without the design's checks.
    """
    if kappa is not None and kappa_rounding:
        return WaitPolicy(wait_thresholds_from_kappa(workload, kappa))
    return WaitPolicy(wait_thresholds(workload, profile, kappa=kappa).thresholds)


def design_nested_wait(
    workload: Workload, profile: GPUProfile, *, segments: int | None = None, repair: bool = False, **_: Any
) -> Policy:
    """Nested WAIT from :func:`~fluidopt.thresholds.nested.nested_wait_thresholds` over ``segments``."""
    design = nested_wait_thresholds(workload, profile, segments=segments)
    return NestedWaitPolicy(design.segments.boundaries, design.thresholds, repair)


def design_wait_cp(workload: Workload, profile: GPUProfile, **options: Any) -> Policy:
    """WAIT-CP from :func:`~fluidopt.thresholds.chunked.wait_cp_thresholds` (module docstring)."""
    return _chunked(workload, profile, nested=False, **options)


def design_nested_wait_cp(workload: Workload, profile: GPUProfile, **options: Any) -> Policy:
    """Nested WAIT-CP: the chunked design over decode segments."""
    return _chunked(workload, profile, nested=True, **options)


def _chunked(
    workload: Workload,
    profile: GPUProfile,
    *,
    nested: bool,
    kappa: float | None = None,
    slack: float | None = None,
    chunk_tokens: int | None = None,
    conventions: str = "fluidopt",
    segments: int | None = None,
    watermark: float | None = None,
    wait_gate: bool = False,
    **_: Any,
) -> Policy:
    from fluidopt.thresholds.chunked import wait_cp_thresholds  # only the chunked designs need the fixed point

    design = wait_cp_thresholds(
        workload,
        profile,
        kappa=kappa,
        slack=slack,
        chunk_tokens=chunk_tokens,
        conventions=conventions,
        nested=nested,
        segments=segments,
        **({"watermark": watermark} if watermark is not None else {}),  # type: ignore[arg-type]
    )
    return design.policy(wait_gate=wait_gate)
