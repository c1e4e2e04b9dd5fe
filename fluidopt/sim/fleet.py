"""A fleet: several replicas (each a profile and an engine policy) behind a router, on one arrival stream.

The stream is drawn once (Poisson arrivals of the workload's classes, or a trace); the router
assigns each request to a replica; each replica is then the ordinary simulator on the requests
it was sent (:func:`fluidopt.sim.simulate` with their own arrival times), so a fleet costs what
its replicas cost.  Routers (:data:`ROUTERS`):

- ``round-robin``: request ``i`` to replica ``i mod N``;
- ``least-tokens``: join the replica with the fewest outstanding tokens (prompt plus output of
  the requests it holds);
- ``vllm-dp``: vLLM's data-parallel front end, the replica with the fewest requests in it;
- ``class-shares``: class ``j`` goes to deployment ``d`` with probability ``shares[d][j]`` (the
  fleet planner's routing), then round robin over that deployment's replicas.

The two load-aware routers need each request's time in the system, which depends on the routing:
the fleet is first simulated round robin, and requests are then routed by the occupancy that
first pass implies (the replay of a data-parallel run does the same).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from fluidopt.errors import InputError, require
from fluidopt.profile import GPUProfile
from fluidopt.stats import confidence_interval
from fluidopt.workload import Workload

ROUTERS = ("round-robin", "least-tokens", "vllm-dp", "class-shares")
WARMUP_FRACTION = 0.1  # statistics skip requests arriving in the first 10 % of the stream's span
UNFINISHED_FRACTION = 0.02  # a fleet leaving more of its measured requests unfinished is overloaded


@dataclass(frozen=True)
class Replica:
    """One engine of the fleet: which deployment it belongs to, its GPU profile and its policy."""

    deployment: str
    profile: GPUProfile
    policy: Any


@dataclass(frozen=True)
class Stream:
    """Requests in arrival order: times (s), classes, prompt and output lengths."""

    arrival_s: np.ndarray
    classes: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    @property
    def size(self) -> int:
        """Requests in the stream."""
        return int(self.arrival_s.size)


def draw_stream(workload: Workload, requests: int, rng: np.random.Generator) -> Stream:
    """``requests`` Poisson arrivals of ``workload`` (its total rate, its class shares and lengths)."""
    from fluidopt.sim.arrivals import PoissonArrivals

    require(requests >= 1, "requests", requests, "must be >= 1")
    chunks = list(PoissonArrivals().stream(workload, rng, requests=requests, horizon_s=None))
    arrival = np.concatenate([c.times for c in chunks])
    return Stream(
        arrival - arrival[0],
        np.concatenate([c.classes for c in chunks]),
        np.concatenate([c.prefill for c in chunks]),
        np.concatenate([c.decode for c in chunks]),
    )


@njit(cache=True)
def _least_loaded(arrival, latency, weight, engines):
    """Each request to the engine with the least weight in it (weights leave at arrival + latency)."""
    n = arrival.size
    load = np.zeros(engines)
    heap_t = np.empty(n)
    heap_e = np.empty(n, dtype=np.int64)
    heap_w = np.empty(n)
    size = 0
    chosen = np.empty(n, dtype=np.int64)
    for i in range(n):
        t = arrival[i]
        while size > 0 and heap_t[0] <= t:  # pop every departure up to now
            load[heap_e[0]] -= heap_w[0]
            size -= 1
            heap_t[0], heap_e[0], heap_w[0] = heap_t[size], heap_e[size], heap_w[size]
            k = 0
            while True:
                left = 2 * k + 1
                if left >= size:
                    break
                child = left
                if left + 1 < size and heap_t[left + 1] < heap_t[left]:
                    child = left + 1
                if heap_t[child] >= heap_t[k]:
                    break
                heap_t[k], heap_t[child] = heap_t[child], heap_t[k]
                heap_e[k], heap_e[child] = heap_e[child], heap_e[k]
                heap_w[k], heap_w[child] = heap_w[child], heap_w[k]
                k = child
        best = 0
        for e in range(1, engines):
            if load[e] < load[best]:
                best = e
        chosen[i] = best
        load[best] += weight[i]
        k = size  # push this request's departure
        heap_t[k], heap_e[k], heap_w[k] = t + latency[i], best, weight[i]
        size += 1
        while k > 0:
            parent = (k - 1) // 2
            if heap_t[parent] <= heap_t[k]:
                break
            heap_t[k], heap_t[parent] = heap_t[parent], heap_t[k]
            heap_e[k], heap_e[parent] = heap_e[parent], heap_e[k]
            heap_w[k], heap_w[parent] = heap_w[parent], heap_w[k]
            k = parent
    return chosen


def class_share_routing(
    stream: Stream, replicas: list[Replica], shares: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Class ``j`` to deployment ``d`` with probability ``shares[d][j]``, then round robin within ``d``."""
    names = list(dict.fromkeys(r.deployment for r in replicas))
    missing = [name for name in names if name not in shares]
    require(not missing, "shares", ",".join(missing), "must give every deployment of the fleet its class shares")
    matrix = np.array([np.asarray(shares[name], dtype=float) for name in names])  # (deployments, classes)
    totals = matrix.sum(axis=0)
    require(bool(np.all(totals > 0)), "shares", totals.tolist(), "every class needs a deployment with a share > 0")
    matrix = matrix / totals
    members = [np.array([i for i, r in enumerate(replicas) if r.deployment == name]) for name in names]
    chosen = np.empty(stream.size, dtype=np.int64)
    draws = rng.random(stream.size)
    cumulative = np.cumsum(matrix, axis=0)
    deployment = np.argmax(draws[None, :] < cumulative[:, stream.classes], axis=0)
    for d, member in enumerate(members):
        index = np.flatnonzero(deployment == d)
        chosen[index] = member[np.arange(index.size) % member.size]
    return chosen


