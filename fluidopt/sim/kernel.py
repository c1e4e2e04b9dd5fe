"""The simulator's hot loop, compiled with numba.

Everything here works on the flat arrays described in :mod:`fluidopt.sim.layout`, so the same
functions run compiled (``run_kernel``) or as plain Python (``run_kernel.py_func``); a test
checks that both give identical results.

Semantics (MODEL.md sections 1 and 4-7; arXiv:2504.11320):

- One batch at a time.  A batch's iteration time is the profile's maximum over affine pieces of
  ``base + per_kv * K + per_prefill * P + per_sequence * B``: K the KV tokens the batch touches
  (a prefill chunk counts the prompt tokens already cached plus the chunk, a decode at stage s
  counts ``l + s``), P the prefill tokens and B the sequences.
- A resident request at stage s is charged ``l + s`` KV tokens (rounded up to whole blocks): a
  request waiting for its prefill holds nothing, a resident one holds its prompt plus one token
  per decode step, including the token of the step it is about to run.  Completion frees it.
- Memory is checked when a batch is formed.  Policies that evict (FCFS, vLLM, Sarathi, Nested
  WAIT with repair) do so then; a batch formed with memory above C is counted as an overflow.
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
    C_CHUNK,
    C_DRAIN,
    C_EVICTION,
    C_FIRST_TOKEN_PREFILL,
    C_HOLD,
    C_MAX_BATCH,
    C_MAX_TOKENS,
    C_MEASURE_HI,
    C_MEASURE_LO,
    C_NUM_SEGMENTS,
    C_POLICY,
    C_PREFILL_BUDGET,
    C_RECORD,
    C_REPAIR,
    C_SERIES,
    C_TIMING,
    C_TL,
    C_TOKEN_BUDGET,
    C_WAIT_GATE,
    CF_DRAIN_TIMEOUT,
    CF_WARMUP,
    CF_WATERMARK,
    CF_WINDOW_END,
    F_ARRIVAL,
    F_FIRST_TOKEN,
    F_LAST_TOKEN,
    H_LATENCY,
    H_TBT,
    H_TTFT,
    HIST_BINS,
    HIST_BINS_PER_DECADE,
    HIST_MIN_LOG10,
    I_ADMIT,
    I_CHARGE,
    I_CLASS,
    I_DECODE,
    I_EVICTIONS,
    I_PREFILL,
    I_PREFILL_DONE,
    I_REQUEST,
    I_RESUME,
    I_STAGE,
    I_STATUS,
    I_TARGET,
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
    S_PREFILL_ITERATIONS,
    S_RECOMPUTED_TOKENS,
    S_SERIES_COUNT,
    S_STAGE_EXCESS,
    S_TOKENS_WINDOW,
    S_WAITING,
    S_WASTED_TOKENS,
    STATUS_FREE,
    STATUS_RESIDENT,
    STATUS_WAITING,
    T_BUSY,
    T_LAST,
    T_LATENCY_MAX,
    T_LATENCY_SUM,
    T_MEMORY_AREA,
    T_NOW,
    T_RESIDENT_AREA,
    T_TBT_COUNT,
    T_TBT_SUM,
    T_TTFT_SUM,
    T_WAITING_AREA,
    fingerprint,
)
from fluidopt.timing import TC_D0, TC_DB, TC_DKV, TC_E0, TC_EK, TC_P0, TC_PC, TC_PCC, TC_PCK, TC_S0, TC_S1

# ----------------------------------------------------------------- helpers

# numba's on-disk cache is keyed on this file only, so a change to layout.py alone would leave
# compiled code with stale indices; engine.ensure_fresh_kernel() compares this value, frozen at
# compile time, with layout.fingerprint() and recompiles on a mismatch.
LAYOUT_FINGERPRINT = fingerprint()


@njit(cache=True)
def compiled_layout_fingerprint():
    """The layout fingerprint this module was compiled with."""
    return LAYOUT_FINGERPRINT


@njit(cache=True)
def _blocks(tokens, block):
    """Tokens rounded up to whole KV blocks."""
    return ((tokens + block - 1) // block) * block


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
    hist[row, index] += 1.0


@njit(cache=True)
def _queue_push_back(queues, qhead, qlen, q, slot):
    cap = queues.shape[1]
    queues[q, (qhead[q] + qlen[q]) % cap] = slot
    qlen[q] += 1


@njit(cache=True)
def _queue_push_front(queues, qhead, qlen, q, slot):
    cap = queues.shape[1]
    qhead[q] = (qhead[q] - 1 + cap) % cap
    queues[q, qhead[q]] = slot
    qlen[q] += 1


@njit(cache=True)
def _queue_pop_front(queues, qhead, qlen, q):
    slot = queues[q, qhead[q]]
    qhead[q] = (qhead[q] + 1) % queues.shape[1]
    qlen[q] -= 1
    return slot


@njit(cache=True)
def _queue_peek(queues, qhead, q, k):
    return queues[q, (qhead[q] + k) % queues.shape[1]]


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


@njit(cache=True)
def _interp(table, row, x):
    """Piecewise-linear ``table[row]`` at ``x`` over knots ``table[0]``: flat below, linear beyond the last knot."""
    knots = table.shape[1]
    if x <= table[0, 0]:
        return table[row, 0]
    if x >= table[0, knots - 1]:
        slope = (table[row, knots - 1] - table[row, knots - 2]) / (table[0, knots - 1] - table[0, knots - 2])
        return table[row, knots - 1] + slope * (x - table[0, knots - 1])
    lo = 0
    hi = knots - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if table[0, mid] <= x:
            lo = mid
        else:
            hi = mid
    w = (x - table[0, lo]) / (table[0, hi] - table[0, lo])
    return table[row, lo] * (1.0 - w) + table[row, hi] * w


@njit(cache=True)
def _measured_tau(tcoef, ttable, tokens, decodes, decode_kv, prefill_extra):
    """Iteration time of the measured model (fluidopt.timing) from the batch's aggregates.

    ``prefill_extra`` is the sum over prefilling requests of their attention and KV-save time.
    """
    tau = _interp(ttable, 1, float(tokens)) + prefill_extra
    if decodes > 0:
        b = float(decodes)
        save = tcoef[TC_S0] + tcoef[TC_S1] * b
        tau += save if save > 0.0 else 0.0
        linear = tcoef[TC_D0] + tcoef[TC_DB] * b + tcoef[TC_DKV] * decode_kv
        floor = tcoef[TC_E0] + tcoef[TC_EK] * decode_kv / b
        attention = linear if linear > floor else floor
        tau += attention if attention > 0.0 else 0.0
    return tau


@njit(cache=True)
def _prefill_chunk_time(tcoef, ttable, chunk, cached):
    """Prefill attention ``p(c, k)`` plus the KV save ``c r(k + c)`` of one chunk."""
    c = float(chunk)
    k = float(cached)
    attention = tcoef[TC_P0] + tcoef[TC_PC] * c + tcoef[TC_PCK] * c * k + tcoef[TC_PCC] * c * c
    rate = _interp(ttable, 2, k + c)
    return (attention if attention > 0.0 else 0.0) + c * (rate if rate > 0.0 else 0.0)


@njit(cache=True)
def _queue_id(slot_i, cfg_i, slot):
    policy = cfg_i[C_POLICY]
    if policy == 0 or policy == 1:
        return slot_i[I_CLASS, slot]
    return 0


@njit(cache=True)
def _admit(slot_i, res, scal_i, cfg_i, slot):
    """Make a waiting request resident: charge its prompt (or re-prefill) tokens."""
    slot_i[I_STATUS, slot] = STATUS_RESIDENT
    slot_i[I_ADMIT, slot] = scal_i[S_ADMIT_COUNTER]
    scal_i[S_ADMIT_COUNTER] += 1
    charge = _blocks(slot_i[I_TARGET, slot], cfg_i[C_BLOCK])
    slot_i[I_CHARGE, slot] = charge
    scal_i[S_MEMORY] += charge
    res[scal_i[S_NRES]] = slot
    scal_i[S_NRES] += 1
    scal_i[S_WAITING] -= 1


@njit(cache=True)
def _evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, position):
    """Evict the resident at ``position`` of the resident list back to the front of its queue."""
    slot = res[position]
    for r in range(position, scal_i[S_NRES] - 1):
        res[r] = res[r + 1]
    scal_i[S_NRES] -= 1
    scal_i[S_MEMORY] -= slot_i[I_CHARGE, slot]
    slot_i[I_CHARGE, slot] = 0
    slot_i[I_STATUS, slot] = STATUS_WAITING
    slot_i[I_EVICTIONS, slot] += 1
    scal_i[S_EVICTIONS] += 1
    stage = slot_i[I_STAGE, slot]
    if cfg_i[C_EVICTION] == 0:  # restart: cache and progress lost (prompt work and decode tokens)
        if stage >= 1:
            scal_i[S_WASTED_TOKENS] += slot_i[I_PREFILL, slot] + stage - 1
        else:
            scal_i[S_WASTED_TOKENS] += slot_i[I_PREFILL_DONE, slot]
        slot_i[I_STAGE, slot] = 0
        slot_i[I_TARGET, slot] = slot_i[I_PREFILL, slot]
        slot_i[I_RESUME, slot] = 1
    elif stage >= 1:  # recompute: re-prefill prompt plus generated tokens, keep progress
        slot_i[I_TARGET, slot] = slot_i[I_PREFILL, slot] + stage - 1
        slot_i[I_RESUME, slot] = stage
        slot_i[I_STAGE, slot] = 0
        scal_i[S_RECOMPUTED_TOKENS] += slot_i[I_TARGET, slot]
    slot_i[I_PREFILL_DONE, slot] = 0
    scal_i[S_WAITING] += 1
    _queue_push_front(queues, qhead, qlen, _queue_id(slot_i, cfg_i, slot), slot)


@njit(cache=True)
def _latest_arrived_position(slot_i, res, nres):
    best = 0
    for r in range(1, nres):
        if slot_i[I_REQUEST, res[r]] > slot_i[I_REQUEST, res[best]]:
            best = r
    return best


@njit(cache=True)
def _add(bsel, bchunk, nb, slot, chunk):
    bsel[nb] = slot
    bchunk[nb] = chunk
    return nb + 1


# ----------------------------------------------------------------- policies
# Every policy has the same job: given the state, admit/evict as it wishes and write the batch
# (slots and prefill-token chunks) into ``bsel``/``bchunk``; it returns the batch size.


@njit(cache=True)
def _select_wait(gate, flush, slot_i, res, queues, qhead, qlen, scal_i, cfg_i, thr, cnt, bsel, bchunk):
    """WAIT (MODEL.md section 4); ``gate=False`` is the no-wait ablation."""
    m = thr.size
    nres = scal_i[S_NRES]
    resident_count = np.zeros(m, np.int64)
    for r in range(nres):
        resident_count[slot_i[I_CLASS, res[r]]] += 1
    eligible = np.zeros(m, np.bool_)
    for j in range(m):
        if gate and not flush:
            eligible[j] = qlen[j] >= thr[j]
        else:
            eligible[j] = qlen[j] >= 1 or resident_count[j] > 0
    hold = cfg_i[C_HOLD] == 1
    nb = 0
    for r in range(nres):
        slot = res[r]
        j = slot_i[I_CLASS, slot]
        if eligible[j] or (not hold and slot_i[I_STAGE, slot] >= 1):
            stage = slot_i[I_STAGE, slot]
            if cnt[j, stage] < thr[j]:
                cnt[j, stage] += 1
                chunk = slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot] if stage == 0 else 0
                nb = _add(bsel, bchunk, nb, slot, chunk)
    for j in range(m):
        if eligible[j]:
            take = min(thr[j] - cnt[j, 0], qlen[j])
            for _ in range(take):
                slot = _queue_pop_front(queues, qhead, qlen, j)
                _admit(slot_i, res, scal_i, cfg_i, slot)
                nb = _add(bsel, bchunk, nb, slot, slot_i[I_TARGET, slot])
    for b in range(nb):
        cnt[slot_i[I_CLASS, bsel[b]], slot_i[I_STAGE, bsel[b]]] = 0
    return nb


@njit(cache=True)
def _select_nested(
    flush, slot_i, res, queues, qhead, qlen, scal_i, cfg_i, thr, seg_of_stage, seg_entry, cnt, bsel, bchunk
):
    """Nested WAIT (MODEL.md section 6): the prefix rule over segments, optional memory repair."""
    segments = cfg_i[C_NUM_SEGMENTS]
    capacity = cfg_i[C_CAPACITY]
    if cfg_i[C_REPAIR] == 1:
        projected = scal_i[S_MEMORY]
        if qlen[0] >= thr[0] or flush:
            for k in range(min(thr[0], qlen[0])):
                projected += _blocks(slot_i[I_TARGET, _queue_peek(queues, qhead, 0, k)], cfg_i[C_BLOCK])
        position = scal_i[S_NRES] - 1
        while projected > capacity and position >= 0:
            slot = res[position]
            stage = slot_i[I_STAGE, slot]
            segment = seg_of_stage[stage]
            if segment > 0 and stage == seg_entry[segment]:
                projected -= slot_i[I_CHARGE, slot]
                _evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, position)
            position -= 1
    nres = scal_i[S_NRES]
    entry = np.zeros(segments, np.int64)
    entry[0] = qlen[0]
    for r in range(nres):
        stage = slot_i[I_STAGE, res[r]]
        segment = seg_of_stage[stage]
        if segment > 0 and stage == seg_entry[segment]:
            entry[segment] += 1
    top = 0
    if flush:
        top = segments
    else:
        while top < segments and entry[top] >= thr[top]:
            top += 1
    hold = cfg_i[C_HOLD] == 1
    if top == 0 and hold:
        return 0
    nb = 0
    for r in range(nres):
        slot = res[r]
        stage = slot_i[I_STAGE, slot]
        segment = seg_of_stage[stage]
        # Without hold, interior stages of closed segments keep decoding; entry stages still wait.
        interior = stage >= 1 and not (segment > 0 and stage == seg_entry[segment])
        if (segment < top or (not hold and interior)) and cnt[0, stage] < thr[segment]:
            cnt[0, stage] += 1
            chunk = slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot] if stage == 0 else 0
            nb = _add(bsel, bchunk, nb, slot, chunk)
    take = min(thr[0] - cnt[0, 0], qlen[0]) if top > 0 else 0
    for _ in range(take):
        slot = _queue_pop_front(queues, qhead, qlen, 0)
        _admit(slot_i, res, scal_i, cfg_i, slot)
        nb = _add(bsel, bchunk, nb, slot, slot_i[I_TARGET, slot])
    for b in range(nb):
        cnt[0, slot_i[I_STAGE, bsel[b]]] = 0
    return nb


@njit(cache=True)
def _select_fcfs(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, bsel, bchunk):
    """Greedy FCFS: evict last-in-first-out on overflow, run every resident, admit while memory allows."""
    capacity = cfg_i[C_CAPACITY]
    while scal_i[S_MEMORY] > capacity and scal_i[S_NRES] > 0:
        _evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, scal_i[S_NRES] - 1)
    cap = cfg_i[C_MAX_BATCH]
    nb = 0
    for r in range(scal_i[S_NRES]):
        if cap > 0 and nb >= cap:
            break
        slot = res[r]
        chunk = slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot] if slot_i[I_STAGE, slot] == 0 else 0
        nb = _add(bsel, bchunk, nb, slot, chunk)
    while qlen[0] > 0 and (cap == 0 or nb < cap):
        slot = _queue_peek(queues, qhead, 0, 0)
        if scal_i[S_MEMORY] + _blocks(slot_i[I_TARGET, slot], cfg_i[C_BLOCK]) > capacity:
            break
        _queue_pop_front(queues, qhead, qlen, 0)
        _admit(slot_i, res, scal_i, cfg_i, slot)
        nb = _add(bsel, bchunk, nb, slot, slot_i[I_TARGET, slot])
    return nb


@njit(cache=True)
def _free_blocks(scal_i, cfg_i):
    return (cfg_i[C_CAPACITY] - scal_i[S_MEMORY]) // cfg_i[C_BLOCK]


@njit(cache=True)
def _watermark_blocks(cfg_i, cfg_f):
    return int(cfg_f[CF_WATERMARK] * (cfg_i[C_CAPACITY] // cfg_i[C_BLOCK]))


@njit(cache=True)
def _select_vllm(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, bsel, bchunk):
    """VLLM v0 / Vidur: prefill-only iterations when requests are admitted, else decode-only."""
    block = cfg_i[C_BLOCK]
    while scal_i[S_MEMORY] > cfg_i[C_CAPACITY] and scal_i[S_NRES] > 0:
        _evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, _latest_arrived_position(slot_i, res, scal_i[S_NRES]))
    cap = cfg_i[C_MAX_BATCH]
    watermark = _watermark_blocks(cfg_i, cfg_f)
    nb = 0
    longest = 0
    while qlen[0] > nb:
        slot = _queue_peek(queues, qhead, 0, nb)
        target = slot_i[I_TARGET, slot]
        if cap > 0 and scal_i[S_NRES] + 1 > cap:
            break
        padded = max(longest, target) * (nb + 1)
        if padded > cfg_i[C_MAX_TOKENS] and nb > 0:
            break
        if _free_blocks(scal_i, cfg_i) - _blocks(target, block) // block < watermark:
            break
        longest = max(longest, target)
        nb += 1
        _admit(slot_i, res, scal_i, cfg_i, slot)
    if nb > 0:
        for b in range(nb):
            slot = _queue_pop_front(queues, qhead, qlen, 0)
            bsel[b] = slot
            bchunk[b] = slot_i[I_TARGET, slot]
        return nb
    for r in range(scal_i[S_NRES]):
        slot = res[r]
        chunk = slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot] if slot_i[I_STAGE, slot] == 0 else 0
        nb = _add(bsel, bchunk, nb, slot, chunk)
    return nb


@njit(cache=True)
def _select_sarathi(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, bsel, bchunk):
    """Sarathi-Serve: a token budget filled by decodes, then partial prefills, then new requests FCFS."""
    block = cfg_i[C_BLOCK]
    while scal_i[S_MEMORY] > cfg_i[C_CAPACITY] and scal_i[S_NRES] > 0:
        _evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, _latest_arrived_position(slot_i, res, scal_i[S_NRES]))
    cap = cfg_i[C_MAX_BATCH]
    budget = cfg_i[C_TOKEN_BUDGET]
    watermark = _watermark_blocks(cfg_i, cfg_f)
    nb = 0
    nres = scal_i[S_NRES]
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] >= 1 and budget > 0 and (cap == 0 or nb < cap):
            nb = _add(bsel, bchunk, nb, slot, 0)
            budget -= 1
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] == 0 and budget > 0 and (cap == 0 or nb < cap):
            chunk = min(slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot], budget)
            nb = _add(bsel, bchunk, nb, slot, chunk)
            budget -= chunk
    while qlen[0] > 0 and budget > 0 and (cap == 0 or nb < cap):
        slot = _queue_peek(queues, qhead, 0, 0)
        target = slot_i[I_TARGET, slot]
        if _free_blocks(scal_i, cfg_i) - _blocks(target, block) // block < watermark:
            break
        _queue_pop_front(queues, qhead, qlen, 0)
        _admit(slot_i, res, scal_i, cfg_i, slot)
        chunk = min(target, budget)
        nb = _add(bsel, bchunk, nb, slot, chunk)
        budget -= chunk
    return nb


@njit(cache=True)
def _select_wait_cp(
    slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, thr, seg_of_stage, seg_entry, cnt, bsel, bchunk
):
    """Chunked WAIT (WAIT-CP, MODEL.md section 9): decodes by segment, then chunked prefills, never evict.

    ``thr`` holds, per segment k, the decode budget ``thr[k]``, the in-segment cap
    ``thr[K + k]`` (boundary admissions stop when ``interior_k`` reaches it) and the gate's
    per-stage count rounded down ``thr[2K + k]`` and up ``thr[3K + k]`` (K segments).
    ``cnt[0, s]`` counts residents at stage s.
    A segment's entry stage is its first decode stage; a request there has not yet entered it.
    """
    segments = cfg_i[C_NUM_SEGMENTS]
    block = cfg_i[C_BLOCK]
    capacity = cfg_i[C_CAPACITY]
    nres = scal_i[S_NRES]
    budget = cfg_i[C_TOKEN_BUDGET]
    prefill_budget = cfg_i[C_PREFILL_BUDGET]
    gate = cfg_i[C_WAIT_GATE] == 1
    stages = cnt.shape[1]
    projected = scal_i[S_MEMORY]
    nb = 0
    # Residents by stage (counting sort), decodes only.
    prefilling = 0
    for r in range(nres):
        stage = slot_i[I_STAGE, res[r]]
        if stage >= 1:
            cnt[0, stage] += 1
        else:
            prefilling += 1
    start = np.zeros(stages + 1, np.int64)
    for stage in range(stages):
        start[stage + 1] = start[stage] + cnt[0, stage]
    order = np.empty(start[stages], np.int64)
    fill = start.copy()
    for r in range(nres):
        stage = slot_i[I_STAGE, res[r]]
        if stage >= 1:
            order[fill[stage]] = res[r]
            fill[stage] += 1
    first_decode = 2 if cfg_i[C_FIRST_TOKEN_PREFILL] == 1 else 1
    for k in range(segments):
        first = seg_entry[k] if k > 0 else first_decode
        last = stages - 1
        for stage in range(first, stages):
            if seg_of_stage[stage] != k:
                last = stage - 1
                break
        entry = cnt[0, first] if first < stages else 0
        interior = 0
        for stage in range(first + 1, last + 1):
            interior += cnt[0, stage]
        seg_budget = thr[k]
        admit_entry = entry if k == 0 else max(0, min(entry, thr[segments + k] - interior))
        if gate:
            # Wait gate: skip the segment this iteration unless its entry backlog and interior fill
            # its cap or the backlog reaches its per-stage count, rounded down and up in rotation
            # (MODEL.md section 9).  Segment 1's backlog is the prefill queue plus the requests
            # still prefilling.
            backlog = entry if k > 0 else qlen[0] + prefilling
            rounded = thr[2 * segments + k] if scal_i[S_ITERATIONS] % 2 == 0 else thr[3 * segments + k]
            if backlog + interior + (entry if k == 0 else 0) < thr[segments + k] and backlog < rounded:
                continue
        # Entry stage first (boundary admissions), then the interior in ascending stage order.
        for stage in range(first, last + 1):
            allowed = admit_entry if stage == first else cnt[0, stage]
            for i in range(start[stage], start[stage] + allowed):
                if seg_budget <= 0 or budget <= 0:
                    break
                slot = order[i]
                grown = _blocks(slot_i[I_PREFILL, slot] + stage + 1, block) - slot_i[I_CHARGE, slot]
                if projected + grown > capacity:
                    continue  # cannot get a block: waits with its cache kept
                projected += grown
                nb = _add(bsel, bchunk, nb, slot, 0)
                seg_budget -= 1
                budget -= 1
    for stage in range(stages):
        cnt[0, stage] = 0
    chunk_cap = cfg_i[C_CHUNK]
    budget_left = min(budget, prefill_budget)
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] == 0 and budget_left > 0:
            chunk = min(slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot], chunk_cap, budget_left)
            nb = _add(bsel, bchunk, nb, slot, chunk)
            budget_left -= chunk
    watermark = _watermark_blocks(cfg_i, cfg_f)
    while qlen[0] > 0 and budget_left > 0 and scal_i[S_NRES] < cfg_i[C_TL]:
        slot = _queue_peek(queues, qhead, 0, 0)
        target = slot_i[I_TARGET, slot]
        need = _blocks(target, block)
        if (capacity - projected) // block - need // block < watermark or projected + need > capacity:
            break
        _queue_pop_front(queues, qhead, qlen, 0)
        _admit(slot_i, res, scal_i, cfg_i, slot)
        projected += need
        chunk = min(target, chunk_cap, budget_left)
        nb = _add(bsel, bchunk, nb, slot, chunk)
        budget_left -= chunk
    return nb


@njit(cache=True)
def _select(
    flush, slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, thr, seg_of_stage, seg_entry, cnt, bsel, bchunk
):
    policy = cfg_i[C_POLICY]
    if policy == 0 or policy == 1:
        return _select_wait(policy == 0, flush, slot_i, res, queues, qhead, qlen, scal_i, cfg_i, thr, cnt, bsel, bchunk)
    if policy == 2:
        return _select_nested(
            flush, slot_i, res, queues, qhead, qlen, scal_i, cfg_i, thr, seg_of_stage, seg_entry, cnt, bsel, bchunk
        )
    if policy == 3:
        return _select_fcfs(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, bsel, bchunk)
    if policy == 4:
        return _select_vllm(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, bsel, bchunk)
    if policy == 6:
        return _select_wait_cp(
            slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, thr, seg_of_stage, seg_entry, cnt, bsel, bchunk
        )
    return _select_sarathi(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, cfg_f, bsel, bchunk)


# ----------------------------------------------------------------- engine


@njit(cache=True)
def _track_stage_excess(slot_i, res, scal_i, thr, cnt):
    """Record the largest excess of residents per (class, decode stage) over the WAIT cap ``n_j``."""
    nres = scal_i[S_NRES]
    for r in range(nres):
        slot = res[r]
        stage = slot_i[I_STAGE, slot]
        if stage >= 1:
            j = slot_i[I_CLASS, slot]
            cnt[j, stage] += 1
            excess = cnt[j, stage] - thr[j]
            if excess > scal_i[S_STAGE_EXCESS]:
                scal_i[S_STAGE_EXCESS] = excess
    for r in range(nres):
        slot = res[r]
        cnt[slot_i[I_CLASS, slot], slot_i[I_STAGE, slot]] = 0


@njit(cache=True)
def _enqueue_arrival(slot_i, slot_f, queues, qhead, qlen, free, scal_i, scal_f, cfg_i, cfg_f, t, cls, pre, dec, rid):
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
    _queue_push_back(queues, qhead, qlen, _queue_id(slot_i, cfg_i, slot), slot)


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
    if cfg_f[CF_WARMUP] <= t <= cfg_f[CF_WINDOW_END]:
        scal_i[S_COMPLETED_WINDOW] += 1
        scal_i[S_TOKENS_WINDOW] += slot_i[I_DECODE, slot]
    scal_i[S_COMPLETED] += 1
    scal_i[S_IN_SYSTEM] -= 1
    scal_i[S_MEMORY] -= slot_i[I_CHARGE, slot]
    slot_i[I_CHARGE, slot] = 0
    slot_i[I_STATUS, slot] = STATUS_FREE
    if cfg_i[C_RECORD] == 1:
        row = scal_i[S_LOG_COUNT]
        comp_log[row, 0] = slot_i[I_REQUEST, slot]
        comp_log[row, 1] = slot_i[I_CLASS, slot]
        comp_log[row, 2] = arrival
        comp_log[row, 3] = slot_f[F_FIRST_TOKEN, slot]
        comp_log[row, 4] = t
        comp_log[row, 5] = slot_i[I_EVICTIONS, slot]
        scal_i[S_LOG_COUNT] += 1
    free[scal_i[S_NFREE]] = slot
    scal_i[S_NFREE] += 1


@njit(cache=True)
def run_kernel(
    slot_i,
    slot_f,
    res,
    queues,
    qhead,
    qlen,
    free,
    scal_i,
    scal_f,
    cfg_i,
    cfg_f,
    thr,
    seg_of_stage,
    seg_entry,
    coef,
    tcoef,
    ttable,
    arr_t,
    arr_cls,
    arr_pre,
    arr_dec,
    arr_id,
    arrivals_final,
    cnt,
    bsel,
    bchunk,
    hist,
    comp_log,
    series,
):
    """Advance the simulation until it needs more arrivals, its series log is full, or it ends.

    Returns one of ``RC_NEED_ARRIVALS``, ``RC_SERIES_FULL`` or ``RC_DONE``.  Arrivals of the
    current chunk are consumed from the start; the driver passes the unconsumed rest again.
    """
    n_arr = arr_t.size
    ai = 0
    capacity = cfg_i[C_CAPACITY]
    block = cfg_i[C_BLOCK]
    window_end = cfg_f[CF_WINDOW_END]
    drain = cfg_i[C_DRAIN] == 1
    measured_timing = cfg_i[C_TIMING] == 1
    first_token_prefill = cfg_i[C_FIRST_TOKEN_PREFILL] == 1
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
        nb = _select(
            done and drain,
            slot_i,
            res,
            queues,
            qhead,
            qlen,
            scal_i,
            cfg_i,
            cfg_f,
            thr,
            seg_of_stage,
            seg_entry,
            cnt,
            bsel,
            bchunk,
        )
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
        # Batch content and iteration time.
        kv = 0
        prefill = 0
        decodes = 0
        decode_kv = 0
        prefill_extra = 0.0
        has_prefill = False
        for b in range(nb):
            slot = bsel[b]
            stage = slot_i[I_STAGE, slot]
            if stage == 0:
                kv += slot_i[I_PREFILL_DONE, slot] + bchunk[b]
                prefill += bchunk[b]
                has_prefill = True
                if measured_timing:
                    prefill_extra += _prefill_chunk_time(tcoef, ttable, bchunk[b], slot_i[I_PREFILL_DONE, slot])
            else:
                kv += slot_i[I_PREFILL, slot] + stage
                decodes += 1
                decode_kv += slot_i[I_PREFILL, slot] + stage - 1  # cached tokens the step reads
        tau = 0.0
        if measured_timing:
            tau = _measured_tau(tcoef, ttable, prefill + decodes, decodes, float(decode_kv), prefill_extra)
        else:
            for p in range(coef.shape[0]):
                value = coef[p, 0] + coef[p, 1] * kv + coef[p, 2] * prefill + coef[p, 3] * nb
                if value > tau:
                    tau = value
        memory = scal_i[S_MEMORY]
        if memory > scal_i[S_PEAK_MEMORY]:
            scal_i[S_PEAK_MEMORY] = memory
        if memory > capacity:
            scal_i[S_OVERFLOW_ITERATIONS] += 1
        t_end = t + tau
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
                    if first_token_prefill and new_stage == 1:
                        new_stage = 2  # Vidur: the prefill iteration emits the first output token
                    if new_stage > slot_i[I_DECODE, slot]:
                        _complete(slot_i, slot_f, free, scal_i, scal_f, cfg_i, cfg_f, hist, comp_log, slot, t_end)
                        completions += 1
                        continue
                    slot_i[I_STAGE, slot] = new_stage
                    new_charge = _blocks(slot_i[I_PREFILL, slot] + new_stage, block)
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
                    new_charge = _blocks(slot_i[I_PREFILL, slot] + stage + 1, block)
                    scal_i[S_MEMORY] += new_charge - slot_i[I_CHARGE, slot]
                    slot_i[I_CHARGE, slot] = new_charge
        if completions > 0:
            kept = 0
            for r in range(scal_i[S_NRES]):
                slot = res[r]
                if slot_i[I_STATUS, slot] == STATUS_RESIDENT:
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
            scal_i[S_SERIES_COUNT] += 1
            if scal_i[S_SERIES_COUNT] == series.shape[0]:
                scal_i[S_CONSUMED] = ai
                return RC_SERIES_FULL
    scal_i[S_CONSUMED] = ai
    return RC_DONE
