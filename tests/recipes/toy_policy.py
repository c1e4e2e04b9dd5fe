"""A toy policy, written as docs/ARCHITECTURE.md's recipe says: one module, one registry call.

``one-at-a-time`` serves a single request from admission to completion, first come first served:
never more than one request's KV, so it never evicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluidopt._jit import selection_function
from fluidopt.sim.layout import I_TARGET, S_NRES
from fluidopt.sim.policies._base import KernelPack, PolicySpec, int_array
from fluidopt.sim.policies._compiled import add, add_running, admit, queue_pop_front


@dataclass(frozen=True)
class OneAtATimePolicy:
    """Serve one request at a time (module docstring)."""

    name: str = field(default="one-at-a-time", init=False)

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        return KernelPack(int_array(0))

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.name}


@selection_function
def select_one_at_a_time(
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
    """The resident request if there is one, else the head of the queue."""
    nb = add_running(slot_i, res, scal_i, bsel, bchunk, 0, 1, False)
    if scal_i[S_NRES] == 0 and qlen[0] > 0:
        slot = queue_pop_front(queues, qhead, qlen, 0)
        admit(slot_i, res, scal_i, cfg_i, slot)
        nb = add(bsel, bchunk, nb, slot, slot_i[I_TARGET, slot])
    return nb


SPECS = (PolicySpec("one-at-a-time", "one request at a time (a recipe's toy)", OneAtATimePolicy, OneAtATimePolicy),)
SELECT = select_one_at_a_time