def _simulate_group(task: tuple[list[Replica], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]) -> list[Any]:
    """Simulate replicas on their (arrivals, prompts, outputs); per replica the first-token and done times."""
    from fluidopt.sim import TraceArrivals, simulate
    from fluidopt.trace import Trace
    from fluidopt.workload import workload_from_trace

    out = []
    for replica, (arrivals, prompts, outputs) in zip(*task):
        first = np.full(arrivals.size, np.nan)
        done = np.full(arrivals.size, np.nan)
        if arrivals.size:
            trace = Trace("fleet-replica", prompts, outputs, arrivals - arrivals[0])
            span = float(arrivals[-1] - arrivals[0]) if arrivals.size > 1 else 1.0
            workload = workload_from_trace(trace, bins=1, rate_per_s=max(arrivals.size - 1, 1) / max(span, 1e-9))
            result = simulate(
                workload,
                replica.profile,
                replica.policy,
                requests=int(arrivals.size),
                arrivals=TraceArrivals(trace, bins=1),
                drain=True,
                warmup_s=0.0,
                record_requests=True,
            )
            records = result.requests or {}
            ids = records["id"].astype(int)
            first[ids] = records["first_token_s"] - records["arrival_s"]
            done[ids] = records["completion_s"] - records["arrival_s"]
        out.append((first, done))
    return out


