"""fluidopt: fluid-guided scheduling of LLM inference under KV-cache memory limits.

Reference implementation of the fluid model, WAIT and Nested WAIT of Ao, Luo, Simchi-Levi and
Wang, "Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory Constraints"
(arXiv:2504.11320).
"""

from fluidopt.errors import InputError
from fluidopt.fluid import (
    Constraints,
    EquilibriumResult,
    StabilityResult,
    equilibrium,
    equilibrium_closed_form,
    equilibrium_lp,
    is_stable,
    max_stable_scale,
    peer_max_scales,
    stability_boundary,
)
from fluidopt.profile import AffinePiece, GPUProfile, linear_profile, load_profile, preset_profile, profile_presets
from fluidopt.workload import RequestClass, Workload, load_workload, preset_workload, workload_presets

__version__ = "0.1.0"

__all__ = [
    "AffinePiece",
    "Constraints",
    "EquilibriumResult",
    "GPUProfile",
    "InputError",
    "RequestClass",
    "StabilityResult",
    "Workload",
    "equilibrium",
    "equilibrium_closed_form",
    "equilibrium_lp",
    "is_stable",
    "linear_profile",
    "load_profile",
    "load_workload",
    "max_stable_scale",
    "peer_max_scales",
    "preset_profile",
    "preset_workload",
    "profile_presets",
    "stability_boundary",
    "workload_presets",
]
