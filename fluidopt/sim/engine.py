"""Driver of the stochastic simulator: state arrays, arrival chunks, results.

The compiled kernel (:mod:`fluidopt.sim.kernel`) runs the event loop; this module allocates its
state, feeds it arrivals chunk by chunk (so memory grows with requests in the system, not with
requests simulated), grows the state when more requests are in the system, and turns the
counters into a :class:`~fluidopt.sim.results.SimulationResult`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numba.core.registry import CPUDispatcher as Dispatcher

import fluidopt.sim.layout as layout
from fluidopt._gc import collection_paused
from fluidopt.conventions import CONVENTIONS, VIDUR_MAX_GAP_FACTOR, check_conventions  # noqa: F401
from fluidopt.errors import InputError, require, require_finite_number, require_whole_number
from fluidopt.fluid.constraints import check_fits
from fluidopt.profile import GPUProfile
from fluidopt.sim import kernel as kernel_module
from fluidopt.sim import policies as policies_package
from fluidopt.sim.arrivals import ArrivalProcess, PoissonArrivals, TraceArrivals
from fluidopt.sim.bundles import ArrivalChunk, KernelConfig, KernelLogs, KernelState, PolicyArrays, TimingArrays
from fluidopt.sim.kernel import compiled_kernel_fingerprint, run_kernel
from fluidopt.sim.policies import Policy, selector_index
from fluidopt.sim.policies import _compiled as compiled_helpers
from fluidopt.sim.policies._base import EVICTIONS, KernelPack
from fluidopt.sim.results import QUANTILES, SimulationResult, histogram_quantile
from fluidopt.sim.sources import sources_fingerprint
from fluidopt.timing.registry import TIMING_MODULES, kind_index
from fluidopt.workload import Workload

INITIAL_SLOTS = 1024
SERIES_ROWS = 65_536
NO_ID_LIMIT = 2**62


@dataclass(frozen=True)
class InitialRequests:
    """Requests resident at time 0: ``count`` requests of class ``class_index`` at ``stage``."""

    class_index: int
    stage: int
    count: int


@cache
def ensure_fresh_kernel() -> None:
    """Load the compiled kernel; recompile it if its on-disk cache predates a source change.

    The first load builds numba's typing and target registries, long-lived objects only, so
    the cyclic garbage collector is paused meanwhile (:mod:`fluidopt._gc`).
    """
    with collection_paused():
        if compiled_kernel_fingerprint() == sources_fingerprint():
            return
        # Stale: drop every on-disk cache entry of the kernel's functions (numba would otherwise load
        # the old machine code, which inlines the old selection functions), then recompile.
        modules = (compiled_helpers, *policies_package.POLICY_MODULES, *TIMING_MODULES, kernel_module)
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, Dispatcher):
                    value._cache.flush()  # type: ignore[attr-defined]
                    if value.signatures:
                        value.recompile()


class _State:
    """The kernel's arrays, growable."""

    def __init__(self, slots: int, queues: int, classes: int, max_stage: int) -> None:
        self.slot_i = np.zeros((layout.N_INT_FIELDS, slots), dtype=np.int64)
        self.slot_f = np.zeros((layout.N_FLOAT_FIELDS, slots), dtype=np.float64)
        self.res = np.zeros(slots, dtype=np.int64)
        self.queues = np.zeros((queues, slots), dtype=np.int64)
        self.qhead = np.zeros(queues, dtype=np.int64)
        self.qlen = np.zeros(queues, dtype=np.int64)
        self.free = np.arange(slots - 1, -1, -1, dtype=np.int64)
        self.scal_i = np.zeros(layout.N_INT_SCALARS, dtype=np.int64)
        self.scal_f = np.zeros(layout.N_FLOAT_SCALARS, dtype=np.float64)
        self.scal_i[layout.S_NFREE] = slots
        self.cnt = np.zeros((max(classes, 1), max_stage + 2), dtype=np.int64)
        self.bsel = np.zeros(slots, dtype=np.int64)
        self.bchunk = np.zeros(slots, dtype=np.int64)
        self.pchunk = np.zeros(slots, dtype=np.int64)
        self.pcached = np.zeros(slots, dtype=np.int64)
        self.hist = np.zeros(
            (layout.N_HISTOGRAMS, layout.HIST_BINS), dtype=np.int32
        )  # counts; int32 keeps the four rows in L1

    @property
    def slots(self) -> int:
        return self.res.size

    def ensure_free(self, needed: int) -> None:
        """Grow every per-slot array so that at least ``needed`` slots are free."""
        free = int(self.scal_i[layout.S_NFREE])
        if free >= needed:
            return
        old = self.slots
        new = max(2 * old, old + needed - free)
        extra = new - old
        self.slot_i = np.concatenate([self.slot_i, np.zeros((layout.N_INT_FIELDS, extra), np.int64)], axis=1)
        self.slot_f = np.concatenate([self.slot_f, np.zeros((layout.N_FLOAT_FIELDS, extra))], axis=1)
        self.res = np.concatenate([self.res, np.zeros(extra, np.int64)])
        queues = np.zeros((self.queues.shape[0], new), dtype=np.int64)
        for q in range(self.queues.shape[0]):
            length = int(self.qlen[q])
            order = (self.qhead[q] + np.arange(length)) % old
            queues[q, :length] = self.queues[q, order]
        self.queues = queues
        self.qhead[:] = 0
        free_stack = np.concatenate([np.arange(new - 1, old - 1, -1, dtype=np.int64), self.free[:free]])
        self.free = np.concatenate([free_stack, np.zeros(new - free_stack.size, np.int64)])
        self.scal_i[layout.S_NFREE] = free + extra
        self.bsel = np.zeros(new, np.int64)
        self.bchunk = np.zeros(new, np.int64)
        self.pchunk = np.zeros(new, np.int64)
        self.pcached = np.zeros(new, np.int64)

    def bundle(self) -> KernelState:
        """The arrays as the kernel takes them (re-bundled after a growth)."""
        return KernelState(
            self.slot_i,
            self.slot_f,
            self.res,
            self.queues,
            self.qhead,
            self.qlen,
            self.free,
            self.scal_i,
            self.scal_f,
            self.cnt,
            self.bsel,
            self.bchunk,
            self.pchunk,
            self.pcached,
            self.hist,
        )