def _simulate_replicas(
    stream: Stream, replicas: list[Replica], chosen: np.ndarray, executor: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate each replica on its requests (in groups, one per worker of ``executor``); times after arrival."""
    from fluidopt.experiments.sweep import SerialExecutor

    executor = executor or SerialExecutor()
    index = [np.flatnonzero(chosen == r) for r in range(len(replicas))]
    work = [(stream.arrival_s[i], stream.prompt[i], stream.output[i]) for i in index]
    groups = max(1, min(len(replicas), getattr(executor, "workers", None) or os.cpu_count() or 1))
    if executor.name == "serial":
        groups = 1
    order = np.array_split(np.arange(len(replicas)), groups)
    tasks = [([replicas[r] for r in part], [work[r] for r in part]) for part in order if part.size]
    results = executor.map(_simulate_group, tasks, False)
    first = np.full(stream.size, np.nan)
    done = np.full(stream.size, np.nan)
    for part, group in zip((p for p in order if p.size), results):
        for r, (f, d) in zip(part, group):
            first[index[r]] = f
            done[index[r]] = d
    return first, done


@dataclass(frozen=True)
class FleetRun:
    """One simulated fleet: per request its replica and latencies (NaN: unfinished)."""

    stream: Stream = field(repr=False)
    replicas: tuple[Replica, ...] = field(repr=False)
    chosen: np.ndarray = field(repr=False)
    ttft_s: np.ndarray = field(repr=False)
    e2e_s: np.ndarray = field(repr=False)

    @property
    def tpot_s(self) -> np.ndarray:
        """Per request ``(E2E - TTFT) / (outputs - 1)`` (NaN for one-token outputs)."""
        outputs = self.stream.output
        return np.where(outputs > 1, (self.e2e_s - self.ttft_s) / np.maximum(outputs - 1, 1), np.nan)

    @property
    def measured(self) -> np.ndarray:
        """The requests statistics count: those arriving after the warm-up."""
        span = float(self.stream.arrival_s[-1]) if self.stream.size else 0.0
        return self.stream.arrival_s >= WARMUP_FRACTION * span

    def statistics(self, keep: np.ndarray | None = None) -> dict[str, float]:
        """Mean and p50 / p90 / p99 of TTFT, TPOT and E2E over the measured requests (``keep`` narrows them)."""
        mask = self.measured if keep is None else self.measured & keep
        out: dict[str, float] = {"requests": float(mask.sum())}
        unfinished = mask & ~np.isfinite(self.e2e_s)
        out["unfinished_fraction"] = float(unfinished.sum() / max(mask.sum(), 1))
        for name, values in (("ttft", self.ttft_s), ("tpot", self.tpot_s), ("e2e", self.e2e_s)):
            data = values[mask]
            data = data[np.isfinite(data)]
            for stat, q in (("mean", None), ("p50", 50), ("p90", 90), ("p99", 99)):
                if data.size == 0:
                    out[f"{stat}_{name}_s"] = math.nan
                else:
                    out[f"{stat}_{name}_s"] = float(data.mean() if q is None else np.percentile(data, q))
        return out

    def per_replica(self) -> list[dict[str, Any]]:
        """:meth:`statistics` of each replica's requests, with its deployment."""
        return [
            {"replica": r, "deployment": replica.deployment, **self.statistics(self.chosen == r)}
            for r, replica in enumerate(self.replicas)
        ]


def simulate_fleet(
    workload: Workload,
    replicas: list[Replica],
    router: str = "round-robin",
    *,
    requests: int,
    rng: int | np.random.Generator = 0,
    shares: dict[str, np.ndarray] | None = None,
    stream: Stream | None = None,
    executor: Any = None,
) -> FleetRun:
    """Simulate ``replicas`` behind ``router`` on ``requests`` arrivals of ``workload`` (module docstring).

    ``executor`` (:mod:`fluidopt.experiments.sweep`: local processes, Dask) simulates the replicas
    in parallel groups; by default they run in this process.
    """
    require(len(replicas) >= 1, "replicas", 0, "a fleet needs at least one replica")
    if router not in ROUTERS:
        raise InputError("router", router, f"must be one of {', '.join(ROUTERS)}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    stream = stream or draw_stream(workload, requests, generator)
    engines = len(replicas)
    if router == "class-shares":
        require(shares is not None, "shares", None, "are needed by the class-shares router")
        chosen = class_share_routing(stream, replicas, shares or {}, generator)
    else:
        chosen = np.arange(stream.size, dtype=np.int64) % engines
    first, done = _simulate_replicas(stream, replicas, chosen, executor)
    if router in ("least-tokens", "vllm-dp") and engines > 1:
        latency = np.nan_to_num(done, nan=float(np.nanmax(done, initial=0.0)) * 2 + 1.0)
        weight = (stream.prompt + stream.output).astype(float) if router == "least-tokens" else np.ones(stream.size)
        chosen = _least_loaded(stream.arrival_s.astype(float), latency, weight, engines)
        first, done = _simulate_replicas(stream, replicas, chosen, executor)
    return FleetRun(stream, tuple(replicas), chosen, first, done)


@dataclass(frozen=True)
class FleetEvaluation:
    """Replicated fleet runs (independent seeds) and whether they meet p99 TTFT / TPOT targets."""

    runs: tuple[FleetRun, ...] = field(repr=False)
    p99_ttft_s: float | None
    p99_tpot_s: float | None

    def interval(self, key: str) -> tuple[float, float]:
        """Student-t 95 % interval of the replicate mean of a statistic (its value with one replicate)."""
        values = np.array([run.statistics()[key] for run in self.runs])
        if values.size < 2 or not np.all(np.isfinite(values)):
            mean = float(np.mean(values))
            return mean, mean
        return confidence_interval(values)

    def mean(self, key: str) -> float:
        """Replicate mean of a statistic."""
        return float(np.mean([run.statistics()[key] for run in self.runs]))

    @property
    def stable(self) -> bool:
        """Every replicate finished all but :data:`UNFINISHED_FRACTION` of its measured requests."""
        return all(run.statistics()["unfinished_fraction"] <= UNFINISHED_FRACTION for run in self.runs)

    @property
    def meets(self) -> bool:
        """Stable, and the upper end of each target's 95 % interval within the target."""
        if not self.stable:
            return False
        for key, target in (("p99_ttft_s", self.p99_ttft_s), ("p99_tpot_s", self.p99_tpot_s)):
            if target is not None and not self.interval(key)[1] <= target:
                return False
        return True


def _replicate(task: tuple[Any, ...]) -> FleetRun:
    workload, replicas, router, requests, seed, shares = task
    return simulate_fleet(workload, replicas, router, requests=requests, rng=np.random.default_rng(seed), shares=shares)


def evaluate_fleet(
    workload: Workload,
    replicas: list[Replica],
    router: str,
    *,
    requests: int,
    replicates: int,
    seed: int,
    p99_ttft_s: float | None,
    p99_tpot_s: float | None,
    shares: dict[str, np.ndarray] | None = None,
    executor: Any = None,
) -> FleetEvaluation:
    """:func:`simulate_fleet` with ``replicates`` seeds spawned from ``seed`` (common random numbers across fleets).

    ``executor`` runs the replicates in parallel (local processes, Dask); by default in this process.
    """
    from fluidopt.experiments.sweep import SerialExecutor

    seeds = np.random.SeedSequence(seed).spawn(replicates)
    tasks = [(workload, replicas, router, requests, s, shares) for s in seeds]
    runs = tuple((executor or SerialExecutor()).map(_replicate, tasks, False))
    return FleetEvaluation(runs, p99_ttft_s, p99_tpot_s)
