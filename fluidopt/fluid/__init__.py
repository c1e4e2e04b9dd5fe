"""The fluid model: equilibrium, stability regions, fixed points, dynamics, symbolic forms (imported lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluidopt._lazy import lazy_exports

_EXPORTS = {
    "Constraints": "fluidopt.fluid.constraints",
    "EquilibriumResult": "fluidopt.fluid.equilibrium",
    "equilibrium": "fluidopt.fluid.equilibrium",
    "equilibrium_closed_form": "fluidopt.fluid.equilibrium",
    "equilibrium_lp": "fluidopt.fluid.equilibrium",
    "BoundaryResult": "fluidopt.fluid.stability",
    "StabilityResult": "fluidopt.fluid.stability",
    "is_stable": "fluidopt.fluid.stability",
    "max_stable_scale": "fluidopt.fluid.stability",
    "peer_max_scales": "fluidopt.fluid.stability",
    "stability_boundary": "fluidopt.fluid.stability",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from fluidopt.fluid.constraints import Constraints
    from fluidopt.fluid.equilibrium import EquilibriumResult, equilibrium, equilibrium_closed_form, equilibrium_lp
    from fluidopt.fluid.stability import (
        BoundaryResult,
        StabilityResult,
        is_stable,
        max_stable_scale,
        peer_max_scales,
        stability_boundary,
    )
