"""Names the command line needs before any experiment runs (kept free of heavy imports)."""

from __future__ import annotations

from fluidopt.sim.policies import BASELINE_POLICIES, REGISTRY

# Policies `fluidopt capacity` evaluates by default (fluidopt.answers.capacity): the fluid-guided
# designs, then every baseline the policy registry marks (fluidopt.sim.policies).
# One name per fluid family (its file's family name), chunked designs first.
FLUID_GUIDED_POLICIES = tuple(
    sorted(
        {spec.fluid.family for spec in REGISTRY.values() if spec.fluid is not None},
        key=lambda family: (not REGISTRY[family].fluid.chunked, REGISTRY[family].fluid.nested),  # type: ignore[union-attr]
    )
)
CAPACITY_POLICIES = FLUID_GUIDED_POLICIES + BASELINE_POLICIES
# The profile behind the paper's experiment figures (docs/theory.md, the paper's experiments).
PAPER_PROFILE = "a100-80gb-llama-3-8b"
