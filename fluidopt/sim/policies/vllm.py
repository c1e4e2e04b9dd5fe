"""vLLM v0 as modelled in Vidur (docs/theory.md, baselines): prefill-only or decode-only iterations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluidopt._jit import selection_function
from fluidopt.sim.layout import C_BLOCK, C_CAPACITY, I_TARGET, S_MEMORY, S_NRES
from fluidopt.sim.policies._base import (
    BLOCK_SIZE_KNOB,
    MAX_BATCH_KNOB,
    WATERMARK_KNOB,
    KernelPack,
    Knob,
    PolicySpec,
    int_array,
    validate_fields,
)
from fluidopt.sim.policies._compiled import (
    add_running,
    admit,
    blocks,
    evict_latest_arrived_while_over,
    free_blocks,
    queue_peek,
    queue_pop_front,
    watermark_blocks,
)

P_MAX_BATCH = 0
P_MAX_TOKENS = 1
VLLM_BATCH_CAPS = (64, 128, 256)


@dataclass(frozen=True)
class VLLMPolicy:
    """vLLM v0 / Vidur: watermark admission, padded-token limit, latest arrival preempted.

    A step admits waiting requests FCFS while the batch cap, the padded prefill tokens
    (longest prompt x prompts, ``max_tokens``) and the watermark allow, and runs their whole
    prefills alone; otherwise every resident decodes.
    """

    block_size: int = 16
    watermark: float = 0.01
    max_batch: int = 128
    max_tokens: int = 4096
    name: str = field(default="vllm", init=False)

    def __post_init__(self) -> None:
        validate_fields(
            self,
            {
                "block_size": ("whole", 1),
                "watermark": ("fraction", 0),
                "max_batch": ("whole", 0),
                "max_tokens": ("whole", 1),
            },
        )

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """Batch cap and padded-token limit."""
        return KernelPack(
            int_array(self.max_batch, self.max_tokens), block_size=self.block_size, watermark=self.watermark
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "block_size": self.block_size,
            "watermark": self.watermark,
            "max_batch": self.max_batch,
            "max_tokens": self.max_tokens,
        }


@selection_function
def select_vllm(
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
    """Prefill-only iterations when requests are admitted, else decode-only."""
    if scal_i[S_MEMORY] > cfg_i[C_CAPACITY]:  # the check inline, the (rare) preemption a call
        evict_latest_arrived_while_over(slot_i, res, queues, qhead, qlen, scal_i, cfg_i)
    cap = p_i[P_MAX_BATCH]
    block = cfg_i[C_BLOCK]
    watermark = watermark_blocks(cfg_i, cfg_f)
    nb = 0
    longest = 0
    while qlen[0] > nb:
        slot = queue_peek(queues, qhead, 0, nb)
        target = slot_i[I_TARGET, slot]
        if cap > 0 and scal_i[S_NRES] + 1 > cap:
            break
        padded = max(longest, target) * (nb + 1)
        if padded > p_i[P_MAX_TOKENS] and nb > 0:
            break
        if free_blocks(scal_i, cfg_i) - blocks(target, block) // block < watermark:
            break
        longest = max(longest, target)
        nb += 1
        admit(slot_i, res, scal_i, cfg_i, slot)
    if nb > 0:
        for b in range(nb):
            slot = queue_pop_front(queues, qhead, qlen, 0)
            bsel[b] = slot
            bchunk[b] = slot_i[I_TARGET, slot]
        return nb
    return add_running(slot_i, res, scal_i, bsel, bchunk, 0, 0, False)


def _grid() -> list[tuple[Any, dict[str, Any]]]:
    return [(VLLMPolicy(max_batch=cap), {"max_batch": cap}) for cap in VLLM_BATCH_CAPS]


SPECS = (
    PolicySpec(
        "vllm",
        "vLLM v0 as in Vidur: prefill-only iterations, 4,096 padded tokens, cap 128",
        VLLMPolicy,
        VLLMPolicy,
        knobs=(
            MAX_BATCH_KNOB,
            BLOCK_SIZE_KNOB,
            WATERMARK_KNOB,
            Knob("--max-tokens", "max_tokens", int, "vllm: padded prefill tokens per iteration"),
        ),
        baseline=True,
        grid=_grid,
    ),
)
SELECT = select_vllm
