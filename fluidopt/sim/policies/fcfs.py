"""Greedy first-come-first-served: the paper's counterexample (arXiv:2504.11320, section 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluidopt._jit import selection_function
from fluidopt.sim.layout import C_BLOCK, C_CAPACITY, I_TARGET, S_MEMORY, S_NRES
from fluidopt.sim.policies._base import MAX_BATCH_KNOB, KernelPack, PolicySpec, int_array, validate_fields
from fluidopt.sim.policies._compiled import add, add_running, admit, blocks, evict, queue_peek, queue_pop_front

P_MAX_BATCH = 0


@dataclass(frozen=True)
class FCFSPolicy:
    """Greedy FCFS admission while memory allows; last-in-first-out eviction on overflow."""

    max_batch: int = 0
    name: str = field(default="fcfs", init=False)

    def __post_init__(self) -> None:
        validate_fields(self, {"max_batch": ("whole", 0)})

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """The batch cap."""
        return KernelPack(int_array(self.max_batch))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {"policy": self.name, "max_batch": self.max_batch}


@selection_function
def select_fcfs(
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
    """Evict LIFO on overflow, run every resident, admit while memory allows."""
    capacity = cfg_i[C_CAPACITY]
    while scal_i[S_MEMORY] > capacity and scal_i[S_NRES] > 0:
        evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, scal_i[S_NRES] - 1)
    cap = p_i[P_MAX_BATCH]
    nb = add_running(slot_i, res, scal_i, bsel, bchunk, 0, cap, False)
    while qlen[0] > 0 and (cap == 0 or nb < cap):
        slot = queue_peek(queues, qhead, 0, 0)
        if scal_i[S_MEMORY] + blocks(slot_i[I_TARGET, slot], cfg_i[C_BLOCK]) > capacity:
            break
        queue_pop_front(queues, qhead, qlen, 0)
        admit(slot_i, res, scal_i, cfg_i, slot)
        nb = add(bsel, bchunk, nb, slot, slot_i[I_TARGET, slot])
    return nb


SPECS = (
    PolicySpec(
        "fcfs",
        "greedy FCFS admission, LIFO eviction (the paper's counterexample)",
        FCFSPolicy,
        FCFSPolicy,
        knobs=(MAX_BATCH_KNOB,),
        baseline=True,
    ),
)
SELECT = select_fcfs
