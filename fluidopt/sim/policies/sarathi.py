"""Sarathi-Serve style chunked prefill with a per-iteration token budget, as in Vidur."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluidopt._jit import selection_function
from fluidopt.sim.layout import C_BLOCK, C_CAPACITY, I_STAGE, I_TARGET, S_MEMORY, S_NRES
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
    add,
    admit,
    blocks,
    evict_latest_arrived_while_over,
    free_blocks,
    queue_peek,
    queue_pop_front,
    remaining_prefill,
    watermark_blocks,
)

P_MAX_BATCH = 0
P_TOKEN_BUDGET = 1
SARATHI_BUDGETS = (256, 512, 1024, 2048)


@dataclass(frozen=True)
class SarathiPolicy:
    """Sarathi-Serve style chunked prefill with a per-iteration token budget.

    As in Vidur: the budget counts decodes (one token each) as well as prefill chunks, running
    decodes go first, then partial prefills, then new requests FCFS; batch cap 512.  (Sarathi-
    Serve itself also caps the chunk per request separately; Vidur's budget is the only cap.)
    """

    token_budget: int = 512
    block_size: int = 16
    watermark: float = 0.01
    max_batch: int = 512
    name: str = field(default="sarathi", init=False)

    def __post_init__(self) -> None:
        validate_fields(
            self,
            {
                "token_budget": ("whole", 1),
                "block_size": ("whole", 1),
                "watermark": ("fraction", 0),
                "max_batch": ("whole", 0),
            },
        )

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """Batch cap and token budget."""
        return KernelPack(
            int_array(self.max_batch, self.token_budget), block_size=self.block_size, watermark=self.watermark
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "token_budget": self.token_budget,
            "block_size": self.block_size,
            "watermark": self.watermark,
            "max_batch": self.max_batch,
        }


@selection_function
def select_sarathi(
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
    """A token budget filled by decodes, then partial prefills, then new requests FCFS."""
    if scal_i[S_MEMORY] > cfg_i[C_CAPACITY]:  # the check inline, the (rare) preemption a call
        evict_latest_arrived_while_over(slot_i, res, queues, qhead, qlen, scal_i, cfg_i)
    cap = p_i[P_MAX_BATCH]
    budget = p_i[P_TOKEN_BUDGET]
    block = cfg_i[C_BLOCK]
    watermark = watermark_blocks(cfg_i, cfg_f)
    nb = 0
    nres = scal_i[S_NRES]
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] >= 1 and budget > 0 and (cap == 0 or nb < cap):
            nb = add(bsel, bchunk, nb, slot, 0)
            budget -= 1
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] == 0 and budget > 0 and (cap == 0 or nb < cap):
            chunk = min(remaining_prefill(slot_i, slot), budget)
            nb = add(bsel, bchunk, nb, slot, chunk)
            budget -= chunk
    while qlen[0] > 0 and budget > 0 and (cap == 0 or nb < cap):
        slot = queue_peek(queues, qhead, 0, 0)
        target = slot_i[I_TARGET, slot]
        if free_blocks(scal_i, cfg_i) - blocks(target, block) // block < watermark:
            break
        queue_pop_front(queues, qhead, qlen, 0)
        admit(slot_i, res, scal_i, cfg_i, slot)
        chunk = min(target, budget)
        nb = add(bsel, bchunk, nb, slot, chunk)
        budget -= chunk
    return nb


def _grid() -> list[tuple[Any, dict[str, Any]]]:
    return [(SarathiPolicy(token_budget=budget), {"token_budget": budget}) for budget in SARATHI_BUDGETS]


SPECS = (
    PolicySpec(
        "sarathi",
        "Sarathi as in Vidur: a 512-token budget that counts decodes, batch cap 512",
        SarathiPolicy,
        SarathiPolicy,
        knobs=(
            MAX_BATCH_KNOB,
            BLOCK_SIZE_KNOB,
            WATERMARK_KNOB,
            Knob("--token-budget", "token_budget", int, "sarathi: tokens per iteration"),
        ),
        baseline=True,
        grid=_grid,
    ),
)
SELECT = select_sarathi
