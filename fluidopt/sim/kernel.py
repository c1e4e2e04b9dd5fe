"""The simulator's hot loop, compiled with numba.

Everything here works on the flat arrays described in :mod:`fluidopt.sim.layout`, so the same
functions run compiled (``run_kernel``) or as plain Python (``run_kernel.py_func``); a test
checks that both give identical results.

Semantics (docs/theory.md; arXiv:2504.11320):

- One batch at a time.  A batch's iteration time comes from the step function of the profile's
  timing kind (:mod:`fluidopt.timing`): the kernel hands it the batch's aggregates (K the KV
  tokens the batch touches, a prefill chunk counting the prompt tokens already cached plus the
  chunk and a decode at stage s counting ``l + s``; P the prefill tokens; the decodes and the
  cached tokens they read; B the sequences) and each prefill's chunk and cached tokens.
- A resident request at stage s is charged ``l + s`` KV tokens (rounded up to whole blocks): a
  request waiting for its prefill holds nothing, a resident one holds its prompt plus one token
  per decode step, including the token of the step it is about to run.  Completion frees it.
- Memory is checked when a batch is formed.  Policies that evict (FCFS, vLLM, Sarathi, Nested
  WAIT with repair) do so then; a batch formed with memory above C is counted as an overflow.
- Engine policies (vLLM V1, SGLang; ``C_ENGINE_TOKENS``) allocate KV themselves when they form a
  batch: a request holds the tokens computed after the step (prompt chunks so far, or prompt plus
  generated tokens), the prefill that ends emits a token (also after a recompute).
- The batch comes from the policy's selection function (``fluidopt.sim.policies``): the kernel
  unrolls the registry's tuple of compiled functions, so each is called directly; the step
  functions of the timing kinds (``fluidopt.timing.registry``) are dispatched the same way.
- Eviction ``restart`` (the paper's): the victim loses cache and progress and returns to the
  front of the prefill queue.  ``recompute`` (Vidur's): it keeps its progress and re-prefills
  prompt plus generated tokens in one go when readmitted.
- TTFT ends with a request's first prefill iteration; time between tokens is the gap between a
  request's consecutive decode steps.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fluidopt.sim.layout import (
    C_BLOCK,
    C_CAPACITY,
    C_DRAIN,
    C_ENGINE_TOKENS,
    C_FIRST_TOKEN_PREFILL,
    C_HOLD_FINISHED,
    C_MEASURE_HI,
    C_MEASURE_LO,
    C_RECORD,
    C_SELECTOR,
    C_SERIES,
    C_TIMING,
    CF_DRAIN_TIMEOUT,
    CF_WARMUP,
    CF_WINDOW_END,
    F_ARRIVAL,
    F_FIRST_TOKEN,
    F_LAST_TOKEN,
    H_LATENCY,
    H_TBT,
    H_TPOT,
    H_TTFT,
    HIST_BINS,
    HIST_BINS_PER_DECADE,
    HIST_MIN_LOG10,
    I_CACHE_BLOCKS,
    I_CACHE_MARK,
    I_CHARGE,
    I_CLASS,
    I_DECODE,
    I_EVICTIONS,
    I_MAX_NEW,
    I_PREFILL,
    I_PREFILL_DONE,
    I_REQUEST,
    I_RESUME,
    I_STAGE,
    I_STATUS,
    I_TARGET,
    NEVER_EVICTED,
    RC_DONE,
    RC_NEED_ARRIVALS,
    RC_NEED_SLOTS,
    RC_SERIES_FULL,
    S_ADMIT_COUNTER,
    S_ARRIVALS_DONE,
    S_ARRIVED,
    S_ARRIVED_MEASURED,
    S_ARRIVED_TOKENS,
    S_COMPLETED,
    S_COMPLETED_MEASURED,
    S_COMPLETED_WINDOW,
    S_CONSUMED,
    S_EVICTIONS,
    S_IN_SYSTEM,
    S_ITERATIONS,
    S_LOG_COUNT,
    S_MAX_WAITING,
    S_MEMORY,
    S_NFREE,
    S_NRES,
    S_OVERFLOW_ITERATIONS,
    S_PEAK_MEMORY,
    S_PREEMPT_STEPS,
    S_PREFILL_ITERATIONS,
    S_SERIES_COUNT,
    S_TOKENS_WINDOW,
    S_WAITING,
    STATUS_FINISHING,
    STATUS_FREE,
    STATUS_RELEASED,
    STATUS_RESIDENT,
    STATUS_WAITING,
    T_BUSY,
    T_LAST,
    T_LATENCY_MAX,
    T_LATENCY_SUM,
    T_MEMORY_AREA,
    T_NOW,
    T_RESIDENT_AREA,
    T_STEP_END,
    T_STEP_START,
    T_TBT_COUNT,
    T_TBT_SUM,
    T_TPOT_COUNT,
    T_TPOT_SUM,
    T_TTFT_SUM,
    T_WAITING_AREA,
)
from fluidopt.sim.policies import compiled_selectors
from fluidopt.sim.sources import sources_fingerprint
from fluidopt.timing import registry as timing_registry
from fluidopt.timing.registry import MAX_TIMING_KINDS, compiled_step_functions

# Compile the policy modules' functions first (numba), then bind each selection function to a
# global of its own: numba calls a global dispatcher directly (and can inline it), whereas a tuple
# of functions would be called through pointers.  Unused slots run `select_none`.
MAX_POLICY_MODULES = 16
_SELECTORS = compiled_selectors()
if len(_SELECTORS) > MAX_POLICY_MODULES:
    raise RuntimeError(f"more than {MAX_POLICY_MODULES} policy modules: add slots in fluidopt/sim/kernel.py")

from fluidopt.sim.policies._compiled import (  # noqa: E402
    blocks,
    queue_of,
    queue_push_back,
    release_blocks,
    select_none,
)

(
    SELECT_0,
    SELECT_1,
    SELECT_2,
    SELECT_3,
    SELECT_4,
    SELECT_5,
    SELECT_6,
    SELECT_7,
    SELECT_8,
    SELECT_9,
    SELECT_10,
    SELECT_11,
    SELECT_12,
    SELECT_13,
    SELECT_14,
    SELECT_15,
) = _SELECTORS + (select_none,) * (MAX_POLICY_MODULES - len(_SELECTORS))

# The timing kinds' step functions, bound the same way (fluidopt.timing.registry's order).
_STEPS = compiled_step_functions()
if len(_STEPS) > MAX_TIMING_KINDS:
    raise RuntimeError(f"more than {MAX_TIMING_KINDS} timing kinds: add slots in fluidopt/sim/kernel.py")
# Unused slots hold a trivial function (not another kind's: numba would inline its body into the loop again).
STEP_0, STEP_1, STEP_2, STEP_3, STEP_4, STEP_5, STEP_6, STEP_7 = _STEPS + (timing_registry.step_none,) * (
    MAX_TIMING_KINDS - len(_STEPS)
)

# ----------------------------------------------------------------- helpers

# numba's on-disk cache is keyed on each file alone, so a change to layout.py, to a policy module or
# to the registry would leave this file's compiled code stale (it links the helpers and selection
# functions in); engine.ensure_fresh_kernel() compares this value, frozen at compile time, with
# the current sources_fingerprint() and recompiles every kernel function on a mismatch.
KERNEL_FINGERPRINT = sources_fingerprint()


@njit(cache=True)
def compiled_kernel_fingerprint():
    """The sources fingerprint this module was compiled with."""
    return KERNEL_FINGERPRINT


@njit(cache=True)
def _hist_add(hist, row, value):
    if value <= 0.0:
        index = 0
    else:
        index = int((math.log10(value) - HIST_MIN_LOG10) * HIST_BINS_PER_DECADE)
        if index < 0:
            index = 0
        elif index >= HIST_BINS:
            index = HIST_BINS - 1
    hist[row, index] += 1


@njit(cache=True)
def _integrate(scal_i, scal_f, cfg_f, t_new):
    """Add the current memory, waiting and resident counts times the elapsed window time."""
    t_old = scal_f[T_LAST]
    if t_new <= t_old:
        return
    lo = max(t_old, cfg_f[CF_WARMUP])
    hi = min(t_new, cfg_f[CF_WINDOW_END])
    if hi > lo:
        span = hi - lo
        scal_f[T_MEMORY_AREA] += scal_i[S_MEMORY] * span
        scal_f[T_WAITING_AREA] += scal_i[S_WAITING] * span
        scal_f[T_RESIDENT_AREA] += scal_i[S_NRES] * span
    scal_f[T_LAST] = t_new


@njit(cache=True)
def _is_measured(slot_i, slot_f, cfg_i, cfg_f, slot):
    """Statistics cover requests arriving after the warm-up whose id lies in the measured window."""
    rid = slot_i[I_REQUEST, slot]
    return slot_f[F_ARRIVAL, slot] >= cfg_f[CF_WARMUP] and cfg_i[C_MEASURE_LO] <= rid < cfg_i[C_MEASURE_HI]


@njit(cache=True, inline="always")
def _step_time(kind, tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """Seconds of the batch under the profile's timing kind (slot ``cfg_i[C_TIMING]``, fluidopt.timing).

    Slot 0 (the affine kind, a few operations, inlined) and slot 1 (the measured kind) are called
    from the loop; every other kind through one call to :func:`_step_time_called`, so the loop's
    code does not grow with the registry (measured: two more kinds called from the loop cost every
    policy 4-16 % of the simulator's speed).
    """
    if kind == 0:
        return STEP_0(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    if kind == 1:
        return STEP_1(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    return _step_time_called(
        kind, tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached
    )


@njit(cache=True)
def _step_time_called(kind, tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached):
    """Slots 2-7: one literal branch per slot, as for the selection functions."""
    # fmt: off
    if kind == 2:
        return STEP_2(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    if kind == 3:
        return STEP_3(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    if kind == 4:
        return STEP_4(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    if kind == 5:
        return STEP_5(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    if kind == 6:
        return STEP_6(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    if kind == 7:
        return STEP_7(tcoef, ttable, kv, prefill, decodes, decode_kv, sequences, n_prefill, pchunk, pcached)
    # fmt: on
    return 0.0


@njit(cache=True, inline="always")
def _select(
    flush,
    slot_i,
    slot_f,
    res,
    queues,
    qhead,
    qlen,
    scal_i,
    scal_f,
    cfg_i,
    cfg_f,
    p_i,
    p_f,
    st_i,
    st_f,
    cnt,
    bsel,
    bchunk,
):
    """Form the next batch with the policy's selection function (slot ``cfg_i[C_SELECTOR]``)."""
    chosen = cfg_i[C_SELECTOR]
    # One literal branch per slot: numba needs each call target known at compile time.
    # fmt: off
    if chosen == 0:
        return SELECT_0(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 1:
        return SELECT_1(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 2:
        return SELECT_2(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 3:
        return SELECT_3(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 4:
        return SELECT_4(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 5:
        return SELECT_5(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 6:
        return SELECT_6(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 7:
        return SELECT_7(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 8:
        return SELECT_8(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 9:
        return SELECT_9(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 10:
        return SELECT_10(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 11:
        return SELECT_11(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 12:
        return SELECT_12(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 13:
        return SELECT_13(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 14:
        return SELECT_14(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    if chosen == 15:
        return SELECT_15(flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f,
            cfg_i, cfg_f, p_i, p_f, st_i, st_f, cnt, bsel, bchunk)
    # fmt: on
    return 0


# ----------------------------------------------------------------- engine


@njit(cache=True)
def _enqueue_arrival(
    slot_i, slot_f, queues, qhead, qlen, free, scal_i, scal_f, cfg_i, cfg_f, t, cls, pre, dec, rid, max_new, cached
):
    _integrate(scal_i, scal_f, cfg_f, t)
    scal_i[S_NFREE] -= 1
    slot = free[scal_i[S_NFREE]]
    slot_i[I_CLASS, slot] = cls
    slot_i[I_PREFILL, slot] = pre
    slot_i[I_DECODE, slot] = dec
    slot_i[I_STAGE, slot] = 0
    slot_i[I_PREFILL_DONE, slot] = 0
    slot_i[I_TARGET, slot] = pre
    slot_i[I_RESUME, slot] = 1
    slot_i[I_STATUS, slot] = STATUS_WAITING
    slot_i[I_CHARGE, slot] = 0
    slot_i[I_REQUEST, slot] = rid
    slot_i[I_EVICTIONS, slot] = 0
    slot_i[I_MAX_NEW, slot] = max_new if max_new > 0 else dec
    # Prompt tokens already in the prefix cache when it arrives (a replayed run's prefix-cache hits):
    # whole blocks, held for good (the mark never falls behind the free queue's head).
    # (The mark is read only while I_CACHE_BLOCKS > 0.)
    if cached > 0:
        slot_i[I_CACHE_BLOCKS, slot] = cached // cfg_i[C_BLOCK]
        slot_i[I_CACHE_MARK, slot] = NEVER_EVICTED
    else:
        slot_i[I_CACHE_BLOCKS, slot] = 0
    slot_f[F_ARRIVAL, slot] = t
    slot_f[F_FIRST_TOKEN, slot] = np.nan
    slot_f[F_LAST_TOKEN, slot] = np.nan
    scal_i[S_IN_SYSTEM] += 1
    scal_i[S_WAITING] += 1
    scal_i[S_ARRIVED] += 1
    if t >= cfg_f[CF_WARMUP] and cfg_i[C_MEASURE_LO] <= rid < cfg_i[C_MEASURE_HI]:
        scal_i[S_ARRIVED_MEASURED] += 1
        if t <= cfg_f[CF_WINDOW_END]:
            scal_i[S_ARRIVED_TOKENS] += dec
    if scal_i[S_WAITING] > scal_i[S_MAX_WAITING]:
        scal_i[S_MAX_WAITING] = scal_i[S_WAITING]
    queue_push_back(queues, qhead, qlen, queue_of(slot_i, cfg_i, slot), slot)


@njit(cache=True)
def _enqueue_until(
    slot_i,
    slot_f,
    queues,
    qhead,
    qlen,
    free,
    scal_i,
    scal_f,
    cfg_i,
    cfg_f,
    arr_t,
    arr_cls,
    arr_pre,
    arr_dec,
    arr_id,
    class_max_new,
    arr_cached,
    ai,
    t_limit,
):
    """Enqueue the chunk's arrivals up to ``t_limit`` while slots are free; returns the next index."""
    while ai < arr_t.size and arr_t[ai] <= t_limit and scal_i[S_NFREE] > 0:
        _enqueue_arrival(
            slot_i,
            slot_f,
            queues,
            qhead,
            qlen,
            free,
            scal_i,
            scal_f,
            cfg_i,
            cfg_f,
            arr_t[ai],
            arr_cls[ai],
            arr_pre[ai],
            arr_dec[ai],
            arr_id[ai],
            class_max_new[arr_cls[ai]],
            arr_cached[ai],
        )
        ai += 1
    return ai


@njit(cache=True)
def _complete(slot_i, slot_f, free, scal_i, scal_f, cfg_i, cfg_f, hist, comp_log, slot, t):
    arrival = slot_f[F_ARRIVAL, slot]
    latency = t - arrival
    if _is_measured(slot_i, slot_f, cfg_i, cfg_f, slot):
        scal_i[S_COMPLETED_MEASURED] += 1
        scal_f[T_LATENCY_SUM] += latency
        scal_f[T_TTFT_SUM] += slot_f[F_FIRST_TOKEN, slot] - arrival
        if latency > scal_f[T_LATENCY_MAX]:
            scal_f[T_LATENCY_MAX] = latency
        _hist_add(hist, H_LATENCY, latency)
        _hist_add(hist, H_TTFT, slot_f[F_FIRST_TOKEN, slot] - arrival)
        outputs = slot_i[I_DECODE, slot]
        if outputs >= 2:
            tpot = (t - slot_f[F_FIRST_TOKEN, slot]) / (outputs - 1)
            scal_f[T_TPOT_SUM] += tpot
            scal_f[T_TPOT_COUNT] += 1.0
            _hist_add(hist, H_TPOT, tpot)
    if cfg_f[CF_WARMUP] <= t <= cfg_f[CF_WINDOW_END]:
        scal_i[S_COMPLETED_WINDOW] += 1
        scal_i[S_TOKENS_WINDOW] += slot_i[I_DECODE, slot]
    scal_i[S_COMPLETED] += 1
    scal_i[S_IN_SYSTEM] -= 1
    if cfg_i[C_HOLD_FINISHED] == 1:
        slot_i[I_STATUS, slot] = STATUS_FINISHING  # released by _release_finished
    else:
        _free_kv(slot_i, scal_i, cfg_i, slot)
    if cfg_i[C_HOLD_FINISHED] == 0:
        if cfg_i[C_RECORD] == 1:
            _log_completion(slot_i, slot_f, scal_i, comp_log, slot)
        free[scal_i[S_NFREE]] = slot
        scal_i[S_NFREE] += 1


@njit(cache=True)
def _log_completion(slot_i, slot_f, scal_i, comp_log, slot):
    """Write a completed request's row of the completion log (its last token's time is its completion)."""
    row = scal_i[S_LOG_COUNT]
    comp_log[row, 0] = slot_i[I_REQUEST, slot]
    comp_log[row, 1] = slot_i[I_CLASS, slot]
    comp_log[row, 2] = slot_f[F_ARRIVAL, slot]
    comp_log[row, 3] = slot_f[F_FIRST_TOKEN, slot]
    comp_log[row, 4] = slot_f[F_LAST_TOKEN, slot]
    comp_log[row, 5] = slot_i[I_EVICTIONS, slot]
    scal_i[S_LOG_COUNT] += 1


@njit(cache=True)
def _free_kv(slot_i, scal_i, cfg_i, slot):
    """Return a completed request's KV blocks to the pool and its slot's state to free."""
    scal_i[S_MEMORY] -= slot_i[I_CHARGE, slot]
    held = slot_i[I_CHARGE, slot] // cfg_i[C_BLOCK]
    computed = slot_i[I_PREFILL, slot] + slot_i[I_DECODE, slot] - 1  # the last output token is never computed
    release_blocks(scal_i, held, min(computed // cfg_i[C_BLOCK], held))
    slot_i[I_CHARGE, slot] = 0
    slot_i[I_STATUS, slot] = STATUS_FREE


@njit(cache=True)
def _release_finished(slot_i, slot_f, res, free, scal_i, cfg_i, comp_log):
    """Release the completed requests still holding KV and a running place (``C_HOLD_FINISHED``); their count.

    Their completion-log rows are written here, so that a preemption while the last token was in
    flight (vLLM counts it) is in the row.
    """
    kept = 0
    released = 0
    for r in range(scal_i[S_NRES]):
        slot = res[r]
        if slot_i[I_STATUS, slot] == STATUS_FINISHING or slot_i[I_STATUS, slot] == STATUS_RELEASED:
            if cfg_i[C_RECORD] == 1:
                _log_completion(slot_i, slot_f, scal_i, comp_log, slot)
            _free_kv(slot_i, scal_i, cfg_i, slot)
            free[scal_i[S_NFREE]] = slot
            scal_i[S_NFREE] += 1
            released += 1
        else:
            res[kept] = slot
            kept += 1
    scal_i[S_NRES] = kept
    return released


@njit(cache=True)
def run_kernel(state, config, policy, timing, arrivals, logs):
    """Advance the simulation until it needs more arrivals, its series log is full, or it ends.

    The arguments are the bundles of :mod:`fluidopt.sim.bundles` (``KernelState``,
    ``KernelConfig``, ``PolicyArrays``, ``TimingArrays``, ``ArrivalChunk``, ``KernelLogs``).
    Returns one of ``RC_NEED_ARRIVALS``, ``RC_SERIES_FULL``, ``RC_NEED_SLOTS`` or ``RC_DONE``.
    Arrivals of the current chunk are consumed from the start; the driver passes the unconsumed
    rest again.

    This is the event loop itself and stays one function although it is long: numba compiles it
    into one loop with every state array in registers, and the selection and step-time functions
    it calls are inlined into it; splitting the loop body into calls would pass the state arrays
    through each call every iteration.
    """
    slot_i, slot_f, res, queues, qhead, qlen, free, scal_i, scal_f, cnt, bsel, bchunk, pchunk, pcached, hist = state
    cfg_i, cfg_f = config
    p_i, p_f, st_i, st_f = policy
    tcoef, ttable = timing
    arr_t, arr_cls, arr_pre, arr_dec, arr_id, class_max_new, arr_cached, arrivals_final = arrivals
    comp_log, series = logs
    n_arr = arr_t.size
    ai = 0
    capacity = cfg_i[C_CAPACITY]
    block = cfg_i[C_BLOCK]
    window_end = cfg_f[CF_WINDOW_END]
    drain = cfg_i[C_DRAIN] == 1
    timing_kind = cfg_i[C_TIMING]
    first_token_prefill = cfg_i[C_FIRST_TOKEN_PREFILL] == 1
    engine_tokens = cfg_i[C_ENGINE_TOKENS] == 1
    while True:
        t = scal_f[T_NOW]
        ai = _enqueue_until(
            slot_i,
            slot_f,
            queues,
            qhead,
            qlen,
            free,
            scal_i,
            scal_f,
            cfg_i,
            cfg_f,
            arr_t,
            arr_cls,
            arr_pre,
            arr_dec,
            arr_id,
            class_max_new,
            arr_cached,
            ai,
            t,
        )
        if ai < n_arr and arr_t[ai] <= t:  # stopped for want of a free slot
            scal_i[S_CONSUMED] = ai
            return RC_NEED_SLOTS
        if ai == n_arr and not arrivals_final:
            scal_i[S_CONSUMED] = ai
            return RC_NEED_ARRIVALS
        done = ai == n_arr
        if done:
            scal_i[S_ARRIVALS_DONE] = 1
        if t >= window_end and not drain:
            break
        if drain and t >= window_end + cfg_f[CF_DRAIN_TIMEOUT]:
            break
        admitted_before = scal_i[S_ADMIT_COUNTER]
        evicted_before = scal_i[S_EVICTIONS]
        hold_finished = cfg_i[C_HOLD_FINISHED] == 1
        if hold_finished and scal_f[T_STEP_END] != t:  # idle: every output was applied before this plan
            _release_finished(slot_i, slot_f, res, free, scal_i, cfg_i, comp_log)
        nb = _select(
            done and drain,
            slot_i,
            slot_f,
            res,
            queues,
            qhead,
            qlen,
            scal_i,
            scal_f,
            cfg_i,
            cfg_f,
            p_i,
            p_f,
            st_i,
            st_f,
            cnt,
            bsel,
            bchunk,
        )
        preempted = scal_i[S_EVICTIONS] - evicted_before
        if preempted > 0:
            scal_i[S_PREEMPT_STEPS] += 1
        if hold_finished and _release_finished(slot_i, slot_f, res, free, scal_i, cfg_i, comp_log) > 0 and nb == 0:
            # An empty plan made during the last step: the engine applies that step's output, then
            # plans again at once (as an idle engine does).
            scal_f[T_STEP_END] = -1.0
            continue
        if nb == 0:
            if ai < n_arr:
                nxt = arr_t[ai]
                if nxt > window_end and not drain:
                    _integrate(scal_i, scal_f, cfg_f, window_end)
                    scal_f[T_NOW] = window_end
                    break
                _integrate(scal_i, scal_f, cfg_f, nxt)
                scal_f[T_NOW] = nxt
                continue
            break
        # Batch content and iteration time (the prefills' chunks and cached tokens for the step function).
        kv = 0
        prefill = 0
        decodes = 0
        decode_kv = 0
        n_prefill = 0
        for b in range(nb):
            slot = bsel[b]
            stage = slot_i[I_STAGE, slot]
            if stage == 0:
                kv += slot_i[I_PREFILL_DONE, slot] + bchunk[b]
                prefill += bchunk[b]
                pchunk[n_prefill] = bchunk[b]
                pcached[n_prefill] = slot_i[I_PREFILL_DONE, slot]
                n_prefill += 1
            else:
                kv += slot_i[I_PREFILL, slot] + stage
                decodes += 1
                decode_kv += slot_i[I_PREFILL, slot] + stage - 1  # cached tokens the step reads
        has_prefill = n_prefill > 0
        tau = _step_time(timing_kind, tcoef, ttable, kv, prefill, decodes, decode_kv, nb, n_prefill, pchunk, pcached)
        memory = scal_i[S_MEMORY]
        if memory > scal_i[S_PEAK_MEMORY]:
            scal_i[S_PEAK_MEMORY] = memory
        if memory > capacity:
            scal_i[S_OVERFLOW_ITERATIONS] += 1
        t_end = t + tau
        scal_f[T_STEP_START] = t
        scal_f[T_STEP_END] = t_end
        ai = _enqueue_until(
            slot_i,
            slot_f,
            queues,
            qhead,
            qlen,
            free,
            scal_i,
            scal_f,
            cfg_i,
            cfg_f,
            arr_t,
            arr_cls,
            arr_pre,
            arr_dec,
            arr_id,
            class_max_new,
            arr_cached,
            ai,
            t_end,
        )
        _integrate(scal_i, scal_f, cfg_f, t_end)
        if t_end > cfg_f[CF_WARMUP] and t < window_end:
            scal_f[T_BUSY] += min(t_end, window_end) - max(t, cfg_f[CF_WARMUP])
        completions = 0
        for b in range(nb):
            slot = bsel[b]
            stage = slot_i[I_STAGE, slot]
            measured = _is_measured(slot_i, slot_f, cfg_i, cfg_f, slot)
            if stage == 0:
                slot_i[I_PREFILL_DONE, slot] += bchunk[b]
                if slot_i[I_PREFILL_DONE, slot] >= slot_i[I_TARGET, slot]:
                    if math.isnan(slot_f[F_FIRST_TOKEN, slot]):
                        slot_f[F_FIRST_TOKEN, slot] = t_end
                    slot_f[F_LAST_TOKEN, slot] = t_end
                    new_stage = slot_i[I_RESUME, slot]
                    if first_token_prefill and (new_stage == 1 or engine_tokens):
                        new_stage += 1  # the prefill iteration emits an output token (Vidur, engines)
                    if new_stage > slot_i[I_DECODE, slot]:
                        _complete(slot_i, slot_f, free, scal_i, scal_f, cfg_i, cfg_f, hist, comp_log, slot, t_end)
                        completions += 1
                        continue
                    slot_i[I_STAGE, slot] = new_stage
                    if not engine_tokens:
                        new_charge = blocks(slot_i[I_PREFILL, slot] + new_stage, block)
                        scal_i[S_MEMORY] += new_charge - slot_i[I_CHARGE, slot]
                        slot_i[I_CHARGE, slot] = new_charge
            else:
                if measured:
                    gap = t_end - slot_f[F_LAST_TOKEN, slot]
                    _hist_add(hist, H_TBT, gap)
                    scal_f[T_TBT_SUM] += gap
                    scal_f[T_TBT_COUNT] += 1.0
                slot_f[F_LAST_TOKEN, slot] = t_end
                if stage >= slot_i[I_DECODE, slot]:
                    _complete(slot_i, slot_f, free, scal_i, scal_f, cfg_i, cfg_f, hist, comp_log, slot, t_end)
                    completions += 1
                else:
                    slot_i[I_STAGE, slot] = stage + 1
                    if not engine_tokens:
                        new_charge = blocks(slot_i[I_PREFILL, slot] + stage + 1, block)
                        scal_i[S_MEMORY] += new_charge - slot_i[I_CHARGE, slot]
                        slot_i[I_CHARGE, slot] = new_charge
        if completions > 0:
            kept = 0
            for r in range(scal_i[S_NRES]):
                slot = res[r]
                if slot_i[I_STATUS, slot] == STATUS_RESIDENT or slot_i[I_STATUS, slot] == STATUS_FINISHING:
                    res[kept] = slot
                    kept += 1
            scal_i[S_NRES] = kept
        scal_i[S_ITERATIONS] += 1
        if has_prefill:
            scal_i[S_PREFILL_ITERATIONS] += 1
        scal_f[T_NOW] = t_end
        if cfg_i[C_SERIES] == 1:
            row = scal_i[S_SERIES_COUNT]
            series[row, 0] = t
            series[row, 1] = t_end
            series[row, 2] = memory
            series[row, 3] = scal_i[S_WAITING]
            series[row, 4] = nb
            series[row, 5] = completions
            series[row, 6] = prefill
            series[row, 7] = scal_i[S_NRES] + completions
            series[row, 8] = scal_i[S_ADMIT_COUNTER] - admitted_before
            series[row, 9] = preempted
            series[row, 10] = prefill + decodes
            scal_i[S_SERIES_COUNT] += 1
            if scal_i[S_SERIES_COUNT] == series.shape[0]:
                scal_i[S_CONSUMED] = ai
                return RC_SERIES_FULL
    if cfg_i[C_HOLD_FINISHED] == 1:  # the run ends: the engine applies the last step's output
        _release_finished(slot_i, slot_f, res, free, scal_i, cfg_i, comp_log)
    scal_i[S_CONSUMED] = ai
    return RC_DONE
