"""The fluid model: equilibrium, stability regions, symbolic forms."""

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

__all__ = [
    "BoundaryResult",
    "Constraints",
    "EquilibriumResult",
    "StabilityResult",
    "equilibrium",
    "equilibrium_closed_form",
    "equilibrium_lp",
    "is_stable",
    "max_stable_scale",
    "peer_max_scales",
    "stability_boundary",
]
