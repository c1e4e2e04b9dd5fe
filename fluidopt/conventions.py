"""Counting conventions of a simulation (kept free of heavy imports: threshold design needs them too)."""

from __future__ import annotations

from fluidopt.errors import InputError

CONVENTIONS = ("fluidopt", "vidur")
VIDUR_MAX_GAP_FACTOR = 3.0  # Vidur's "Poisson" arrivals cap every gap at 3 / rate


def check_conventions(conventions: str) -> str:
    """Validate a conventions name: ``fluidopt`` (docs/theory.md section 1) or ``vidur`` (section 9).

    ``vidur`` means: the prefill iteration emits the first output token; Poisson gaps capped at
    3 / rate (about 1.052 x the nominal rate delivered, reported in the result's settings);
    recompute evictions; every request served to the end; statistics over the middle 50 % of
    requests by arrival (no time warm-up).  Whole-prompt block reservation at admission and
    the 1 % watermark hold under both conventions for the paged policies (vllm, sarathi, wait-cp);
    their 16-token blocks and watermark are policy settings.
    """
    if conventions not in CONVENTIONS:
        raise InputError("conventions", conventions, f"must be one of {', '.join(CONVENTIONS)}")
    return conventions
