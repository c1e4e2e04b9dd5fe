"""Arrival processes for the simulator, generated in chunks from a seeded generator.

Every process turns ``(rng, total requests or horizon)`` into a stream of chunks of arrival
times, classes and token lengths.  Randomness is drawn up front, chunk by chunk, from a
generator that no policy touches, so two runs with the same seed see the same requests whatever
the policy (common random numbers).  Poisson gaps are exact exponentials, never clipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number
from fluidopt.trace import Trace
from fluidopt.workload import Workload, decode_bin_edges

CHUNK = 65_536


@dataclass(frozen=True)
class ArrivalChunk:
    """A block of consecutive arrivals (times non-decreasing)."""

    times: np.ndarray
    classes: np.ndarray
    prefill: np.ndarray
    decode: np.ndarray
    ids: np.ndarray
    final: bool
    cached: np.ndarray | None = None  # prompt tokens already in the prefix cache at arrival (None: none)


class ArrivalProcess:
    """Base class: subclasses implement :meth:`_draw` returning ``(times, classes, prefill, decode)``."""

    name = "arrivals"

    def stream(
        self, workload: Workload, rng: np.random.Generator, *, requests: int | None, horizon_s: float | None
    ) -> Iterator[ArrivalChunk]:
        """Yield chunks until ``requests`` arrivals or the time ``horizon_s`` is reached."""
        produced = 0
        offset = 0.0
        state = self._initial_state(workload, rng)
        while True:
            size = CHUNK if requests is None else min(CHUNK, requests - produced)
            times, classes, prefill, decode, state = self._draw(workload, rng, size, offset, state)
            final = requests is not None and produced + times.size >= requests
            if horizon_s is not None and (times.size == 0 or times[-1] > horizon_s):
                keep = np.searchsorted(times, horizon_s, side="right")
                times, classes, prefill, decode = times[:keep], classes[:keep], prefill[:keep], decode[:keep]
                final = True
            if times.size < size:  # the process is exhausted (a finished trace, a zero rate)
                final = True
            ids = np.arange(produced, produced + times.size, dtype=np.int64)
            produced += times.size
            if times.size:
                offset = float(times[-1])
            yield ArrivalChunk(times, classes, prefill, decode, ids, final, self._cached(ids))
            if final:
                return

    def _initial_state(self, workload: Workload, rng: np.random.Generator) -> object:
        return None

    def _cached(self, ids: np.ndarray) -> np.ndarray | None:
        """Prompt tokens of the arrivals ``ids`` already in the prefix cache (None: none; a trace may say)."""
        return None

    def _draw(self, workload, rng, size, offset, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings of the process, for the result's provenance."""
        return {"process": self.name}


