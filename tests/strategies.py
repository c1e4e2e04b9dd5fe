"""Hypothesis strategies for random workloads and profiles."""

from __future__ import annotations

from hypothesis import strategies as st

from fluidopt.profile import AffinePiece, GPUProfile
from fluidopt.workload import RequestClass, Workload


@st.composite
def workloads(draw, max_classes: int = 4, max_decode: int = 200) -> Workload:
    count = draw(st.integers(1, max_classes))
    classes = []
    for j in range(count):
        classes.append(
            RequestClass(
                name=f"c{j}",
                prefill_tokens=draw(st.integers(1, 600)),
                decode_tokens=draw(st.integers(1, max_decode)),
                rate_per_s=draw(st.floats(0.01, 20.0)),
            )
        )
    return Workload("random", tuple(classes))


@st.composite
def linear_profiles(draw, workload: Workload) -> GPUProfile:
    """A paper-linear profile on which ``workload`` is stable."""
    base = draw(st.floats(1e-3, 0.05))
    scale = draw(st.floats(0.05, 0.9))
    per_kv = scale / workload.kv_mass_rate
    capacity = max(
        workload.max_peak_kv_tokens, int(draw(st.floats(1.0, 20.0)) * base * workload.kv_mass_rate / (1 - scale))
    )
    return GPUProfile("random-linear", capacity, (AffinePiece(base, per_kv),))


@st.composite
def general_profiles(draw, workload: Workload) -> GPUProfile:
    """A profile with 1-3 pieces and all four coefficients, scaled to the workload."""
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        budget = draw(st.floats(0.05, 0.8))
        weights = [draw(st.floats(0.0, 1.0)) for _ in range(3)]
        total = sum(weights) or 1.0
        demand = [
            workload.kv_mass_rate,
            float(workload.rates @ workload.prefill),
            float(workload.rates @ (workload.decode + 1)),
        ]
        coefficients = [budget * w / total / d for w, d in zip(weights, demand)]
        pieces.append(AffinePiece(draw(st.floats(1e-3, 0.05)), *coefficients))
    # Capacity a few times the memory of an empty-batch iteration's arrivals keeps theta* away
    # from the numerically degenerate corner where iterations last for hours.
    base = max(p.base_s for p in pieces)
    factor = draw(st.floats(1.0, 50.0))
    capacity = max(workload.max_peak_kv_tokens, int(factor * base * workload.kv_mass_rate))
    return GPUProfile("random-general", capacity, tuple(pieces))
