"""Chunked WAIT (WAIT-CP, docs/theory.md, chunked pipeline): the pipeline behind the paper's figures.

An in-system cap ``tl``, a per-request chunk size, prefill / per-segment decode / total token
budgets and an optional wait gate; it never evicts.  ``nested-wait-cp`` is the same pipeline over
several decode segments.  The thresholds come from the fluid model
(:func:`fluidopt.thresholds.chunked.wait_cp_thresholds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidopt._jit import selection_function
from fluidopt.errors import require, require_finite_number, require_whole_number
from fluidopt.sim.layout import (
    C_BLOCK,
    C_CAPACITY,
    C_FIRST_TOKEN_PREFILL,
    I_CHARGE,
    I_PREFILL,
    I_PREFILL_DONE,
    I_STAGE,
    I_TARGET,
    S_ITERATIONS,
    S_MEMORY,
    S_NRES,
)
from fluidopt.sim.policies._base import (
    BLOCK_SIZE_KNOB,
    WATERMARK_KNOB,
    FluidDesign,
    KernelPack,
    PolicySpec,
    fraction,
    int_array,
    segment_arrays,
    whole_tuple,
)
from fluidopt.sim.policies._compiled import add, admit, blocks, queue_peek, queue_pop_front, watermark_blocks

# params_i layout
P_SEGMENTS = 0
P_TL = 1
P_CHUNK = 2
P_PREFILL_BUDGET = 3
P_TOTAL_BUDGET = 4
P_WAIT_GATE = 5
P_ARRAYS = 6  # K decode budgets, K caps, K gate counts down, K up, K entry stages, segment of each stage


@dataclass(frozen=True)
class WaitCPPolicy:
    """Chunked WAIT (WAIT-CP, docs/theory.md, chunked pipeline): the pipeline behind the paper's figures.

    Parameters
    ----------
    tl : int
        Most requests holding KV (in-system cap).
    chunk_tokens : int
        Most prefill tokens one request gets per iteration (a prompt of l tokens needs
        ``ceil(l / chunk_tokens)`` prefill iterations).
    prefill_budget_tokens, total_budget_tokens : int
        Prefill tokens per iteration, and all tokens (decodes count one each).
    decode_budgets : tuple of int
        Decode steps per iteration of each segment (``ceil(n_k x stages_k)``).
    boundaries : tuple of int
        Last decode stage of each segment (one segment: the longest decode length).
    caps : tuple of int, optional
        Requests a segment k >= 2 may hold; its boundary queue is admitted up to
        ``cap_k - interior_k`` (default: the decode budgets).
    per_stage : tuple of float, optional
        The fluid per-stage reals ``n_k`` (the wait gate's counts; default budget / stages).
    wait_gate : bool
        Skip a segment in an iteration unless its entry backlog plus interior reaches its cap or
        the backlog reaches ``n_k`` rounded down and up in rotation (docs/theory.md; segment
        1's backlog is the prefill queue plus the requests still prefilling).  With ``n_k < 1``
        the rotation opens the gate at least every other iteration.  The figure-K ablation; off
        in the figure runs.
    block_size, watermark : int, float
        Paged KV blocks and the admission watermark (fraction of blocks kept free).

    """

    tl: int
    chunk_tokens: int
    prefill_budget_tokens: int
    total_budget_tokens: int
    decode_budgets: tuple[int, ...]
    boundaries: tuple[int, ...]
    caps: tuple[int, ...] = ()
    per_stage: tuple[float, ...] = ()
    wait_gate: bool = False
    block_size: int = 16
    watermark: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "tl", require_whole_number(self.tl, "tl", 1))
        object.__setattr__(self, "chunk_tokens", require_whole_number(self.chunk_tokens, "chunk_tokens", 1))
        object.__setattr__(
            self, "prefill_budget_tokens", require_whole_number(self.prefill_budget_tokens, "prefill_budget_tokens", 1)
        )
        object.__setattr__(
            self, "total_budget_tokens", require_whole_number(self.total_budget_tokens, "total_budget_tokens", 1)
        )
        object.__setattr__(self, "decode_budgets", whole_tuple(self.decode_budgets, "decode_budgets", 1))
        object.__setattr__(self, "boundaries", whole_tuple(self.boundaries, "boundaries", 1))
        require(
            len(self.boundaries) == len(self.decode_budgets),
            "decode_budgets",
            list(self.decode_budgets),
            f"needs one budget per segment ({len(self.boundaries)})",
        )
        require(
            all(b > a for a, b in zip(self.boundaries, self.boundaries[1:])),
            "boundaries",
            list(self.boundaries),
            "must increase",
        )
        caps = self.caps or self.decode_budgets
        object.__setattr__(self, "caps", whole_tuple(caps, "caps", 1))
        require(len(self.caps) == len(self.boundaries), "caps", list(self.caps), "needs one cap per segment")
        stages = np.diff(np.concatenate([[0], np.asarray(self.boundaries)]))
        per_stage = self.per_stage or tuple(float(b) / s for b, s in zip(self.decode_budgets, stages))
        object.__setattr__(
            self, "per_stage", tuple(require_finite_number(v, f"per_stage[{i}]") for i, v in enumerate(per_stage))
        )
        require(
            sum(self.decode_budgets) < self.total_budget_tokens,
            "total_budget_tokens",
            self.total_budget_tokens,
            f"must exceed the decode budgets ({sum(self.decode_budgets)}) to leave room for a prefill token",
        )
        require(
            self.prefill_budget_tokens <= self.total_budget_tokens,
            "prefill_budget_tokens",
            self.prefill_budget_tokens,
            f"must be <= total_budget_tokens ({self.total_budget_tokens})",
        )
        require(
            self.tl >= len(self.boundaries),
            "tl",
            self.tl,
            f"must hold at least one request per segment ({len(self.boundaries)})",
        )
        require_whole_number(self.block_size, "block_size", 1)
        fraction(self.watermark, "watermark")

    @property
    def name(self) -> str:
        """``wait-cp`` for one segment, ``nested-wait-cp`` for several."""
        return "wait-cp" if len(self.boundaries) == 1 else "nested-wait-cp"

    def kernel_pack(self, workload: Any, max_stage: int) -> KernelPack:
        """Budgets, caps and gate counts per segment, entry stages and the stage-to-segment map."""
        require(
            self.boundaries[-1] >= max_stage,
            "boundaries",
            list(self.boundaries),
            f"the last segment must reach the longest decode length ({max_stage})",
        )
        down = [int(math.floor(v)) for v in self.per_stage]
        up = [int(math.ceil(v)) for v in self.per_stage]
        seg_entry, seg_of_stage = segment_arrays(self.boundaries, max_stage)
        params = int_array(
            len(self.boundaries),
            self.tl,
            self.chunk_tokens,
            self.prefill_budget_tokens,
            self.total_budget_tokens,
            self.wait_gate,
            self.decode_budgets,
            self.caps,
            down,
            up,
            seg_entry,
            seg_of_stage,
        )
        return KernelPack(params, block_size=self.block_size, watermark=self.watermark, reserves_prompt=True)

    @classmethod
    def from_document(cls, document: dict[str, Any], where: str, workload: Any = None) -> WaitCPPolicy:
        """The policy of a thresholds file's table (the design's budgets and segments)."""
        keys = ("tl", "chunk_tokens", "prefill_budget_tokens", "total_budget_tokens", "decode_budgets", "boundaries")
        for key in keys:
            require(key in document, f"{where}: {key}", None, f"is required for {document.get('policy')}")
        return cls(
            **{key: document[key] for key in keys},
            per_stage=tuple(document.get("per_stage", ())),
            wait_gate=bool(document.get("wait_gate", False)),
            block_size=document.get("block_size", 16),
            watermark=document.get("watermark", 0.01),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "tl": self.tl,
            "chunk_tokens": self.chunk_tokens,
            "prefill_budget_tokens": self.prefill_budget_tokens,
            "total_budget_tokens": self.total_budget_tokens,
            "decode_budgets": list(self.decode_budgets),
            "boundaries": list(self.boundaries),
            "caps": list(self.caps),
            "per_stage": list(self.per_stage),
            "wait_gate": self.wait_gate,
            "block_size": self.block_size,
            "watermark": self.watermark,
        }


@selection_function
def select_wait_cp(
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
    """Chunked WAIT (WAIT-CP): decodes by segment, then chunked prefills, never evict.

    The parameters hold, per segment k, the decode budget ``thr[k]``, the in-segment cap
    ``thr[K + k]`` (boundary admissions stop when ``interior_k`` reaches it) and the gate's
    per-stage count rounded down ``thr[2K + k]`` and up ``thr[3K + k]`` (K segments).
    ``cnt[0, s]`` counts residents at stage s.
    A segment's entry stage is its first decode stage; a request there has not yet entered it.
    """
    segments = p_i[P_SEGMENTS]
    thr = p_i[P_ARRAYS : P_ARRAYS + 4 * segments]
    seg_entry = p_i[P_ARRAYS + 4 * segments : P_ARRAYS + 5 * segments]
    seg_of_stage = p_i[P_ARRAYS + 5 * segments :]
    block = cfg_i[C_BLOCK]
    capacity = cfg_i[C_CAPACITY]
    nres = scal_i[S_NRES]
    budget = p_i[P_TOTAL_BUDGET]
    prefill_budget = p_i[P_PREFILL_BUDGET]
    gate = p_i[P_WAIT_GATE] == 1
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
            # (docs/theory.md).  Segment 1's backlog is the prefill queue plus the requests
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
                grown = blocks(slot_i[I_PREFILL, slot] + stage + 1, block) - slot_i[I_CHARGE, slot]
                if projected + grown > capacity:
                    continue  # cannot get a block: waits with its cache kept
                projected += grown
                nb = add(bsel, bchunk, nb, slot, 0)
                seg_budget -= 1
                budget -= 1
    for stage in range(stages):
        cnt[0, stage] = 0
    chunk_cap = p_i[P_CHUNK]
    budget_left = min(budget, prefill_budget)
    for r in range(nres):
        slot = res[r]
        if slot_i[I_STAGE, slot] == 0 and budget_left > 0:
            chunk = min(slot_i[I_TARGET, slot] - slot_i[I_PREFILL_DONE, slot], chunk_cap, budget_left)
            nb = add(bsel, bchunk, nb, slot, chunk)
            budget_left -= chunk
    watermark = watermark_blocks(cfg_i, cfg_f)
    while qlen[0] > 0 and budget_left > 0 and scal_i[S_NRES] < p_i[P_TL]:
        slot = queue_peek(queues, qhead, 0, 0)
        target = slot_i[I_TARGET, slot]
        need = blocks(target, block)
        if (capacity - projected) // block - need // block < watermark or projected + need > capacity:
            break
        queue_pop_front(queues, qhead, qlen, 0)
        admit(slot_i, res, scal_i, cfg_i, slot)
        projected += need
        chunk = min(target, chunk_cap, budget_left)
        nb = add(bsel, bchunk, nb, slot, chunk)
        budget_left -= chunk
    return nb


def _build(**options: Any) -> WaitCPPolicy:
    return WaitCPPolicy(**options)


SPECS = (
    PolicySpec(
        "wait-cp",
        "chunked WAIT (WAIT-CP) of the paper's figures, from the fluid model",
        WaitCPPolicy,
        _build,
        knobs=(BLOCK_SIZE_KNOB, WATERMARK_KNOB),
        fluid=FluidDesign(
            "wait-cp",
            "fluidopt.thresholds.designs:design_wait_cp",
            "fluidopt.experiments.tune:chunked_grid",
            (),
            chunked=True,
        ),
    ),
    PolicySpec(
        "nested-wait-cp",
        "chunked Nested WAIT over decode segments",
        WaitCPPolicy,
        _build,
        knobs=(BLOCK_SIZE_KNOB, WATERMARK_KNOB),
        fluid=FluidDesign(
            "nested-wait-cp",
            "fluidopt.thresholds.designs:design_nested_wait_cp",
            "fluidopt.experiments.tune:nested_chunked_grid",
            (),
            chunked=True,
            nested=True,
        ),
    ),
)
SELECT = select_wait_cp
