"""Fluid dynamics: the deterministic iteration map and its continuous-time ODE.

State: for every class j a queue ``q_j`` of requests waiting for admission (no memory) and
stage masses ``x_{j,s}``, s = 0..l'_j (s = 0: admitted, waiting for its prefill; s >= 1:
waiting to run decode step s), each holding ``l_j + s`` KV tokens.  One iteration serves an
amount ``u_{j,s}`` from every stage; the masses advance one stage, stage ``l'_j`` completes,
and arrivals add ``lambda_j tau`` to the queues, ``tau`` being the profile's iteration time for
the served content (docs/theory.md section 8).  Policies decide ``u``:

- ``wait``: class j is eligible when ``q_j >= n_j`` (``gate=False`` drops this); eligible
  classes serve ``min(n_j, mass)`` at every stage, admitting ``min(n_j, q_j)`` straight into the
  prefill; with nothing eligible the server idles until the first queue reaches its threshold.
- ``fcfs``: evict the newest mass (lowest stages) back to the queue while memory exceeds C,
  admit from the queues (proportionally, first-come-first-served in the fluid) while memory
  allows, and serve every resident mass.
- ``nested-wait`` (``boundaries`` = last stage of each segment): output lengths are hidden, so
  segment k serves ``min(n_k, total mass)`` at each of its stages, shared among the classes in
  proportion to their mass, when the prefix rule admits it; each class completes at its own
  last stage, so the survivors of a boundary are the longer classes.

The ODE ``dy/dt = (Phi(y) - y) / duration(y)`` interpolates the map in continuous time (same
fixed points); :func:`solve_ode` integrates it with :func:`scipy.integrate.solve_ivp` and stops
or records events when memory reaches C or a queue empties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.integrate import solve_ivp

from fluidopt._values import ArrayValue
from fluidopt.errors import InputError, require, require_finite_number
from fluidopt.profile import GPUProfile
from fluidopt.status import HasStatus
from fluidopt.workload import Workload

PolicyName = Literal["wait", "wait-nowait", "nested-wait", "fcfs"]
QUEUE_EMPTY = 1e-6  # a queue below this mass counts as empty (fluid queues drain asymptotically)


@dataclass(frozen=True)
class FluidSystem:
    """Workload, profile and policy parameters of the fluid dynamics."""

    workload: Workload
    profile: GPUProfile
    policy: PolicyName
    thresholds: tuple[float, ...] = ()
    boundaries: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        require(
            self.policy in ("wait", "wait-nowait", "nested-wait", "fcfs"),
            "policy",
            self.policy,
            "must be wait, wait-nowait, nested-wait or fcfs",
        )
        if self.policy == "nested-wait":
            require(
                len(self.boundaries) == len(self.thresholds) and len(self.boundaries) > 0,
                "boundaries",
                list(self.boundaries),
                "needs one boundary per segment threshold",
            )
            require(
                self.boundaries[-1] >= int(self.workload.decode.max()),
                "boundaries",
                list(self.boundaries),
                "the last segment must reach the longest output length",
            )
        elif self.policy != "fcfs":
            require(
                len(self.thresholds) == self.workload.num_classes,
                "thresholds",
                list(self.thresholds),
                f"needs one threshold per class ({self.workload.num_classes})",
            )
            for index, value in enumerate(self.thresholds):
                require(
                    require_finite_number(value, f"thresholds[{index}]") > 0,
                    f"thresholds[{index}]",
                    value,
                    "must be > 0",
                )

    @property
    def stages(self) -> int:
        """Columns of the stage array: ``max_j l'_j + 1``."""
        return int(self.workload.decode.max()) + 1

    def kv_per_stage(self) -> np.ndarray:
        """``l_j + s`` for every (class, stage); 0 beyond a class's last stage."""
        s = np.arange(self.stages)[None, :]
        kv = self.workload.prefill[:, None] + s
        return np.where(s <= self.workload.decode[:, None], kv, 0.0)

    def valid(self) -> np.ndarray:
        """Mask of the stages each class has."""
        return np.arange(self.stages)[None, :] <= self.workload.decode[:, None]

    def empty_state(self) -> tuple[np.ndarray, np.ndarray]:
        """No queue, no resident mass."""
        return np.zeros(self.workload.num_classes), np.zeros((self.workload.num_classes, self.stages))

    def memory(self, stages: np.ndarray) -> float:
        """Resident KV tokens of a stage array."""
        return float(np.sum(stages * self.kv_per_stage()))


