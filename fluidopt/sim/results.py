"""The simulator's result object."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt._values import ArrayValue
from fluidopt.sim.layout import HIST_BINS, HIST_BINS_PER_DECADE, HIST_MIN_LOG10

QUANTILES = (0.5, 0.9, 0.99)
OVERLOAD_FRACTION = 0.05  # unfinished beyond this share of arrivals (plus 3 sigma) marks a growing queue


def histogram_quantile(counts: np.ndarray, q: float) -> float:
    """Quantile ``q`` of a log-binned histogram (bin geometric centre; about 0.6% resolution)."""
    total = float(counts.sum())
    if total == 0:
        return math.nan
    index = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
    index = min(index, HIST_BINS - 1)
    if index == HIST_BINS - 1:  # the top bin is open-ended: report its lower edge, a lower bound
        return float(10 ** (HIST_MIN_LOG10 + index / HIST_BINS_PER_DECADE))
    return float(10 ** (HIST_MIN_LOG10 + (index + 0.5) / HIST_BINS_PER_DECADE))


@dataclass(frozen=True, eq=False)
class SimulationResult(ArrayValue):
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
        Tokens re-prefilled after ``recompute`` evictions (less those found in the prefix cache).
    prefix_hit_tokens : int
        Tokens of re-admitted preempted requests found in vLLM's prefix cache, not recomputed.
    requests : dict of numpy.ndarray or None
        With ``record_requests=True``: per completed request ``id``, ``class``, ``arrival_s``,
        ``first_token_s``, ``completion_s``, ``evictions``.
    series : dict of numpy.ndarray or None
        With ``record_series=True``: per iteration the columns of
        :data:`fluidopt.sim.layout.SERIES_COLUMNS` (``start_s``, ``end_s``, ``memory_tokens`` (KV
        held when the batch ran), ``waiting``, ``batch_size``, ``completions``, ``prefill_tokens``,
        ``running`` (requests holding KV), ``admitted`` and ``preempted`` (in that step), and
        ``scheduled_tokens`` (prefill chunks plus decodes)).
    mean_tpot_s, tpot_quantiles_s : float, dict
        Time per output token after the first, per request: ``(E2E - TTFT) / (outputs - 1)``
        (requests with at least two output tokens), as ``vllm bench serve`` defines TPOT.
    peak_running_requests : int
        Most requests holding KV at once.
    preemption_steps : int
        Steps in which the policy preempted (vLLM) or retracted (SGLang) at least one request.

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
    mean_tpot_s: float = math.nan
    tpot_quantiles_s: dict[str, float] = field(default_factory=dict)
    peak_running_requests: int = 0
    preemption_steps: int = 0
    prefix_hit_tokens: int = 0
    state_slots: int = 0
    requests: dict[str, np.ndarray] | None = field(default=None, repr=False)
    series: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        """One word from :data:`fluidopt.status.STATUSES`: ok, overflow, livelock, starved or truncated.

        ``overflow``: some batch ran with resident memory above C.  ``livelock``: at least ten
        evictions per completion and fewer than half of the arrivals completed.  ``starved``:
        requests arrived and none completed (or none arrived inside the measurement window).
        ``truncated``: a latency quantile fell in the top bin of the histogram (1e6 s), so it is a
        lower bound.  ``overloaded`` (a result, success stays true): more than 5 % of the arrivals
        (plus three standard deviations) were unfinished at the end, a queue that grew.
        """
        return self._status_and_message()[0]

    @property
    def message(self) -> str:
        """Why the status is what it is."""
        return self._status_and_message()[1]

    @property
    def success(self) -> bool:
        """True when the result can be used as it stands (status ``ok``)."""
        return self.status == "ok"

    def _status_and_message(self) -> tuple[str, str]:
        """The most severe problem (starved > livelock > overflow > truncated > overloaded) and every problem found."""
        problems: list[tuple[str, str]] = []
        if self.arrived_requests > 0 and self.completed_requests == 0:
            problems.append(("starved", f"{self.arrived_requests} requests arrived and none completed"))
        elif self.evictions >= 10 * max(self.completed_requests, 1) and self.completed_requests < 0.5 * max(
            self.arrived_requests, 1
        ):
            problems.append(
                (
                    "livelock",
                    f"{self.evictions} evictions for {self.completed_requests} completions of "
                    f"{self.arrived_requests} arrivals: requests are evicted and readmitted without finishing",
                )
            )
        if self.overflow_iterations > 0:
            problems.append(
                (
                    "overflow",
                    f"{self.overflow_iterations} of {self.iterations} batches ran with resident memory above C "
                    f"(peak {self.peak_memory_tokens} = {self.peak_memory_tokens / self.kv_capacity_tokens:.3g} x C): "
                    "latencies describe a GPU with more memory than this one",
                )
            )
        top_bin = 10 ** (HIST_MIN_LOG10 + (HIST_BINS - 1) / HIST_BINS_PER_DECADE)
        if any(v >= top_bin * (1 - 1e-9) for v in self.latency_quantiles_s.values() if math.isfinite(v)):
            problems.append(
                ("truncated", "a latency quantile reached the histogram's top (1e6 s); it is a lower bound")
            )
        arrived = self.arrived_requests
        if self.unfinished_requests > OVERLOAD_FRACTION * arrived + 3 * math.sqrt(max(arrived, 1)):
            problems.append(
                (
                    "overloaded",
                    f"{self.unfinished_requests} of {arrived} requests were unfinished at the end: arrivals "
                    f"outpaced service ({self.completed_per_s:.4g} completed per s)",
                )
            )
        if arrived > 0 and self.measured_arrivals == 0:
            problems.append(
                (
                    "starved" if not problems else problems[0][0],
                    f"no request arrived inside the measurement window (warm-up {self.window_start_s:.4g} s, "
                    f"run {self.simulated_time_s:.4g} s): every statistic is empty",
                )
            )
        if not problems:
            return "ok", "simulated as asked"
        return problems[0][0], "; ".join(message for _, message in problems)

    @property
    def p99_latency_s(self) -> float:
        """99th percentile of end-to-end latency."""
        return self.latency_quantiles_s["p99"]

    @property
    def throughput_gap(self) -> float:
        """``1 - (decode tokens completed) / (decode tokens arrived)`` inside the window.

        The gap to the benchmark ``sum lambda_j l'_j`` measured against the realised arrivals, so
        that arrival noise does not enter (docs/theory.md section 5).
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

    def engine_metrics(self) -> dict[str, Any]:
        """Latency statistics named as ``vllm bench serve`` names them (milliseconds), and engine counters.

        ``ttft``, ``tpot``, ``itl`` (time between consecutive tokens of a request) and ``e2el``
        (end-to-end latency), each ``{mean, median, p90, p99}`` in ms; ``preemptions`` (vLLM's
        name; SGLang calls them ``retractions``), ``recomputed_tokens`` (prompt plus generated
        tokens prefilled again), ``peak_running_requests`` and the KV usage (fraction of C).
        """

        def stats(mean: float, quantiles: dict[str, float]) -> dict[str, float | None]:
            values = {
                "mean_ms": 1e3 * mean,
                "median_ms": 1e3 * quantiles.get("p50", math.nan),
                "p90_ms": 1e3 * quantiles.get("p90", math.nan),
                "p99_ms": 1e3 * quantiles.get("p99", math.nan),
            }
            return {k: (v if math.isfinite(v) else None) for k, v in values.items()}

        capacity = max(self.kv_capacity_tokens, 1)
        return {
            "ttft": stats(self.mean_ttft_s, self.ttft_quantiles_s),
            "tpot": stats(self.mean_tpot_s, self.tpot_quantiles_s),
            "itl": stats(self.mean_tbt_s, self.tbt_quantiles_s),
            "e2el": stats(self.mean_latency_s, self.latency_quantiles_s),
            "request_throughput": self.completed_per_s if math.isfinite(self.completed_per_s) else None,
            "output_throughput": (
                self.throughput_tokens_per_s if math.isfinite(self.throughput_tokens_per_s) else None
            ),
            "preemptions": self.evictions,
            "retractions": self.evictions if self.policy == "sglang" else None,
            "preemption_steps": self.preemption_steps,
            "recomputed_tokens": self.recomputed_tokens,
            "prefix_hit_tokens": self.prefix_hit_tokens,
            "peak_running_requests": self.peak_running_requests,
            "kv_usage_mean": self.mean_memory_tokens / capacity if math.isfinite(self.mean_memory_tokens) else None,
            "kv_usage_peak": self.peak_memory_tokens / capacity,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (per-request records and series are left out)."""
        engine = self.engine_metrics()
        out = {
            "status": self.status,
            "success": self.success,
            "message": self.message,
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
            "steps": self.iterations,  # an engine's name for them (vLLM counts its engine steps)
            "prefill_iterations": self.prefill_iterations,
            "evictions": self.evictions,
            "wasted_tokens": self.wasted_tokens,
            "recomputed_tokens": self.recomputed_tokens,
            "prefix_hit_tokens": self.prefix_hit_tokens,
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
            "mean_tpot_s": self.mean_tpot_s,
            "p50_tpot_s": self.tpot_quantiles_s.get("p50", math.nan),
            "p90_tpot_s": self.tpot_quantiles_s.get("p90", math.nan),
            "p99_tpot_s": self.tpot_quantiles_s.get("p99", math.nan),
            "peak_running_requests": self.peak_running_requests,
            "preemptions": self.evictions,
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
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
        out.update({"e2e": engine["e2el"], **{k: v for k, v in engine.items() if k not in out}})
        return out