def _lengths(workload: Workload, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prefill = np.array([c.prefill_tokens for c in workload.classes], dtype=np.int64)
    decode = np.array([c.decode_tokens for c in workload.classes], dtype=np.int64)
    return prefill[classes], decode[classes]


@dataclass(frozen=True)
class PoissonArrivals(ArrivalProcess):
    """Independent Poisson arrivals per class: total rate ``Lambda``, class j w.p. ``lambda_j / Lambda``.

    ``max_gap_factor`` caps every gap at ``max_gap_factor / Lambda``: Vidur's "Poisson"
    generator does this with 3, which delivers about 1.052 x the nominal rate (the mean of
    ``min(E, 3)`` for a unit exponential E is ``1 - e^-3``).  fluidopt's default leaves gaps exact.
    """

    max_gap_factor: float | None = None
    name = "poisson"

    def __post_init__(self) -> None:
        if self.max_gap_factor is not None:
            value = require_finite_number(self.max_gap_factor, "max_gap_factor")
            require(value > 0, "max_gap_factor", self.max_gap_factor, "must be > 0")

    @property
    def rate_multiplier(self) -> float:
        """Delivered rate over nominal rate: ``1 / (1 - exp(-max_gap_factor))`` (1 without a cap)."""
        if self.max_gap_factor is None:
            return 1.0
        return float(1.0 / (1.0 - np.exp(-self.max_gap_factor)))

    def describe(self) -> dict:
        """Settings of the process, for the result's provenance."""
        out: dict = {"process": self.name}
        if self.max_gap_factor is not None:
            out["max_gap_factor"] = self.max_gap_factor
            out["rate_multiplier"] = self.rate_multiplier
        return out

    def _draw(self, workload, rng, size, offset, state):
        total = workload.total_rate_per_s
        if total == 0 or size == 0:
            empty = np.empty(0, dtype=np.int64)
            return np.empty(0), empty, empty, empty, state
        gaps = rng.exponential(1.0 / total, size)
        if self.max_gap_factor is not None:
            gaps = np.minimum(gaps, self.max_gap_factor / total)
        times = offset + np.cumsum(gaps)
        classes = rng.choice(workload.num_classes, size=size, p=workload.shares).astype(np.int64)
        return (times, classes, *_lengths(workload, classes), state)


@dataclass(frozen=True)
class DeterministicArrivals(ArrivalProcess):
    """Evenly spaced arrivals at the total rate; classes interleaved to follow the shares exactly."""

    name = "deterministic"

    def _initial_state(self, workload, rng):
        return np.zeros(workload.num_classes)

    def _draw(self, workload, rng, size, offset, state):
        total = workload.total_rate_per_s
        if total == 0 or size == 0:
            empty = np.empty(0, dtype=np.int64)
            return np.empty(0), empty, empty, empty, state
        counts = np.asarray(state, dtype=float).copy()
        classes = np.empty(size, dtype=np.int64)
        for i in range(size):
            done = counts.sum()
            j = int(np.argmax(workload.shares * (done + 1) - counts))
            classes[i] = j
            counts[j] += 1
        times = offset + np.arange(1, size + 1) / total
        return (times, classes, *_lengths(workload, classes), counts)


@dataclass(frozen=True)
class MMPPArrivals(ArrivalProcess):
    """Two-state Markov-modulated Poisson process (bursty traffic).

    In state s the total rate is ``multipliers[s] * Lambda`` (class shares unchanged); the state
    switches from 0 to 1 at rate ``switch_rates[0]`` and back at ``switch_rates[1]``.  The
    long-run mean rate is ``Lambda * (m0 r1 + m1 r0) / (r0 + r1)``.
    """

    multipliers: tuple[float, ...] = (1.5, 0.5)
    switch_rates: tuple[float, ...] = (0.1, 0.1)
    name = "mmpp"

    def __post_init__(self) -> None:
        for index, value in enumerate(self.multipliers):
            number = require_finite_number(value, f"mmpp.multipliers[{index}]")
            require(number >= 0, f"mmpp.multipliers[{index}]", value, "must be >= 0")
        for index, value in enumerate(self.switch_rates):
            number = require_finite_number(value, f"mmpp.switch_rates[{index}]")
            require(number > 0, f"mmpp.switch_rates[{index}]", value, "must be > 0")
        require(
            len(self.multipliers) == 2 and len(self.switch_rates) == 2,
            "mmpp",
            (self.multipliers, self.switch_rates),
            "needs two multipliers and two switch rates",
        )
        require(
            max(self.multipliers) > 0,
            "mmpp.multipliers",
            list(self.multipliers),
            "at least one state needs a positive rate (all zero: no request would ever arrive)",
        )

    def mean_multiplier(self) -> float:
        """Long-run rate multiplier."""
        (m0, m1), (r0, r1) = self.multipliers, self.switch_rates
        return (m0 * r1 + m1 * r0) / (r0 + r1)

    def _initial_state(self, workload, rng):
        return (0, float(rng.exponential(1.0 / self.switch_rates[0])))

    def _draw(self, workload, rng, size, offset, state):
        total = workload.total_rate_per_s
        if total == 0 or size == 0:
            empty = np.empty(0, dtype=np.int64)
            return np.empty(0), empty, empty, empty, state
        current, switch_at = state
        times = np.empty(size)
        t = offset
        i = 0
        while i < size:
            rate = self.multipliers[current] * total
            gap = rng.exponential(1.0 / rate) if rate > 0 else np.inf
            if t + gap < switch_at:
                t += gap
                times[i] = t
                i += 1
            else:  # memorylessness: restart the gap clock at the switch
                t = switch_at
                current = 1 - current
                switch_at = t + float(rng.exponential(1.0 / self.switch_rates[current]))
        classes = rng.choice(workload.num_classes, size=size, p=workload.shares).astype(np.int64)
        return (times, classes, *_lengths(workload, classes), (current, switch_at))

    def describe(self) -> dict:
        """Settings of the process."""
        return {"process": self.name, "multipliers": list(self.multipliers), "switch_rates": list(self.switch_rates)}


@dataclass(frozen=True)
class TraceArrivals(ArrivalProcess):
    """Replay a trace's arrival times and per-request lengths.

    Classes are the trace's decode-length bins (as in :func:`fluidopt.workload.workload_from_trace`
    with the same ``bins``).  ``rate_per_s`` rescales time so that the mean rate becomes it.
    """

    trace: Trace = field(repr=False, default=None)  # type: ignore[assignment]
    bins: int | tuple[float, ...] = 8
    rate_per_s: float | None = None
    name = "trace"

    def __post_init__(self) -> None:
        if self.trace is None:
            raise InputError("trace", None, "a trace is required")
        if self.trace.arrival_times_s is None and self.rate_per_s is None:
            raise InputError("rate", None, f"trace {self.trace.name!r} has no arrival times; give a rate")

    def _initial_state(self, workload, rng):
        trace = self.trace
        if trace.arrival_times_s is None:
            times = np.cumsum(rng.exponential(1.0 / self.rate_per_s, trace.num_requests))
        else:
            times = trace.arrival_times_s.astype(float)
            mean = trace.mean_rate_per_s
            if self.rate_per_s is not None and mean:
                times = times * (mean / self.rate_per_s)
        edges = decode_bin_edges(trace.decode_tokens, self.bins if isinstance(self.bins, int) else list(self.bins))
        classes = np.clip(np.searchsorted(edges, trace.decode_tokens, side="left") - 1, 0, edges.size - 2)
        # Renumber bins to the non-empty ones, as workload_from_trace does.
        _, classes = np.unique(classes, return_inverse=True)
        return {"times": times, "classes": classes.astype(np.int64), "position": 0}

    def _draw(self, workload, rng, size, offset, state):
        start = state["position"]
        stop = min(start + size, self.trace.num_requests)
        state = {**state, "position": stop}
        sl = slice(start, stop)
        return (
            state["times"][sl],
            state["classes"][sl],
            self.trace.prefill_tokens[sl].astype(np.int64),
            self.trace.decode_tokens[sl].astype(np.int64),
            state,
        )

    def _cached(self, ids: np.ndarray) -> np.ndarray | None:
        cached = self.trace.cached_tokens
        return None if cached is None else cached[ids].astype(np.int64)

    def describe(self) -> dict:
        """Settings of the process."""
        return {"process": self.name, "trace": self.trace.name, "bins": self.bins, "rate_per_s": self.rate_per_s}


def arrival_process(name: str) -> ArrivalProcess:
    """Build a named arrival process (``poisson``, ``deterministic``, ``mmpp``)."""
    processes = {"poisson": PoissonArrivals, "deterministic": DeterministicArrivals, "mmpp": MMPPArrivals}
    if name not in processes:
        raise InputError("arrivals", name, f"unknown arrival process; choose one of {', '.join(processes)}")
    return processes[name]()
