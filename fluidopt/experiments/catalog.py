"""Names the command line needs before any experiment runs (kept free of heavy imports)."""

from __future__ import annotations

from fluidopt.sim.policies import BASELINE_POLICIES

# Policies `fluidopt capacity` evaluates by default (fluidopt.experiments.capacity): the fluid-guided
# designs, then every baseline the policy registry marks (fluidopt.sim.policies).
FLUID_GUIDED_POLICIES = ("wait-cp", "nested-wait-cp", "wait", "nested-wait")
CAPACITY_POLICIES = FLUID_GUIDED_POLICIES + BASELINE_POLICIES
# The profile behind the paper's experiment figures (docs/theory.md, the paper's experiments).
PAPER_PROFILE = "a100-80gb-llama-3-8b"
