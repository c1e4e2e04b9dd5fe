"""Typed experiment runs: the settings every replicated evaluation shares, and one replicate's summary.

:class:`RunSettings` is what tune, capacity, compare and the figures pass down to
:func:`~fluidopt.experiments.evaluate.evaluate` (targets, replicates, requests, seed, executor,
cache, progress, conventions); :class:`RunSummary` is one simulated replicate as they read it.

One rule for missing values, everywhere: a replicate statistic that is missing (``None`` or NaN:
no measured request completed, so nobody was served in time) counts as ``+inf`` for a time
(``*_s``: latency, TTFT, TPOT) and as 0 for a count or a rate (``*_per_s``, tokens, requests).
A mean over replicates with a missing latency is therefore ``inf``, never the mean of the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fluidopt.errors import require, require_whole_number

if TYPE_CHECKING:
    from fluidopt.experiments.sweep import Executor


@dataclass(frozen=True)
class Targets:
    """Service-level targets; None means no target."""

    p99_latency_s: float | None = None
    p99_ttft_s: float | None = None
    p99_tpot_s: float | None = None

    def describe(self) -> str:
        """Human-readable list of the targets."""
        parts = []
        if self.p99_latency_s is not None:
            parts.append(f"p99 latency <= {self.p99_latency_s:g} s")
        if self.p99_ttft_s is not None:
            parts.append(f"p99 TTFT <= {self.p99_ttft_s:g} s")
        if self.p99_tpot_s is not None:
            parts.append(f"p99 TPOT <= {self.p99_tpot_s:g} s")
        return " and ".join(parts) or "a stable queue"


@dataclass(frozen=True)
class RunSettings:
    """How every configuration of an experiment is simulated (frozen; ``replace`` to vary).

    Parameters
    ----------
    targets : Targets
        Service-level targets a configuration must meet.
    replicates, requests, seed : int
        Replicates per configuration (common random numbers: the same seeds for every
        configuration), arrivals per replicate, and the root seed.
    executor : Executor, optional
        Where the simulations run (serial when None).
    cache_dir : str, optional
        Sweep cache folder.
    progress : bool
        Show a progress bar.
    conventions : {"fluidopt", "vidur"}
        Counting conventions passed to :func:`~fluidopt.sim.simulate`.

    """

    targets: Targets = field(default_factory=Targets)
    replicates: int = 2
    requests: int = 10_000
    seed: int = 0
    executor: Executor | None = None
    cache_dir: str | None = None
    progress: bool = False
    conventions: str = "fluidopt"

    def __post_init__(self) -> None:
        from fluidopt.conventions import check_conventions

        object.__setattr__(self, "replicates", require_whole_number(self.replicates, "replicates", 1))
        object.__setattr__(self, "requests", require_whole_number(self.requests, "requests", 1))
        object.__setattr__(self, "seed", require_whole_number(self.seed, "seed", 0))
        check_conventions(self.conventions)
        require(isinstance(self.targets, Targets), "targets", self.targets, "must be a Targets")

    def with_seed(self, seed: int) -> RunSettings:
        """The same settings with another root seed (fresh replicates)."""
        return replace(self, seed=seed)

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the settings (the executor and cache are where, not what)."""
        return {
            "replicates": self.replicates,
            "requests": self.requests,
            "seed": self.seed,
            "conventions": self.conventions,
            "targets": self.targets.describe(),
        }


def _is_time(key: str) -> bool:
    """A statistic in seconds (``*_s``), not a rate (``*_per_s``)."""
    return key.endswith("_s") and not key.endswith("_per_s")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class RunSummary:
    """One simulated replicate: its JSON summary (read-only) with typed access.

    Attributes
    ----------
    values : Mapping
        The summary :func:`~fluidopt.experiments.tasks.run_simulation_task` returns.

    """

    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @classmethod
    def of(cls, run: RunSummary | Mapping[str, Any]) -> RunSummary:
        """A summary from a summary or a mapping."""
        return run if isinstance(run, RunSummary) else cls(run)

    def metric(self, key: str) -> float:
        """A statistic under the module's rule: missing is ``inf`` for a time (``*_s``), 0 for a count or rate."""
        value: Any = self.values.get(key)
        if value is None or _is_missing(value):
            return math.inf if _is_time(key) else 0.0
        return float(value)

    def __getitem__(self, key: str) -> Any:
        """The raw value of the summary (``None`` when missing)."""
        return self.values[key]

    @property
    def status(self) -> str:
        """The replicate's status (``ok``, ``overflow``, ``livelock``, ``starved``, ``truncated``)."""
        return str(self.values.get("status", "ok"))

    @property
    def conventions(self) -> str:
        """The conventions it ran under."""
        return str(self.values.get("settings", {}).get("conventions", "fluidopt"))

    @property
    def arrivals_counted(self) -> int:
        """Arrivals the completions are compared with.

        Under Vidur's conventions statistics cover the middle 50 % of requests, but the window is
        the whole arrival span: every arrival counts.  Otherwise the measured arrivals.
        """
        key = "arrived_requests" if self.conventions == "vidur" else "measured_arrivals"
        return int(self.values[key])

    @property
    def completed_in_window(self) -> int:
        """Completions inside the measurement window."""
        return int(self.values["completed_in_window"])

    def drift(self, key: str) -> float | None:
        """A drift-test ratio (``drift_latency_ratio``, ``drift_queue_ratio``), None when not computed."""
        value: Any = self.values.get(key)
        return None if value is None or _is_missing(value) else float(value)


# A stability verdict judges a run's steady state: the warm-up covers WARMUP_PASSES passes of the
# longest request through the system, and MEASURED_PASSES more are measured after it.
WARMUP_PASSES = 2.0
MEASURED_PASSES = 4.0


def pipeline_pass_time_s(workload: Any, iteration_s: float, chunk_tokens: int | None = None) -> float:
    """Time the longest request spends in a pipeline of ``iteration_s`` iterations (fluid estimate).

    One iteration per prefill chunk of the longest prompt (one when unchunked) and per decode stage
    of the longest output: ``iteration_s x (ceil(l_max / cs) + l'_max)``.
    """
    prompt = float(workload.prefill.max())
    chunks = math.ceil(prompt / chunk_tokens) if chunk_tokens else 1
    return float(iteration_s) * (chunks + float(workload.decode.max()))


def steady_state_run(run: RunSettings, rate_per_s: float, pass_time_s: float) -> tuple[RunSettings, dict[str, Any]]:
    """Settings and simulate options whose runs reach the steady state before they are judged.

    A system started empty fills for about one pass of its longest request; until then
    completions lag arrivals by the requests on their way through, which the stability test
    (:attr:`~fluidopt.experiments.evaluate.Evaluation.stable`) and the drift test read as a
    growing queue.  The returned settings simulate at least ``rate x (WARMUP_PASSES +
    MEASURED_PASSES) x pass_time`` requests (never fewer than ``run.requests``) and the options
    set a warm-up of ``WARMUP_PASSES`` passes (at least simulate's default of 10 % of the span).
    """
    if not (rate_per_s > 0 and math.isfinite(pass_time_s) and pass_time_s > 0):
        return run, {}
    warmup = WARMUP_PASSES * pass_time_s
    needed = math.ceil(rate_per_s * (warmup + MEASURED_PASSES * pass_time_s))
    requests = max(run.requests, needed)
    return replace(run, requests=requests), {"warmup_s": max(warmup, 0.1 * requests / rate_per_s)}