def _served_wait(system: FluidSystem, queue: np.ndarray, stages: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    n = np.asarray(system.thresholds, dtype=float)
    if system.policy == "wait":
        eligible = queue >= n * (1 - 1e-12)
    else:
        eligible = (queue > 1e-12) | (stages.sum(axis=1) > 1e-12)
    if not eligible.any():
        return None
    served = np.minimum(n[:, None], stages) * eligible[:, None] * system.valid()
    admitted = np.minimum(n, queue) * eligible
    served[:, 0] = admitted  # WAIT admits straight into the prefill
    return served, admitted


def _segment_of_stage(system: FluidSystem) -> np.ndarray:
    segment = np.zeros(system.stages, dtype=int)
    previous = -1
    for k, end in enumerate(system.boundaries):
        segment[previous + 1 : end + 1] = k
        previous = end
    return segment


def _served_nested(system: FluidSystem, queue: np.ndarray, stages: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Nested WAIT in the fluid: the prefix rule on aggregated entry masses, caps per stage.

    Output lengths are hidden, so a stage's cap ``n_k`` applies to the mass summed over classes
    and is shared among them in proportion to their mass.
    """
    n = np.asarray(system.thresholds, dtype=float)
    segment = _segment_of_stage(system)
    entries = [float(queue.sum())]
    for k in range(1, len(system.boundaries)):
        entries.append(float(stages[:, system.boundaries[k - 1] + 1].sum()))
    top = 0
    while top < len(entries) and entries[top] >= n[top] * (1 - 1e-12):
        top += 1
    if top == 0:
        return None
    totals = stages.sum(axis=0)
    caps = np.where(segment < top, n[segment], 0.0)
    fraction = np.divide(np.minimum(caps, totals), totals, out=np.zeros_like(totals), where=totals > 0)
    served = stages * fraction[None, :] * system.valid()
    waiting = float(queue.sum())
    admitted = queue * (min(n[0], waiting) / waiting if waiting > 0 else 0.0)
    served[:, 0] = admitted
    return served, admitted


def _evict_newest(system: FluidSystem, queue: np.ndarray, stages: np.ndarray) -> None:
    """Move mass from the lowest stages (the latest admitted) back to the queue until memory <= C."""
    kv = system.kv_per_stage()
    capacity = float(system.profile.kv_capacity_tokens)
    excess = system.memory(stages) - capacity
    for s in range(system.stages):
        if excess <= 1e-12:
            return
        held = float(np.sum(stages[:, s] * kv[:, s]))
        if held <= 0:
            continue
        fraction = min(1.0, excess / held)
        moved = stages[:, s] * fraction
        stages[:, s] -= moved
        queue += moved
        excess -= held * fraction


def step(
    system: FluidSystem, queue: np.ndarray, stages: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """One iteration of the fluid map.

    Returns
    -------
    queue, stages : numpy.ndarray
        The next state.
    duration : float
        The iteration time (or the idle time until a class becomes eligible).
    completions : float
        Requests completed in this step.
    batch_memory : float
        Resident KV tokens while the iteration ran (admitted prefills included).

    """
    queue = queue.astype(float).copy()
    stages = stages.astype(float).copy()
    rates = system.workload.rates
    if system.policy == "fcfs":
        _evict_newest(system, queue, stages)
        room = float(system.profile.kv_capacity_tokens) - system.memory(stages)
        demand = float(queue @ system.workload.prefill)
        share = 0.0 if demand <= 0 else min(1.0, max(room, 0.0) / demand)
        admitted = queue * share
        stages[:, 0] += admitted
        queue -= admitted
        served = stages * system.valid()
    elif system.policy == "nested-wait":
        chosen = _served_nested(system, queue, stages)
        if chosen is None:
            positive = rates > 0
            if not positive.any() or queue.sum() >= system.thresholds[0]:
                return queue, stages, np.inf, 0.0, system.memory(stages)
            idle = float((system.thresholds[0] - queue.sum()) / rates.sum())
            return queue + rates * idle, stages, idle, 0.0, system.memory(stages)
        served, admitted = chosen
        queue -= admitted
        stages[:, 0] += admitted
    else:
        chosen = _served_wait(system, queue, stages)
        if chosen is None:
            n = np.asarray(system.thresholds, dtype=float)
            positive = rates > 0
            if not positive.any():
                return queue, stages, np.inf, 0.0, system.memory(stages)
            idle = float(np.min((n[positive] - queue[positive]) / rates[positive]))
            return queue + rates * idle, stages, idle, 0.0, system.memory(stages)
        served, admitted = chosen
        queue -= admitted
        stages[:, 0] += admitted
    batch_memory = system.memory(stages)
    kv = float(np.sum(served * system.kv_per_stage()))
    prefill = float(served[:, 0] @ system.workload.prefill)
    sequences = float(served.sum())
    tau = float(system.profile.iteration_time(kv, prefill, sequences))
    last = system.workload.decode.astype(int)
    completions = served[np.arange(last.size), last]
    advanced = served.copy()
    advanced[np.arange(last.size), last] = 0.0
    stages -= served
    stages[:, 1:] += advanced[:, :-1]
    queue += rates * tau
    return queue, stages, tau, float(completions.sum()), batch_memory


@dataclass(frozen=True, eq=False)
class Trajectory(HasStatus, ArrayValue):
    """A fluid trajectory sampled at iteration (map) or solver (ODE) times.

    Attributes
    ----------
    times_s : numpy.ndarray
        Sample times.
    queue : numpy.ndarray
        Shape (samples, classes): waiting mass per class.
    stages : numpy.ndarray
        Shape (samples, classes, stages): resident mass per stage.
    memory_tokens : numpy.ndarray
        Map: resident KV tokens while each iteration ran (the first sample: the start state).
        ODE: resident KV tokens of the state.
    completed : numpy.ndarray
        Cumulative completed requests.
    events : dict
        ODE only: event name -> times (``memory_full``, ``queue_empty``).

    """

    times_s: np.ndarray
    queue: np.ndarray
    stages: np.ndarray
    memory_tokens: np.ndarray
    completed: np.ndarray
    events: dict[str, np.ndarray]

    def throughput_per_s(self, since_s: float = 0.0) -> float:
        """Completions per second after ``since_s``."""
        mask = self.times_s >= since_s
        t, c = self.times_s[mask], self.completed[mask]
        return float((c[-1] - c[0]) / (t[-1] - t[0])) if t.size > 1 and t[-1] > t[0] else float("nan")

    @property
    def status(self) -> str:  # type: ignore[override]
        """Status from :data:`fluidopt.status.STATUSES`."""
        return "ok"

    @property
    def message(self) -> str:  # type: ignore[override]
        """Why the status is what it is."""
        return f"{self.times_s.size} samples to {float(self.times_s[-1]) if self.times_s.size else 0.0:.6g} s"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (stage masses summed per class)."""
        return {
            "status": self.status,
            "success": self.success,
            "message": self.message,
            "times_s": self.times_s.tolist(),
            "queue": self.queue.sum(axis=1).tolist(),
            "memory_tokens": self.memory_tokens.tolist(),
            "completed": self.completed.tolist(),
            "events": {k: v.tolist() for k, v in self.events.items()},
        }


def iterate_map(
    system: FluidSystem,
    *,
    horizon_s: float,
    queue: np.ndarray | None = None,
    stages: np.ndarray | None = None,
    max_steps: int = 1_000_000,
) -> Trajectory:
    """Iterate the fluid map from a state (default empty) until ``horizon_s``."""
    horizon_s = require_finite_number(horizon_s, "horizon_s")
    require(horizon_s > 0, "horizon_s", horizon_s, "must be > 0")
    q0, x0 = system.empty_state()
    queue = q0 if queue is None else np.asarray(queue, dtype=float)
    stages = x0 if stages is None else np.asarray(stages, dtype=float)
    require(stages.shape == x0.shape, "stages", stages.shape, f"must have shape {x0.shape}")
    times, queues, masses, memory, completed = [0.0], [queue], [stages], [system.memory(stages)], [0.0]
    t, done = 0.0, 0.0
    for _ in range(max_steps):
        if t >= horizon_s:
            break
        queue, stages, duration, finished, batch_memory = step(system, queue, stages)
        if not np.isfinite(duration):
            break
        t += duration
        done += finished
        times.append(t)
        queues.append(queue)
        masses.append(stages)
        memory.append(batch_memory)
        completed.append(done)
    return Trajectory(np.array(times), np.array(queues), np.array(masses), np.array(memory), np.array(completed), {})


def solve_ode(
    system: FluidSystem,
    *,
    horizon_s: float,
    queue: np.ndarray | None = None,
    stages: np.ndarray | None = None,
    samples: int = 400,
    stop_at_memory_full: bool = False,
) -> Trajectory:
    """Integrate ``dy/dt = (Phi(y) - y) / duration(y)`` with ``solve_ivp`` (RK45).

    WAIT's accumulation gate acts once per iteration; in continuous time the ODE serves every
    class at its cap (the ``wait-nowait`` drift), which has the same fixed point.

    Events ``memory_full`` (resident memory reaches C) and ``queue_empty`` (a class's queue
    reaches 0) are recorded; with ``stop_at_memory_full`` the integration ends at the first.
    """
    horizon_s = require_finite_number(horizon_s, "horizon_s")
    require(horizon_s > 0, "horizon_s", horizon_s, "must be > 0")
    q0, x0 = system.empty_state()
    queue = q0 if queue is None else np.asarray(queue, dtype=float)
    stages = x0 if stages is None else np.asarray(stages, dtype=float)
    m, width = x0.shape
    capacity = float(system.profile.kv_capacity_tokens)
    # The accumulation gate acts per iteration; in continuous time every class is served at its cap.
    ode_system = (
        FluidSystem(system.workload, system.profile, "wait-nowait", system.thresholds)
        if system.policy == "wait"
        else system
    )

    def unpack(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.maximum(y[:m], 0.0), np.maximum(y[m : m + m * width].reshape(m, width), 0.0)

    def drift(_t: float, y: np.ndarray) -> np.ndarray:
        q, x = unpack(y)
        q1, x1, duration, finished, _ = step(ode_system, q, x)
        if not np.isfinite(duration) or duration <= 0:
            return np.zeros_like(y)
        return np.concatenate([(q1 - q) / duration, ((x1 - x) / duration).ravel(), [finished / duration]])

    def memory_full(_t: float, y: np.ndarray) -> float:
        return system.memory(unpack(y)[1]) - capacity

    memory_full.terminal = stop_at_memory_full  # type: ignore[attr-defined]
    memory_full.direction = 1  # type: ignore[attr-defined]

    def queue_empty(_t: float, y: np.ndarray) -> float:
        return float(np.min(y[:m])) - QUEUE_EMPTY

    queue_empty.direction = -1  # type: ignore[attr-defined]
    y0 = np.concatenate([queue, stages.ravel(), [0.0]])
    grid = np.linspace(0.0, horizon_s, samples)
    solution = solve_ivp(
        drift,
        (0.0, horizon_s),
        y0,
        method="RK45",
        t_eval=grid,
        events=[memory_full, queue_empty],
        rtol=1e-5,
        atol=1e-8,
        max_step=horizon_s / 50,
    )
    if solution.status == -1:
        raise InputError("ode", solution.message, "integration failed")
    ys = solution.y.T
    q = np.maximum(ys[:, :m], 0.0)
    x = np.maximum(ys[:, m : m + m * width].reshape(-1, m, width), 0.0)
    memory = np.array([system.memory(row) for row in x])
    return Trajectory(
        solution.t, q, x, memory, ys[:, -1], {"memory_full": solution.t_events[0], "queue_empty": solution.t_events[1]}
    )


def fixed_point_iteration(system: FluidSystem, *, horizon_s: float = 1e4) -> tuple[float, np.ndarray, float]:
    """Long-run iteration time, stage masses and memory of the map started empty.

    Returns ``(iteration_time_s, stages, memory_tokens)`` averaged over the last 10% of steps
    (``stages`` between iterations; ``memory_tokens`` while iterations run).
    """
    trajectory = iterate_map(system, horizon_s=horizon_s)
    tail = max(2, trajectory.times_s.size // 10)
    durations = np.diff(trajectory.times_s[-tail:])
    stages = trajectory.stages[-tail:].mean(axis=0)
    return float(durations.mean()), stages, float(trajectory.memory_tokens[-tail:].mean())
