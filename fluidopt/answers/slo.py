"""Whether a latency target can be met at all on a profile: a request served alone is the fastest."""

from __future__ import annotations

from fluidopt.experiments.runs import Targets
from fluidopt.profile import GPUProfile
from fluidopt.workload import Workload

__all__ = ["slo_floor"]


def slo_floor(workload: Workload, profile: GPUProfile, targets: Targets) -> str | None:
    """Why no setting can meet ``targets`` at any load, from the profile alone (None if it may).

    A request served alone is the fastest it can be: TTFT at least its whole prefill in one
    step, TPOT at least one single-sequence decode step, E2E at least both.
    """
    shortest = min(workload.classes, key=lambda c: c.prefill_tokens + c.decode_tokens)
    prefill = profile.batch_time([shortest.prefill_tokens], [0], [])
    decode = profile.batch_time([], [], [shortest.prefill_tokens])
    e2e = prefill + max(shortest.decode_tokens - 1, 0) * decode
    if targets.p99_ttft_s is not None and targets.p99_ttft_s < prefill:
        tokens = shortest.prefill_tokens
        return f"p99 TTFT {targets.p99_ttft_s:g} s is below one {tokens}-token prefill alone ({prefill:.4g} s)"
    if targets.p99_tpot_s is not None and shortest.decode_tokens > 1 and targets.p99_tpot_s < decode:
        return f"p99 TPOT {targets.p99_tpot_s:g} s is below one decode step alone ({decode:.4g} s)"
    if targets.p99_latency_s is not None and targets.p99_latency_s < e2e:
        return f"p99 E2E {targets.p99_latency_s:g} s is below one request served alone ({e2e:.4g} s)"
    return None