def simulate(
    workload: Workload,
    profile: GPUProfile,
    policy: Policy,
    *,
    requests: int | None = None,
    horizon_s: float | None = None,
    warmup_s: float | None = None,
    rng: int | np.random.Generator | None = 0,
    arrivals: ArrivalProcess | None = None,
    eviction: str | None = None,
    drain: bool = False,
    drain_timeout_s: float | None = None,
    record_requests: bool = False,
    record_series: bool = False,
    initial: Sequence[InitialRequests] = (),
    compiled: bool = True,
    conventions: str = "fluidopt",
) -> SimulationResult:
    """Simulate ``policy`` serving ``workload`` on ``profile``.

    Parameters
    ----------
    workload, profile : Workload, GPUProfile
        Request classes (with Poisson rates) and the GPU.
    policy : Policy
        A policy from :mod:`fluidopt.sim.policies`.
    requests, horizon_s : int or float
        Stop after this many arrivals, or at this time (exactly one of them).
    warmup_s : float, optional
        Statistics ignore requests arriving before this time (default: 10% of the expected span).
    rng : int, numpy.random.Generator or None
        Seed (or generator) of the arrival stream; the same seed gives every policy the same
        arrivals and lengths.
    arrivals : ArrivalProcess, optional
        Poisson (default), deterministic, MMPP or trace replay.
    eviction : {"restart", "recompute"}, optional
        What an evicted request loses (see :mod:`fluidopt.sim.kernel`); default ``restart`` (the
        paper's).  The engine policies (vllm-v1, sglang) always recompute, as the engines do;
        asking them to restart is an error.
    drain : bool
        Keep serving after the last arrival until every request completes.
    drain_timeout_s : float, optional
        Stop draining this long after the last arrival (default ten times the arrival span plus
        60 s): a policy that thrashes (evicts and readmits forever) still ends, with the
        requests it could not finish reported as unfinished.
    record_requests, record_series : bool
        Return per-request records / per-iteration time series as numpy arrays.
    initial : sequence of InitialRequests
        Requests resident at time 0 (for example the FCFS counterexample's start).
    compiled : bool
        Run the numba-compiled kernel (default) or its plain-Python source (for debugging).
    conventions : {"fluidopt", "vidur"}
        Counting and arrival conventions (:func:`check_conventions`).  ``vidur`` needs
        ``requests``; it sets Poisson arrivals with capped gaps (unless ``arrivals`` is given),
        recompute evictions and draining, and measures the middle 50 % of requests by arrival.

    Returns
    -------
    SimulationResult
        Zero rate gives an empty result, not an error.

    """
    started = time.perf_counter()
    ensure_fresh_kernel()
    requests, horizon_s = _check_run_length(requests, horizon_s)
    if eviction is not None and eviction not in EVICTIONS:
        raise InputError("eviction", eviction, f"must be one of {', '.join(EVICTIONS)}")
    check_fits(workload, profile)
    check_conventions(conventions)
    measure_lo, measure_hi = 0, NO_ID_LIMIT
    if conventions == "vidur":
        arrivals, eviction, (measure_lo, measure_hi) = _vidur_conventions(requests, horizon_s, arrivals, eviction)
        drain, warmup_s = True, 0.0
    arrivals = arrivals or PoissonArrivals()
    max_stage = _max_stage(workload, profile, arrivals)
    seed = rng if isinstance(rng, (int, np.integer)) else None
    generator = np.random.default_rng(rng)
    span = _expected_span(workload, requests, horizon_s)
    warmup_given = warmup_s is not None and conventions != "vidur"
    warmup_s, drain_timeout_s = _run_times(span, warmup_s, drain_timeout_s, horizon_s, warmup_given)

    selector = selector_index(policy)
    pack: KernelPack = policy.kernel_pack(workload, max_stage)
    eviction = _policy_eviction(policy, pack, eviction)
    _check_block_fit(workload, profile, pack, arrivals)
    state = _State(INITIAL_SLOTS, workload.num_classes if pack.per_class_queues else 1, workload.num_classes, max_stage)
    state.scal_i[layout.S_STAGE_EXCESS] = -(10**9)
    config = _configure(
        selector,
        pack,
        profile,
        eviction=eviction,
        conventions=conventions,
        measured_ids=(measure_lo, measure_hi),
        drain=drain,
        record=(record_requests, record_series),
        warmup_s=warmup_s,
        window_end_s=horizon_s if horizon_s is not None else math.inf,
        drain_timeout_s=drain_timeout_s,
    )
    _load_initial(state, workload, initial, config.cfg_i, config.cfg_f)
    policy_arrays = PolicyArrays.of(pack)
    timing_arrays = TimingArrays(*profile.timing.kernel_arrays())
    stream = arrivals.stream(workload, generator, requests=requests, horizon_s=horizon_s)
    logs, series_logs, last_arrival = _drive(
        state,
        config,
        policy_arrays,
        timing_arrays,
        stream,
        workload,
        run_kernel if compiled else run_kernel.py_func,
        open_ended=horizon_s is None,
        warmup_s=warmup_s,
        record=(record_requests, record_series),
    )
    if warmup_given:
        _check_warmup_measured_something(state, warmup_s, last_arrival)
    return _result(
        state,
        policy,
        eviction,
        seed,
        workload,
        profile,
        config.cfg_f,
        arrivals,
        logs,
        series_logs,
        time.perf_counter() - started,
        {
            "requests": requests,
            "horizon_s": horizon_s,
            "warmup_s": warmup_s,
            "drain": drain,
            "conventions": conventions,
            "measured_request_ids": [measure_lo, min(measure_hi, requests or measure_hi)],
            "timing": profile.timing_kind,
            "delivered_rate_per_s": (
                (requests / last_arrival) if requests and last_arrival > 0 else workload.total_rate_per_s
            ),
        },
        pack.tracks_stage_excess,
    )


