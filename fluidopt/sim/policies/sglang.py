"""SGLang's scheduler: separate prefill and decode steps, KV reserved for future tokens, retraction.

Followed from SGLang's ``python/sglang/srt/managers/scheduler.py`` (``get_next_batch_to_run``,
``get_new_batch_prefill``, ``update_running_batch``, the idle self-check),
``schedule_policy.py`` (``PrefillAdder``: ``add_chunked_req``, ``add_one_req``) and
``schedule_batch.py`` (``check_decode_mem``, ``retract_decode``), 2025-2026 versions:

1. A step is a prefill batch or a decode batch.  The scheduler first tries to form a prefill
   batch; if one forms it runs (with ``enable_mixed_chunk`` the running decodes join it),
   otherwise the running requests decode.
2. Prefill admission, FCFS, stops at ``max_running_requests``.  Room counted for admission:
   free KV tokens minus, over the running requests, ``min(max_new_tokens - generated, 4096) x
   new_token_ratio``.  A request that is continued in chunks goes first and takes
   ``min(rest, chunked_prefill_size, room)``.  A new request needs its prompt plus
   ``min(max_new_tokens, 4096)`` (strictly less than the room), and its prompt must fit in the
   ``max_prefill_tokens`` left unless it is the first of the batch; a prompt longer than the
   chunk left is cut to it (charging no output tokens) and continues next step as the one
   chunked request.  Only the prompt tokens are allocated.
3. ``new_token_ratio`` starts at ``min(0.7 x schedule_conservativeness, 1)`` and falls by
   ``(initial - floor) / 600`` per decode step that found memory, to a floor of 0.14 x the
   initial value; it is reset to the initial value whenever the server is idle.
4. A decode step that cannot give each running request its next token retracts requests, fewest
   generated tokens first (ties: longest prompt, then the latest in the batch), at least one and
   until the free tokens cover 20 (``retract_decode_steps``) per survivor or one survivor is
   left; retracted requests lose their KV, go to the back of the waiting queue and recompute
   prompt plus generated tokens later.  The ratio becomes
   ``min(1, (sum generated + 20 x survivors) / (sum max_new_tokens + 1))`` over the survivors.
5. Memory is counted in pages of ``page_size`` tokens (1, SGLang's default).

Where ../shared/ENGINES.md is silent the code decided: retracted requests go to the back of the
queue (``waiting_queue.extend``), and the ratio resets on idle.  Prefix caching (the radix
cache) is not modelled: every prompt is computed in full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt._jit import kernel_function, selection_function
from fluidopt.sim.layout import (
    C_BLOCK,
    C_CAPACITY,
    I_CHARGE,
    I_MAX_NEW,
    I_PREFILL,
    I_PREFILL_DONE,
    I_STAGE,
    I_TARGET,
    S_MEMORY,
    S_NRES,
)
from fluidopt.sim.policies._base import KernelPack, Knob, PolicySpec, int_array, validate_fields
from fluidopt.sim.policies._compiled import (
    add,
    admit_charged,
    blocks,
    evict_to,
    queue_peek,
    queue_pop_front,
    recharge,
    remaining_prefill,
)

# params_i layout
P_MAX_RUNNING = 0
P_CHUNKED_PREFILL = 1
P_MAX_PREFILL = 2
P_MIXED = 3
P_CLIP = 4
P_RETRACT_STEPS = 5
# params_f layout
F_INIT_RATIO = 0
F_MIN_RATIO = 1
F_DECAY = 2
# state_f layout
ST_RATIO = 0

CLIP_MAX_NEW_TOKENS = 4096  # SGLang's CLIP_MAX_NEW_TOKENS (schedule_policy.py)
RETRACT_DECODE_STEPS = 20  # global_config.retract_decode_steps
INIT_NEW_TOKEN_RATIO = 0.7  # global_config.default_init_new_token_ratio
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14  # global_config.default_min_new_token_ratio_factor
NEW_TOKEN_RATIO_DECAY_STEPS = 600  # global_config.default_new_token_ratio_decay_steps
DEFAULT_MAX_PREFILL_TOKENS = 16384
# chunked_prefill_size by GPU memory (ServerArgs): 2048 below 35 GB, 8192 up to 160 GB.
DEFAULT_CHUNKED_PREFILL_SIZE = 8192
SMALL_GPU_CHUNKED_PREFILL_SIZE = 2048
REQUEST_POOL_LIMIT = 4096
GRID_MAX_RUNNING = (64, 256)
GRID_CONSERVATIVENESS = (0.3, 1.0)


def default_max_running_requests(kv_capacity_tokens: int) -> int:
    """SGLang's default: KV tokens // 2, capped by the request pool (4,096 here)."""
    return max(1, min(kv_capacity_tokens // 2, REQUEST_POOL_LIMIT))


@dataclass(frozen=True)
class SGLangPolicy:
    """SGLang's scheduler with SGLang's knob names.

    Parameters
    ----------
    max_running_requests : int
        Most running requests (0: SGLang's default, ``min(KV tokens // 2, 4096)``).
    chunked_prefill_size : int
        Most prompt tokens one request gets per prefill step (8,192: GPUs of 35-160 GB).
    max_prefill_tokens : int
        Prompt tokens per prefill step (16,384).
    schedule_conservativeness : float
        Scales the initial ``new_token_ratio`` (``min(0.7 x c, 1)``); higher reserves more.
    enable_mixed_chunk : bool
        Running decodes join prefill steps.
    page_size : int
        KV page size in tokens (1).

    """

    max_running_requests: int = 0
    chunked_prefill_size: int = DEFAULT_CHUNKED_PREFILL_SIZE
    max_prefill_tokens: int = DEFAULT_MAX_PREFILL_TOKENS
    schedule_conservativeness: float = 1.0
    enable_mixed_chunk: bool = False
    page_size: int = 1
    name: str = field(default="sglang", init=False)

    def __post_init__(self) -> None:
        validate_fields(
            self,
            {
                "max_running_requests": ("whole", 0),
                "chunked_prefill_size": ("whole", 1),
                "max_prefill_tokens": ("whole", 1),
                "schedule_conservativeness": ("positive", 0.0),
                "enable_mixed_chunk": ("flag", 0),
                "page_size": ("whole", 1),
            },
        )

    @property
    def init_new_token_ratio(self) -> float:
        """``min(0.7 x schedule_conservativeness, 1)``."""
        return min(INIT_NEW_TOKEN_RATIO * self.schedule_conservativeness, 1.0)

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """The knobs, the ratio schedule and its state; engine token accounting, recompute."""
        init = self.init_new_token_ratio
        floor = min(init * MIN_NEW_TOKEN_RATIO_FACTOR, 1.0)
        params_i = int_array(
            self.max_running_requests,
            self.chunked_prefill_size,
            self.max_prefill_tokens,
            self.enable_mixed_chunk,
            CLIP_MAX_NEW_TOKENS,
            RETRACT_DECODE_STEPS,
        )
        params_f = np.array([init, floor, (init - floor) / NEW_TOKEN_RATIO_DECAY_STEPS])
        return KernelPack(
            params_i,
            params_f,
            state_f=np.array([init]),
            block_size=self.page_size,
            engine_tokens=True,
            eviction="recompute",
        )

    def resolved(self, kv_capacity_tokens: int) -> SGLangPolicy:
        """The policy with ``max_running_requests`` resolved against a KV capacity."""
        if self.max_running_requests > 0:
            return self
        from dataclasses import replace

        return replace(self, max_running_requests=default_max_running_requests(kv_capacity_tokens))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (SGLang's names)."""
        return {
            "policy": self.name,
            "max_running_requests": self.max_running_requests,
            "chunked_prefill_size": self.chunked_prefill_size,
            "max_prefill_tokens": self.max_prefill_tokens,
            "schedule_conservativeness": self.schedule_conservativeness,
            "init_new_token_ratio": self.init_new_token_ratio,
            "enable_mixed_chunk": self.enable_mixed_chunk,
            "page_size": self.page_size,
        }


@kernel_function
def _free_tokens(scal_i, cfg_i):
    block = cfg_i[C_BLOCK]
    return ((cfg_i[C_CAPACITY] - scal_i[S_MEMORY]) // block) * block


@kernel_function
def _output_room(slot_i, slot, clip):
    """``min(max_new_tokens - generated, clip)`` of a running request."""
    left = slot_i[I_MAX_NEW, slot] - (slot_i[I_STAGE, slot] - 1)
    if left < 0:
        left = 0
    return left if left < clip else clip


@kernel_function
def _retract_victim(slot_i, res, nres):
    """Position of the decoding request with the fewest generated tokens (ties: longest prompt, latest)."""
    best = -1
    for r in range(nres):
        slot = res[r]
        stage = slot_i[I_STAGE, slot]
        if stage < 1:
            continue
        if best < 0:
            best = r
            continue
        other = res[best]
        if stage < slot_i[I_STAGE, other] or (
            stage == slot_i[I_STAGE, other] and slot_i[I_PREFILL, slot] >= slot_i[I_PREFILL, other]
        ):
            best = r
    return best


@kernel_function
def _prefill_batch(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, p_i, st_f, bsel, bchunk, running):
    """The prefill batch ``get_new_batch_prefill`` forms (rule 2); returns its size."""
    block = cfg_i[C_BLOCK]
    clip = p_i[P_CLIP]
    ratio = st_f[ST_RATIO]
    nres = scal_i[S_NRES]
    mixed = running if p_i[P_MIXED] == 1 else 0
    reserve = 0.0
    chunked = -1
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] >= 1:
            reserve += _output_room(slot_i, slot, clip) * ratio
        else:
            chunked = slot
    room = _free_tokens(scal_i, cfg_i) - reserve
    rem_input = p_i[P_MAX_PREFILL] - mixed
    rem_chunk = p_i[P_CHUNKED_PREFILL] - mixed
    nb = 0
    if chunked >= 0:
        rest = remaining_prefill(slot_i, chunked)
        take = rest
        if take > rem_chunk:
            take = rem_chunk
        if take > room:
            take = int(math.floor(room))
        take = (take // block) * block if take < rest else take
        if take <= 0:
            return 0
        recharge(slot_i, scal_i, chunked, slot_i[I_PREFILL_DONE, chunked] + take, block)
        nb = add(bsel, bchunk, nb, chunked, take)
        if take < rest:
            return nb
        room -= take + min(slot_i[I_MAX_NEW, chunked], clip)
        rem_input -= take
        rem_chunk -= take
    limit = p_i[P_MAX_RUNNING]
    if limit == 0:
        limit = min(cfg_i[C_CAPACITY] // 2, REQUEST_POOL_LIMIT)
    while qlen[0] > 0 and scal_i[S_NRES] < limit:
        slot = queue_peek(queues, qhead, 0, 0)
        prompt = slot_i[I_TARGET, slot]
        total = prompt + min(slot_i[I_MAX_NEW, slot], clip)
        if total >= room:
            break
        if prompt > rem_input and nb > 0:
            break
        if prompt <= rem_chunk:
            queue_pop_front(queues, qhead, qlen, 0)
            admit_charged(slot_i, res, scal_i, slot, blocks(prompt, block))
            nb = add(bsel, bchunk, nb, slot, prompt)
            room -= total
            rem_input -= prompt
            rem_chunk -= prompt
        else:
            take = (rem_chunk // block) * block
            if take <= 0:
                break
            queue_pop_front(queues, qhead, qlen, 0)
            admit_charged(slot_i, res, scal_i, slot, blocks(take, block))
            nb = add(bsel, bchunk, nb, slot, take)
            break
    return nb


@selection_function
def select_sglang(
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
    """One SGLang scheduler loop (module docstring, rules 1-5)."""
    block = cfg_i[C_BLOCK]
    running = 0
    chunked = False
    for r in range(scal_i[S_NRES]):
        if slot_i[I_STAGE, res[r]] >= 1:
            running += 1
        else:
            chunked = True
    nb = 0
    if qlen[0] > 0 or chunked:
        nb = _prefill_batch(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, p_i, st_f, bsel, bchunk, running)
    if nb > 0:
        if p_i[P_MIXED] == 1 and running > 0 and _free_tokens(scal_i, cfg_i) >= running * block:
            for r in range(scal_i[S_NRES]):
                slot = res[r]
                if slot_i[I_STAGE, slot] >= 1:
                    recharge(slot_i, scal_i, slot, slot_i[I_PREFILL, slot] + slot_i[I_STAGE, slot] - 1, block)
                    nb = add(bsel, bchunk, nb, slot, 0)
        return nb
    if running == 0:
        st_f[ST_RATIO] = p_f[F_INIT_RATIO]  # idle: the self-check re-initialises the ratio
        return 0
    need = 0
    for r in range(scal_i[S_NRES]):
        slot = res[r]
        if slot_i[I_STAGE, slot] >= 1:
            tokens = slot_i[I_PREFILL, slot] + slot_i[I_STAGE, slot] - 1
            need += blocks(tokens, block) - slot_i[I_CHARGE, slot]
    if _free_tokens(scal_i, cfg_i) < need:
        first = True
        while first or _free_tokens(scal_i, cfg_i) < running * p_i[P_RETRACT_STEPS] * block:
            if running <= 1:
                break
            first = False
            victim = _retract_victim(slot_i, res, scal_i[S_NRES])
            evict_to(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, victim, False)
            running -= 1
        generated = 0
        max_new = 0
        for r in range(scal_i[S_NRES]):
            slot = res[r]
            if slot_i[I_STAGE, slot] >= 1:
                generated += slot_i[I_STAGE, slot] - 1
                max_new += slot_i[I_MAX_NEW, slot]
        estimate = (generated + p_i[P_RETRACT_STEPS] * running) / (max_new + 1.0)
        st_f[ST_RATIO] = estimate if estimate < 1.0 else 1.0
    else:
        ratio = st_f[ST_RATIO] - p_f[F_DECAY]
        st_f[ST_RATIO] = ratio if ratio > p_f[F_MIN_RATIO] else p_f[F_MIN_RATIO]
    for r in range(scal_i[S_NRES]):
        slot = res[r]
        if slot_i[I_STAGE, slot] >= 1:
            tokens = slot_i[I_PREFILL, slot] + slot_i[I_STAGE, slot] - 1
            grow = blocks(tokens, block) - slot_i[I_CHARGE, slot]
            if grow > _free_tokens(scal_i, cfg_i):
                continue  # no room even after retraction (one survivor): it waits with its KV
            recharge(slot_i, scal_i, slot, tokens, block)
            nb = add(bsel, bchunk, nb, slot, 0)
    return nb


def _grid() -> list[tuple[Any, dict[str, Any]]]:
    return [
        (
            SGLangPolicy(max_running_requests=cap, schedule_conservativeness=c),
            {"max_running_requests": cap, "schedule_conservativeness": c},
        )
        for cap in GRID_MAX_RUNNING
        for c in GRID_CONSERVATIVENESS
    ]


SPECS = (
    PolicySpec(
        "sglang",
        "SGLang: prefill or decode steps, new_token_ratio reservation, retraction",
        SGLangPolicy,
        SGLangPolicy,
        knobs=(
            Knob(
                "--max-running-requests",
                "max_running_requests",
                int,
                "sglang: most running requests (default 0: min(KV tokens // 2, 4096))",
            ),
            Knob("--chunked-prefill-size", "chunked_prefill_size", int, "sglang: prompt tokens per chunk (8192)"),
            Knob("--max-prefill-tokens", "max_prefill_tokens", int, "sglang: prompt tokens per prefill step (16384)"),
            Knob(
                "--schedule-conservativeness",
                "schedule_conservativeness",
                float,
                "sglang: scales the initial new_token_ratio min(0.7 c, 1) (default 1.0)",
            ),
            Knob("--enable-mixed-chunk", "enable_mixed_chunk", bool, "sglang: decodes join prefill steps", const=True),
            Knob("--page-size", "page_size", int, "sglang: KV page size in tokens (1)"),
        ),
        baseline=True,
        grid=_grid,
        engine="sglang",
    ),
)
SELECT = select_sglang
