"""WAIT (arXiv:2504.11320, Algorithm 1), its no-hold variant and the no-wait ablation.

Per class j a threshold ``n_j``: a class is admitted once ``n_j`` requests wait in its queue, and
at most ``n_j`` residents of class j run per stage.  The selection function also records the
WAIT invariant (docs/theory.md): residents of class j at one decode stage never exceed ``n_j``;
the largest excess seen is the result's ``max_stage_excess`` (0 or less when the invariant holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt._jit import selection_function
from fluidopt.errors import InputError, require
from fluidopt.sim.layout import I_CLASS, I_STAGE, S_NRES, S_STAGE_EXCESS
from fluidopt.sim.policies._base import FluidDesign, KernelPack, PolicySpec, int_array, require_thresholds, whole_tuple
from fluidopt.sim.policies._compiled import add, admit, queue_pop_front, remaining_prefill

# params_i layout
P_GATE = 0  # 1: the accumulation gate (WAIT), 0: the no-wait ablation
P_HOLD = 1  # 1: residents of ineligible classes wait with their cache
P_CLASSES = 2
P_STAGES = 3  # stages 0..max_stage+1 (the row length of the invariant's counts in state_i)
P_CAPS = 4  # m admission / per-stage caps, then m invariant caps


@dataclass(frozen=True)
class WaitPolicy:
    """WAIT: per-class thresholds ``n_j``, entry gate and per-stage cap.

    ``gate=False`` is the no-wait ablation (same caps, classes run whenever they have work).
    ``hold=True`` is the algorithm exactly (docs/theory.md, WAIT): residents of a class that is
    not eligible wait with their cache kept.  ``hold=False`` lets them keep decoding (still at
    most ``n_j`` per stage; only admissions wait for the gate), which avoids stalls when
    ``lambda_j dT`` is far below one request per iteration.
    """

    thresholds: tuple[int, ...]
    gate: bool = True
    hold: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", whole_tuple(self.thresholds, "thresholds", 1))

    @property
    def name(self) -> str:
        """``wait``, ``wait-nohold`` (``hold=False``) or ``wait-nowait`` (``gate=False``)."""
        if not self.gate:
            return "wait-nowait"
        return "wait" if self.hold else "wait-nohold"

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """Caps per class (admission and the invariant's, equal for WAIT itself)."""
        require(
            len(self.thresholds) == workload.num_classes,
            "thresholds",
            list(self.thresholds),
            f"needs one threshold per class ({workload.num_classes})",
        )
        caps = self.thresholds
        stages = max_stage + 2
        return KernelPack(
            int_array(self.gate, self.hold, len(caps), stages, caps, caps),
            state_i=np.zeros(len(caps) * stages, dtype=np.int64),
            per_class_queues=True,
            tracks_stage_excess=True,
        )

    @classmethod
    def from_document(cls, document: dict[str, Any], where: str, workload: Any = None) -> WaitPolicy:
        """The policy of a thresholds file's table (``thresholds``; ``classes`` checked against ``workload``)."""
        require_thresholds(document, where)
        if workload is not None and "classes" in document:
            require(
                list(document["classes"]) == list(workload.class_names),
                f"{where}: classes",
                document["classes"],
                f"do not match the workload's classes {list(workload.class_names)}",
            )
        return cls(document["thresholds"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {"policy": self.name, "thresholds": list(self.thresholds), "hold": self.hold}


@selection_function
def select_wait(
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
    """WAIT's batch: eligible classes run at most ``n_j`` per stage, then admit up to ``n_j`` new requests."""
    m = p_i[P_CLASSES]
    thr = p_i[P_CAPS : P_CAPS + m]
    gate = p_i[P_GATE] == 1
    hold = p_i[P_HOLD] == 1
    nres = scal_i[S_NRES]
    stages = p_i[P_STAGES]
    invariant = p_i[P_CAPS + m : P_CAPS + 2 * m]
    resident_count = np.zeros(m, np.int64)
    for r in range(nres):
        slot = res[r]
        j = slot_i[I_CLASS, slot]
        resident_count[j] += 1
        stage = slot_i[I_STAGE, slot]
        if stage >= 1:  # the WAIT invariant: residents of class j at one decode stage vs n_j
            at = j * stages + stage
            st_i[at] += 1
            if st_i[at] - invariant[j] > scal_i[S_STAGE_EXCESS]:
                scal_i[S_STAGE_EXCESS] = st_i[at] - invariant[j]
    eligible = np.zeros(m, np.bool_)
    for j in range(m):
        if gate and not flush:
            eligible[j] = qlen[j] >= thr[j]
        else:
            eligible[j] = qlen[j] >= 1 or resident_count[j] > 0
    nb = 0
    for r in range(nres):
        slot = res[r]
        j = slot_i[I_CLASS, slot]
        if eligible[j] or (not hold and slot_i[I_STAGE, slot] >= 1):
            stage = slot_i[I_STAGE, slot]
            if cnt[j, stage] < thr[j]:
                cnt[j, stage] += 1
                chunk = remaining_prefill(slot_i, slot) if stage == 0 else 0
                nb = add(bsel, bchunk, nb, slot, chunk)
    for j in range(m):
        if eligible[j]:
            take = min(thr[j] - cnt[j, 0], qlen[j])
            for _ in range(take):
                slot = queue_pop_front(queues, qhead, qlen, j)
                admit(slot_i, res, scal_i, cfg_i, slot)
                nb = add(bsel, bchunk, nb, slot, remaining_prefill(slot_i, slot))
    for b in range(nb):
        cnt[slot_i[I_CLASS, bsel[b]], slot_i[I_STAGE, bsel[b]]] = 0
    for r in range(nres):
        slot = res[r]
        st_i[slot_i[I_CLASS, slot] * stages + slot_i[I_STAGE, slot]] = 0
    return nb


def _build(name: str) -> Any:
    def build(**options: Any) -> WaitPolicy:
        if "thresholds" not in options:
            raise InputError("thresholds", None, f"policy {name} needs thresholds (or kappa)")
        unknown = sorted(set(options) - {"thresholds"})
        if unknown:
            raise InputError(unknown[0], options[unknown[0]], f"is not a setting of policy {name}")
        return WaitPolicy(options["thresholds"], gate=name != "wait-nowait", hold=name != "wait-nohold")

    return build


SPECS = (
    PolicySpec(
        "wait",
        "WAIT (Algorithm 1): per-class thresholds, holds closed classes",
        WaitPolicy,
        _build("wait"),
        fluid=FluidDesign(
            "wait",
            "fluidopt.thresholds.designs:design_wait",
            "fluidopt.experiments.tune:wait_grid",
            (),
            takes_kappa=True,
        ),
    ),
    PolicySpec(
        "wait-nohold",
        "WAIT whose residents keep decoding under the same caps",
        WaitPolicy,
        _build("wait-nohold"),
        fluid=FluidDesign(
            "wait",
            "fluidopt.thresholds.designs:design_wait",
            "fluidopt.experiments.tune:wait_grid",
            (("hold", False),),
            takes_kappa=True,
        ),
    ),
    PolicySpec(
        "wait-nowait",
        "WAIT's caps without the accumulation gate (ablation)",
        WaitPolicy,
        _build("wait-nowait"),
        fluid=FluidDesign(
            "wait",
            "fluidopt.thresholds.designs:design_wait",
            "fluidopt.experiments.tune:wait_grid",
            (("gate", False),),
            takes_kappa=True,
        ),
    ),
)
SELECT = select_wait