def _vidur_conventions(
    requests: int | None, horizon_s: float | None, arrivals: ArrivalProcess | None, eviction: str | None
) -> tuple[ArrivalProcess, str, tuple[int, int]]:
    """Vidur's conventions: capped-gap Poisson arrivals, recompute evictions, the middle 50 % of requests measured."""
    if requests is None:
        raise InputError("horizon_s", horizon_s, "conventions 'vidur' count requests: give requests instead")
    if eviction == "restart":
        raise InputError("eviction", eviction, "conventions 'vidur' recompute evicted requests")
    arrivals = arrivals or PoissonArrivals(max_gap_factor=VIDUR_MAX_GAP_FACTOR)
    return arrivals, "recompute", (requests // 4, requests - requests // 4)


_KERNEL_CALLED = False


def _call_kernel(kernel: Any, *bundles: Any) -> int:
    """Run the kernel on its bundles; remember that this process has called it once."""
    global _KERNEL_CALLED
    rc = int(kernel(*bundles))
    _KERNEL_CALLED = True
    return rc


def _run_times(
    span: float, warmup_s: float | None, drain_timeout_s: float | None, horizon_s: float | None, given: bool
) -> tuple[float, float]:
    """The warm-up (default a tenth of the span) and the drain timeout (default 10 spans + 60 s), checked."""
    warmup = require_finite_number(0.1 * span if warmup_s is None else warmup_s, "warmup_s")
    require(warmup >= 0, "warmup_s", warmup, "must be >= 0")
    if horizon_s is not None and given:
        require(warmup < horizon_s, "warmup_s", warmup, f"must be shorter than the horizon ({horizon_s:g} s)")
    timeout = require_finite_number(10 * span + 60.0 if drain_timeout_s is None else drain_timeout_s, "drain_timeout_s")
    require(timeout >= 0, "drain_timeout_s", timeout, "must be >= 0")
    return warmup, timeout


def _check_warmup_measured_something(state: _State, warmup_s: float, last_arrival: float) -> None:
    """A warm-up the caller set that outlasts every arrival leaves nothing to measure: an error naming it.

    (The default warm-up, a tenth of the expected span, is not checked: a run whose arrivals all
    come at time 0 is measured from its start by the kernel's own rule.)
    """
    arrived = int(state.scal_i[layout.S_ARRIVED])
    if arrived > 0 and warmup_s > 0 and int(state.scal_i[layout.S_ARRIVED_MEASURED]) == 0:
        raise InputError(
            "warmup_s",
            warmup_s,
            f"is longer than the run (its last arrival came at {last_arrival:.4g} s): no request would be measured",
        )


def _check_run_length(requests: int | None, horizon_s: float | None) -> tuple[int | None, float | None]:
    """Exactly one of ``requests`` (a whole number >= 0) and ``horizon_s`` (> 0)."""
    if (requests is None) == (horizon_s is None):
        raise InputError("requests/horizon_s", (requests, horizon_s), "give exactly one of requests and horizon_s")
    if requests is not None:
        requests = require_whole_number(requests, "requests", 0)
    if horizon_s is not None:
        horizon_s = require_finite_number(horizon_s, "horizon_s")
        require(horizon_s > 0, "horizon_s", horizon_s, "must be > 0")
    return requests, horizon_s


def _expected_span(workload: Workload, requests: int | None, horizon_s: float | None) -> float:
    """The run's expected length in seconds (the horizon, or the requests over the rate)."""
    if horizon_s is not None:
        return horizon_s
    return (requests or 0) / workload.total_rate_per_s if workload.total_rate_per_s > 0 else 0.0


def _max_stage(workload: Workload, profile: GPUProfile, arrivals: ArrivalProcess) -> int:
    """The longest output of the run (a trace's too); a trace request larger than C is refused."""
    max_stage = int(workload.decode.max())
    if isinstance(arrivals, TraceArrivals):
        max_stage = max(max_stage, int(arrivals.trace.decode_tokens.max()))
        peak = int((arrivals.trace.prefill_tokens + arrivals.trace.decode_tokens).max())
        require(
            peak <= profile.kv_capacity_tokens,
            "kv_capacity_tokens",
            profile.kv_capacity_tokens,
            f"is smaller than the largest request of the trace ({peak} tokens)",
        )
    return max_stage


def _policy_eviction(policy: Policy, pack: KernelPack, eviction: str | None) -> str:
    """The eviction the run uses: the policy's own (engines recompute), else the one asked, else restart."""
    if pack.eviction is not None:
        if eviction is not None and eviction != pack.eviction:
            raise InputError(
                "eviction", eviction, f"policy {policy.name} always uses {pack.eviction}, as the engine does"
            )
        return pack.eviction
    return eviction or "restart"


def _check_block_fit(workload: Workload, profile: GPUProfile, pack: KernelPack, arrivals: ArrivalProcess) -> None:
    """Refuse up front a request that can never complete in whole blocks (or whose prompt cannot be reserved)."""
    block = pack.block_size
    if block > 1:
        peak = max(c.prefill_tokens + c.decode_tokens for c in workload.classes)
        if isinstance(arrivals, TraceArrivals):
            peak = max(peak, int((arrivals.trace.prefill_tokens + arrivals.trace.decode_tokens).max()))
        peak_blocks = -(-peak // block) * block
        require(
            peak_blocks <= profile.kv_capacity_tokens,
            "kv_capacity_tokens",
            profile.kv_capacity_tokens,
            f"cannot hold one request at its peak in {block}-token blocks ({peak} tokens = {peak_blocks} in blocks)",
        )
    if pack.reserves_prompt:
        longest = int(max(c.prefill_tokens for c in workload.classes))
        need = -(-longest // block) * block
        require(
            need <= profile.kv_capacity_tokens,
            "kv_capacity_tokens",
            profile.kv_capacity_tokens,
            f"cannot reserve one {longest}-token prompt in {block}-token blocks",
        )


def _configure(
    selector: int,
    pack: KernelPack,
    profile: GPUProfile,
    *,
    eviction: str,
    conventions: str,
    measured_ids: tuple[int, int],
    drain: bool,
    record: tuple[bool, bool],
    warmup_s: float,
    window_end_s: float,
    drain_timeout_s: float,
) -> KernelConfig:
    """The kernel's configuration arrays (``C_*`` and ``CF_*`` of :mod:`fluidopt.sim.layout`)."""
    cfg_i = np.zeros(layout.N_CFG_INT, dtype=np.int64)
    cfg_f = np.zeros(layout.N_CFG_FLOAT, dtype=np.float64)
    cfg_i[layout.C_SELECTOR] = selector
    cfg_i[layout.C_BLOCK] = pack.block_size
    cfg_i[layout.C_EVICTION] = EVICTIONS.index(eviction)
    cfg_i[layout.C_TIMING] = kind_index(profile.timing)
    cfg_i[layout.C_FIRST_TOKEN_PREFILL] = int(conventions == "vidur" or pack.engine_tokens)
    cfg_i[layout.C_ENGINE_TOKENS] = int(pack.engine_tokens)
    cfg_i[layout.C_HOLD_FINISHED] = int(pack.holds_finished)
    cfg_i[layout.C_PER_CLASS_QUEUES] = int(pack.per_class_queues)
    cfg_i[layout.C_MEASURE_LO], cfg_i[layout.C_MEASURE_HI] = measured_ids
    cfg_i[layout.C_DRAIN] = int(drain)
    cfg_i[layout.C_RECORD] = int(record[0])
    cfg_i[layout.C_SERIES] = int(record[1])
    cfg_i[layout.C_CAPACITY] = profile.kv_capacity_tokens
    cfg_f[layout.CF_WATERMARK] = pack.watermark
    cfg_f[layout.CF_WARMUP] = warmup_s
    cfg_f[layout.CF_WINDOW_END] = window_end_s
    cfg_f[layout.CF_DRAIN_TIMEOUT] = drain_timeout_s
    return KernelConfig(cfg_i, cfg_f)


def _drive(
    state: _State,
    config: KernelConfig,
    policy_arrays: PolicyArrays,
    timing_arrays: TimingArrays,
    stream: Any,
    workload: Workload,
    kernel: Any,
    *,
    open_ended: bool,
    warmup_s: float,
    record: tuple[bool, bool],
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Feed the kernel arrival chunks until it is done; returns the completion and series logs and the last arrival."""
    record_requests, record_series = record
    cfg_f = config.cfg_f
    logs: list[np.ndarray] = []
    series_logs: list[np.ndarray] = []
    series = np.zeros((SERIES_ROWS if record_series else 1, layout.N_SERIES_COLUMNS))
    class_max_new = np.array([c.max_new_tokens or 0 for c in workload.classes], dtype=np.int64)
    chunk = next(stream)
    hits = _prefix_hits(chunk)
    position = 0
    last_arrival = 0.0
    while True:
        if chunk.final and open_ended:
            last_arrival = float(chunk.times[-1]) if chunk.times.size else last_arrival
            cfg_f[layout.CF_WINDOW_END] = max(last_arrival, warmup_s)
        if chunk.classes.size and int(chunk.classes.max()) >= workload.num_classes:
            raise InputError(
                "arrivals",
                int(chunk.classes.max()),
                f"class index beyond the workload's {workload.num_classes} classes",
            )
        # Completions in one call are at most the requests in the system plus this chunk's arrivals.
        # Rows: every request that can complete in this call, and completed ones still held (vLLM async).
        log_rows = int(state.scal_i[layout.S_IN_SYSTEM] + state.scal_i[layout.S_NRES]) + chunk.times.size - position + 1
        comp_log = np.zeros((log_rows if record_requests else 1, 6))
        state.scal_i[layout.S_LOG_COUNT] = 0
        state.scal_i[layout.S_SERIES_COUNT] = 0
        # The process's first call loads the kernel's machine code from numba's cache: long-lived
        # objects only, so the collector waits (fluidopt._gc), as it does while the kernel module loads.
        with collection_paused() if not _KERNEL_CALLED else nullcontext():
            rc = _call_kernel(
                kernel,
                state.bundle(),
                config,
                policy_arrays,
                timing_arrays,
                ArrivalChunk(
                    chunk.times[position:],
                    chunk.classes[position:],
                    chunk.prefill[position:],
                    chunk.decode[position:],
                    chunk.ids[position:],
                    class_max_new,
                    hits[position:],
                    chunk.final,
                ),
                KernelLogs(comp_log, series),
            )
        position += int(state.scal_i[layout.S_CONSUMED])
        if record_requests:
            logs.append(comp_log[: state.scal_i[layout.S_LOG_COUNT]].copy())
        if record_series:
            series_logs.append(series[: state.scal_i[layout.S_SERIES_COUNT]].copy())
        if chunk.times.size and not chunk.final:
            last_arrival = float(chunk.times[-1])
        if rc == layout.RC_DONE:
            return logs, series_logs, last_arrival
        if rc == layout.RC_NEED_ARRIVALS:
            chunk = next(stream)
            hits = _prefix_hits(chunk)
            position = 0
        elif rc == layout.RC_NEED_SLOTS:
            state.ensure_free(state.slots)


def _prefix_hits(chunk: Any) -> np.ndarray:
    """The chunk's prompt tokens already cached at arrival (zeros when the arrivals say none)."""
    return np.zeros(chunk.times.size, dtype=np.int64) if chunk.cached is None else chunk.cached


def _load_initial(state: _State, workload: Workload, initial: Sequence[InitialRequests], cfg_i, cfg_f) -> None:
    total = sum(item.count for item in initial)
    if total == 0:
        return
    state.ensure_free(total)
    block = int(cfg_i[layout.C_BLOCK])
    request_id = -total
    for item in initial:
        j = require_whole_number(item.class_index, "initial.class_index", 0)
        require(j < workload.num_classes, "initial.class_index", j, "no such class")
        request_class = workload.classes[j]
        stage = require_whole_number(item.stage, "initial.stage", 0)
        require(stage <= request_class.decode_tokens, "initial.stage", stage, "beyond the class's last stage")
        for _ in range(require_whole_number(item.count, "initial.count", 0)):
            s = state.scal_i[layout.S_NFREE] - 1
            slot = state.free[s]
            state.scal_i[layout.S_NFREE] = s
            fields = state.slot_i[:, slot]
            fields[:] = 0
            fields[layout.I_CLASS] = j
            fields[layout.I_PREFILL] = request_class.prefill_tokens
            fields[layout.I_DECODE] = request_class.decode_tokens
            fields[layout.I_STAGE] = stage
            fields[layout.I_TARGET] = request_class.prefill_tokens
            fields[layout.I_RESUME] = 1
            fields[layout.I_MAX_NEW] = request_class.max_new_tokens or request_class.decode_tokens
            fields[layout.I_STATUS] = layout.STATUS_RESIDENT
            fields[layout.I_ADMIT] = state.scal_i[layout.S_ADMIT_COUNTER]
            fields[layout.I_REQUEST] = request_id
            charge = -(-(request_class.prefill_tokens + stage) // block) * block
            fields[layout.I_CHARGE] = charge
            state.slot_f[:, slot] = (0.0, 0.0 if stage > 0 else math.nan, 0.0 if stage > 0 else math.nan)
            state.scal_i[layout.S_ADMIT_COUNTER] += 1
            state.scal_i[layout.S_MEMORY] += charge
            state.res[state.scal_i[layout.S_NRES]] = slot
            state.scal_i[layout.S_NRES] += 1
            state.scal_i[layout.S_IN_SYSTEM] += 1
            state.scal_i[layout.S_ARRIVED] += 1
            if cfg_f[layout.CF_WARMUP] <= 0:
                state.scal_i[layout.S_ARRIVED_MEASURED] += 1
                state.scal_i[layout.S_ARRIVED_TOKENS] += request_class.decode_tokens
            request_id += 1


def _result(
    state,
    policy,
    eviction,
    seed,
    workload,
    profile,
    cfg_f,
    arrivals,
    logs,
    series_logs,
    wall,
    settings,
    tracks_stage_excess,
):
    si, sf = state.scal_i, state.scal_f
    start, end = float(cfg_f[layout.CF_WARMUP]), float(cfg_f[layout.CF_WINDOW_END])
    now = float(sf[layout.T_NOW])
    if not math.isfinite(end):
        end = now
    window = max(end - start, 0.0)
    measured = int(si[layout.S_COMPLETED_MEASURED])

    def per_window(value: float) -> float:
        return value / window if window > 0 else math.nan

    def mean(total: float, count: float) -> float:
        return total / count if count > 0 else math.nan

    def quantiles(row: int) -> dict[str, float]:
        return {f"p{round(100 * q)}": histogram_quantile(state.hist[row], q) for q in QUANTILES}

    requests = None
    if logs:
        table = np.concatenate(logs) if logs else np.zeros((0, 6))
        requests = {
            "id": table[:, 0].astype(np.int64),
            "class": table[:, 1].astype(np.int64),
            "arrival_s": table[:, 2],
            "first_token_s": table[:, 3],
            "completion_s": table[:, 4],
            "evictions": table[:, 5].astype(np.int64),
        }
    series = None
    if series_logs:
        table = np.concatenate(series_logs)
        series = {name: table[:, k] for k, name in enumerate(layout.SERIES_COLUMNS)}
    settings = {
        **settings,
        **policy.to_dict(),
        "eviction": eviction,
        "arrivals": arrivals.describe(),
        "workload": workload.to_dict(),
        "profile": profile.name,
        "kv_capacity_tokens": profile.kv_capacity_tokens,
    }
    return SimulationResult(
        policy=policy.name,
        eviction=eviction,
        seed=int(seed) if seed is not None else None,
        settings=settings,
        arrived_requests=int(si[layout.S_ARRIVED]),
        completed_requests=int(si[layout.S_COMPLETED]),
        unfinished_requests=int(si[layout.S_IN_SYSTEM]),
        unfinished_waiting=int(si[layout.S_WAITING]),
        unfinished_resident=int(si[layout.S_NRES]),
        measured_arrivals=int(si[layout.S_ARRIVED_MEASURED]),
        measured_completions=measured,
        arrived_decode_tokens=int(si[layout.S_ARRIVED_TOKENS]),
        completed_decode_tokens=int(si[layout.S_TOKENS_WINDOW]),
        completed_in_window=int(si[layout.S_COMPLETED_WINDOW]),
        window_start_s=start,
        window_end_s=end,
        simulated_time_s=now,
        iterations=int(si[layout.S_ITERATIONS]),
        prefill_iterations=int(si[layout.S_PREFILL_ITERATIONS]),
        evictions=int(si[layout.S_EVICTIONS]),
        wasted_tokens=int(si[layout.S_WASTED_TOKENS]),
        recomputed_tokens=int(si[layout.S_RECOMPUTED_TOKENS]),
        prefix_hit_tokens=int(si[layout.S_PREFIX_HIT_TOKENS]),
        overflow_iterations=int(si[layout.S_OVERFLOW_ITERATIONS]),
        throughput_tokens_per_s=per_window(float(si[layout.S_TOKENS_WINDOW])),
        completed_per_s=per_window(float(si[layout.S_COMPLETED_WINDOW])),
        mean_latency_s=mean(sf[layout.T_LATENCY_SUM], measured),
        max_latency_s=float(sf[layout.T_LATENCY_MAX]) if measured else math.nan,
        latency_quantiles_s=quantiles(layout.H_LATENCY),
        mean_ttft_s=mean(sf[layout.T_TTFT_SUM], measured),
        ttft_quantiles_s=quantiles(layout.H_TTFT),
        mean_tbt_s=mean(sf[layout.T_TBT_SUM], sf[layout.T_TBT_COUNT]),
        tbt_quantiles_s=quantiles(layout.H_TBT),
        mean_waiting=per_window(float(sf[layout.T_WAITING_AREA])),
        max_waiting=int(si[layout.S_MAX_WAITING]),
        mean_resident=per_window(float(sf[layout.T_RESIDENT_AREA])),
        mean_memory_tokens=per_window(float(sf[layout.T_MEMORY_AREA])),
        peak_memory_tokens=int(si[layout.S_PEAK_MEMORY]),
        kv_capacity_tokens=profile.kv_capacity_tokens,
        busy_fraction=per_window(float(sf[layout.T_BUSY])),
        max_stage_excess=int(si[layout.S_STAGE_EXCESS]) if tracks_stage_excess else None,
        mean_tpot_s=mean(sf[layout.T_TPOT_SUM], sf[layout.T_TPOT_COUNT]),
        tpot_quantiles_s=quantiles(layout.H_TPOT),
        peak_running_requests=int(si[layout.S_PEAK_RUNNING]),
        preemption_steps=int(si[layout.S_PREEMPT_STEPS]),
        state_slots=state.slots,
        wall_time_s=wall,
        requests=requests,
        series=series,
    )
