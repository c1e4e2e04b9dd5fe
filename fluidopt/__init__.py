"""fluidopt: fluid-guided scheduling of LLM inference under KV-cache memory limits.

Reference implementation of the fluid model, WAIT and Nested WAIT of Ao, Luo, Simchi-Levi and
Wang, "Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory Constraints"
(arXiv:2504.11320).  The public names below are imported lazily, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluidopt._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "InputError": "fluidopt.errors",
    "Constraints": "fluidopt.fluid.constraints",
    "EquilibriumResult": "fluidopt.fluid.equilibrium",
    "equilibrium": "fluidopt.fluid.equilibrium",
    "equilibrium_closed_form": "fluidopt.fluid.equilibrium",
    "equilibrium_lp": "fluidopt.fluid.equilibrium",
    "StabilityResult": "fluidopt.fluid.stability",
    "is_stable": "fluidopt.fluid.stability",
    "max_stable_scale": "fluidopt.fluid.stability",
    "peer_max_scales": "fluidopt.fluid.stability",
    "stability_boundary": "fluidopt.fluid.stability",
    "AffinePiece": "fluidopt.profile",
    "GPUProfile": "fluidopt.profile",
    "linear_profile": "fluidopt.profile",
    "load_profile": "fluidopt.profile",
    "preset_profile": "fluidopt.profile",
    "profile_presets": "fluidopt.profile",
    "TimingModel": "fluidopt.timing",
    "timing_kinds": "fluidopt.timing",
    "RequestClass": "fluidopt.workload",
    "Workload": "fluidopt.workload",
    "load_workload": "fluidopt.workload",
    "preset_workload": "fluidopt.workload",
    "workload_presets": "fluidopt.workload",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from fluidopt.errors import InputError
    from fluidopt.fluid.constraints import Constraints
    from fluidopt.fluid.equilibrium import EquilibriumResult, equilibrium, equilibrium_closed_form, equilibrium_lp
    from fluidopt.fluid.stability import (
        StabilityResult,
        is_stable,
        max_stable_scale,
        peer_max_scales,
        stability_boundary,
    )
    from fluidopt.profile import (
        AffinePiece,
        GPUProfile,
        linear_profile,
        load_profile,
        preset_profile,
        profile_presets,
    )
    from fluidopt.timing import TimingModel, timing_kinds
    from fluidopt.workload import RequestClass, Workload, load_workload, preset_workload, workload_presets
