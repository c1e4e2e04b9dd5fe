"""Names the command line needs before any experiment runs (kept free of heavy imports)."""

from __future__ import annotations

# Policies `fluidopt capacity` evaluates by default (fluidopt.experiments.capacity).
CAPACITY_POLICIES = ("wait-cp", "nested-wait-cp", "wait", "nested-wait", "vllm", "sarathi", "fcfs")
# The profile behind the paper's experiment figures (MODEL.md section 7).
PAPER_PROFILE = "a100-80gb-llama-3-8b"
