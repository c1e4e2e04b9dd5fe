"""Nested WAIT (arXiv:2504.11320, section 5): segments of decode stages with nested thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt._jit import selection_function
from fluidopt.errors import InputError, require
from fluidopt.sim.layout import C_BLOCK, C_CAPACITY, I_CHARGE, I_STAGE, I_TARGET, S_MEMORY, S_NRES
from fluidopt.sim.policies._base import (
    FluidDesign,
    KernelPack,
    PolicySpec,
    int_array,
    require_thresholds,
    segment_arrays,
    whole_tuple,
)
from fluidopt.sim.policies._compiled import add, admit, blocks, evict, queue_peek, queue_pop_front, remaining_prefill

# params_i layout
P_HOLD = 0
P_REPAIR = 1
P_SEGMENTS = 2
P_ARRAYS = 3  # K thresholds, K entry stages, then the segment of each stage 0..max_stage+1


@dataclass(frozen=True)
class NestedWaitPolicy:
    """Nested WAIT: segments ending at ``boundaries`` (decode stages).

    Segment 1 covers stages ``0..boundaries[0]``; segment k covers
    ``boundaries[k-2]+1..boundaries[k-1]``.  ``thresholds[k]`` is segment k's entry threshold and
    per-stage cap.  ``repair`` evicts the most recently admitted boundary-queue requests when
    memory would exceed C (the paper's latest version).  ``hold=True`` is the algorithm exactly
    (docs/theory.md, Nested WAIT): only the segments admitted by the prefix rule run.
    ``hold=False`` lets the interior stages of the other segments keep decoding (entry stages
    still wait for their thresholds).
    """

    boundaries: tuple[int, ...]
    thresholds: tuple[int, ...]
    repair: bool = False
    hold: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "boundaries", whole_tuple(self.boundaries, "boundaries", 1))
        object.__setattr__(self, "thresholds", whole_tuple(self.thresholds, "thresholds", 1))
        require(
            len(self.boundaries) == len(self.thresholds),
            "thresholds",
            list(self.thresholds),
            f"needs one threshold per segment ({len(self.boundaries)})",
        )
        require(
            all(b > a for a, b in zip(self.boundaries, self.boundaries[1:])),
            "boundaries",
            list(self.boundaries),
            "must increase",
        )

    @property
    def name(self) -> str:
        """``nested-wait``, or ``nested-wait-nohold`` with ``hold=False``."""
        return "nested-wait" if self.hold else "nested-wait-nohold"

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """Thresholds, entry stages and the stage-to-segment map."""
        require(
            self.boundaries[-1] >= max_stage,
            "boundaries",
            list(self.boundaries),
            f"the last segment must reach the longest decode length ({max_stage})",
        )
        seg_entry, seg_of_stage = segment_arrays(self.boundaries, max_stage)
        params = int_array(self.hold, self.repair, len(self.boundaries), self.thresholds, seg_entry, seg_of_stage)
        return KernelPack(params)

    @classmethod
    def from_document(cls, document: dict[str, Any], where: str, workload: Any = None) -> NestedWaitPolicy:
        """The policy of a thresholds file's table (``boundaries``, ``thresholds``, optional ``repair``)."""
        require_thresholds(document, where)
        require("boundaries" in document, f"{where}: boundaries", None, "is required for nested-wait")
        return cls(document["boundaries"], document["thresholds"], bool(document.get("repair", False)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "boundaries": list(self.boundaries),
            "thresholds": list(self.thresholds),
            "repair": self.repair,
            "hold": self.hold,
        }


@selection_function
def select_nested_wait(
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
    """The prefix rule over segments, optional memory repair (docs/theory.md, Nested WAIT)."""
    segments = p_i[P_SEGMENTS]
    thr = p_i[P_ARRAYS : P_ARRAYS + segments]
    seg_entry = p_i[P_ARRAYS + segments : P_ARRAYS + 2 * segments]
    seg_of_stage = p_i[P_ARRAYS + 2 * segments :]
    capacity = cfg_i[C_CAPACITY]
    if p_i[P_REPAIR] == 1:
        projected = scal_i[S_MEMORY]
        if qlen[0] >= thr[0] or flush:
            for k in range(min(thr[0], qlen[0])):
                projected += blocks(slot_i[I_TARGET, queue_peek(queues, qhead, 0, k)], cfg_i[C_BLOCK])
        position = scal_i[S_NRES] - 1
        while projected > capacity and position >= 0:
            slot = res[position]
            stage = slot_i[I_STAGE, slot]
            segment = seg_of_stage[stage]
            if segment > 0 and stage == seg_entry[segment]:
                projected -= slot_i[I_CHARGE, slot]
                evict(slot_i, res, queues, qhead, qlen, scal_i, cfg_i, position)
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
    hold = p_i[P_HOLD] == 1
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
            chunk = remaining_prefill(slot_i, slot) if stage == 0 else 0
            nb = add(bsel, bchunk, nb, slot, chunk)
    take = min(thr[0] - cnt[0, 0], qlen[0]) if top > 0 else 0
    for _ in range(take):
        slot = queue_pop_front(queues, qhead, qlen, 0)
        admit(slot_i, res, scal_i, cfg_i, slot)
        nb = add(bsel, bchunk, nb, slot, remaining_prefill(slot_i, slot))
    for b in range(nb):
        cnt[0, slot_i[I_STAGE, bsel[b]]] = 0
    return nb


def _build(name: str) -> Any:
    def build(**options: Any) -> NestedWaitPolicy:
        for key in ("boundaries", "thresholds"):
            if key not in options:
                raise InputError(key, None, f"policy {name} needs boundaries and thresholds")
        unknown = sorted(set(options) - {"boundaries", "thresholds", "repair"})
        if unknown:
            raise InputError(unknown[0], options[unknown[0]], f"is not a setting of policy {name}")
        return NestedWaitPolicy(
            options["boundaries"], options["thresholds"], bool(options.get("repair", False)), hold=name == "nested-wait"
        )

    return build


SPECS = (
    PolicySpec(
        "nested-wait",
        "Nested WAIT (section 5): segment thresholds for unknown lengths",
        NestedWaitPolicy,
        _build("nested-wait"),
        fluid=FluidDesign(
            "nested-wait",
            "fluidopt.thresholds.designs:design_nested_wait",
            "fluidopt.experiments.tune:nested_grid",
            (),
            nested=True,
        ),
    ),
    PolicySpec(
        "nested-wait-nohold",
        "Nested WAIT whose interior stages keep decoding",
        NestedWaitPolicy,
        _build("nested-wait-nohold"),
        fluid=FluidDesign(
            "nested-wait",
            "fluidopt.thresholds.designs:design_nested_wait",
            "fluidopt.experiments.tune:nested_grid",
            (("hold", False),),
            nested=True,
        ),
    ),
)
SELECT = select_nested_wait
