"""The simulator's result object."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt.sim.layout import HIST_BINS, HIST_BINS_PER_DECADE, HIST_MIN_LOG10

QUANTILES = (0.5, 0.9, 0.99)


def histogram_quantile(counts: np.ndarray, q: float) -> float:
    """Quantile ``q`` of a log-binned histogram (bin geometric centre; about 0.6% resolution)."""
    total = float(counts.sum())
    if total == 0:
        return math.nan
    index = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
    index = min(index, HIST_BINS - 1)
    return float(10 ** (HIST_MIN_LOG10 + (index + 0.5) / HIST_BINS_PER_DECADE))


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of one simulation run (immutable; :meth:`to_dict` is JSON-ready).

    Throughput and completion rates are over the measurement window ``[warmup_s, window_end_s]``;
    latency, TTFT and time-between-token statistics are over requests that arrived at or after
    the warm-up and completed.  Requests still queued or resident at the end are reported as
    ``unfinished_requests`` (``arrived = completed + unfinished``).

    Attributes
    ----------
    wasted_tokens : int
        Work lost to ``restart`` evictions: the victims' prompt tokens and decode tokens.
    recomputed_tokens : int
        Tokens re-prefilled after ``recompute`` evictions.
    requests : dict of numpy.ndarray or None
        With ``record_requests=True``: per completed request ``id``, ``class``, ``arrival_s``,
        ``first_token_s``, ``completion_s``, ``evictions``.
    series : dict of numpy.ndarray or None
        With ``record_series=True``: per iteration ``start_s``, ``end_s``, ``memory_tokens``,
        ``waiting``, ``batch_size``, ``completions``, ``prefill_tokens``.

    """

    policy: str
    eviction: str
    seed: int | None
    settings: dict[str, Any]
    arrived_requests: int
    completed_requests: int
    unfinished_requests: int
    unfinished_waiting: int
    unfinished_resident: int
    measured_arrivals: int
    measured_completions: int
    arrived_decode_tokens: int
    completed_decode_tokens: int
    completed_in_window: int
    window_start_s: float
    window_end_s: float
    simulated_time_s: float
    iterations: int
    prefill_iterations: int
    evictions: int
    wasted_tokens: int
    recomputed_tokens: int
    overflow_iterations: int
    throughput_tokens_per_s: float
    completed_per_s: float
    mean_latency_s: float
    max_latency_s: float
    latency_quantiles_s: dict[str, float]
    mean_ttft_s: float
    ttft_quantiles_s: dict[str, float]
    mean_tbt_s: float
    tbt_quantiles_s: dict[str, float]
    mean_waiting: float
    max_waiting: int
    mean_resident: float
    mean_memory_tokens: float
    peak_memory_tokens: int
    kv_capacity_tokens: int
    busy_fraction: float
    wall_time_s: float
    max_stage_excess: int | None = None
    state_slots: int = 0
    requests: dict[str, np.ndarray] | None = field(default=None, repr=False)
    series: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def p99_latency_s(self) -> float:
        """99th percentile of end-to-end latency."""
        return self.latency_quantiles_s["p99"]

    @property
    def throughput_gap(self) -> float:
        """``1 - (decode tokens completed) / (decode tokens arrived)`` inside the window.

        The gap to the benchmark ``sum lambda_j l'_j`` measured against the realised arrivals, so
        that arrival noise does not enter (MODEL.md section 5).
        """
        if self.arrived_decode_tokens == 0:
            return math.nan
        return 1.0 - self.completed_decode_tokens / self.arrived_decode_tokens

    @property
    def mean_in_system(self) -> float:
        """Time-average number of requests in the system over the window (waiting + resident)."""
        return self.mean_waiting + self.mean_resident

    @property
    def simulated_requests_per_wall_s(self) -> float:
        """Simulation speed: arrivals simulated per second of wall time."""
        return self.arrived_requests / self.wall_time_s if self.wall_time_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (per-request records and series are left out)."""
        out = {
            "policy": self.policy,
            "eviction": self.eviction,
            "seed": self.seed,
            "arrived_requests": self.arrived_requests,
            "completed_requests": self.completed_requests,
            "unfinished_requests": self.unfinished_requests,
            "unfinished_waiting": self.unfinished_waiting,
            "unfinished_resident": self.unfinished_resident,
            "measured_arrivals": self.measured_arrivals,
            "measured_completions": self.measured_completions,
            "arrived_decode_tokens": self.arrived_decode_tokens,
            "completed_decode_tokens": self.completed_decode_tokens,
            "throughput_gap": self.throughput_gap,
            "completed_in_window": self.completed_in_window,
            "window_start_s": self.window_start_s,
            "window_end_s": self.window_end_s,
            "simulated_time_s": self.simulated_time_s,
            "iterations": self.iterations,
            "prefill_iterations": self.prefill_iterations,
            "evictions": self.evictions,
            "wasted_tokens": self.wasted_tokens,
            "recomputed_tokens": self.recomputed_tokens,
            "overflow_iterations": self.overflow_iterations,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "completed_per_s": self.completed_per_s,
            "mean_latency_s": self.mean_latency_s,
            "p50_latency_s": self.latency_quantiles_s["p50"],
            "p90_latency_s": self.latency_quantiles_s["p90"],
            "p99_latency_s": self.latency_quantiles_s["p99"],
            "max_latency_s": self.max_latency_s,
            "mean_ttft_s": self.mean_ttft_s,
            "p50_ttft_s": self.ttft_quantiles_s["p50"],
            "p90_ttft_s": self.ttft_quantiles_s["p90"],
            "p99_ttft_s": self.ttft_quantiles_s["p99"],
            "mean_tbt_s": self.mean_tbt_s,
            "p50_tbt_s": self.tbt_quantiles_s["p50"],
            "p90_tbt_s": self.tbt_quantiles_s["p90"],
            "p99_tbt_s": self.tbt_quantiles_s["p99"],
            "mean_waiting": self.mean_waiting,
            "max_waiting": self.max_waiting,
            "mean_resident": self.mean_resident,
            "mean_memory_tokens": self.mean_memory_tokens,
            "peak_memory_tokens": self.peak_memory_tokens,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "busy_fraction": self.busy_fraction,
            "wall_time_s": self.wall_time_s,
            "max_stage_excess": self.max_stage_excess,
            "state_slots": self.state_slots,
            "settings": self.settings,
        }
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
