"""Scheduling policies as plain data, and how to add one.

A policy is a frozen dataclass holding its knobs; the engine turns it into integer/float
configuration arrays for the compiled kernel (:mod:`fluidopt.sim.kernel`), where a selection
function does the policy's one job: *given the state, admit or evict as it wishes and write the
next batch*.  The state is the resident list (in admission order), the waiting queues, and
per-request stage, prefill progress and KV charge.

Adding a policy: write ``_select_<name>(...) -> batch size`` in ``kernel.py`` next to the others
(numba-compilable Python operating on the same arrays), give it an id in
``layout.POLICY_IDS``, dispatch to it in ``kernel._select``, and add a dataclass here whose
:meth:`config` fills the knobs it reads.  ``run_kernel.py_func`` runs it uncompiled for
debugging, and ``tests/test_sim_kernel.py`` checks compiled and plain runs agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number, require_whole_number
from fluidopt.workload import Workload

POLICY_NAMES = (
    "wait",
    "wait-nohold",
    "wait-nowait",
    "nested-wait",
    "nested-wait-nohold",
    "fcfs",
    "vllm",
    "sarathi",
    "wait-cp",
    "nested-wait-cp",
)


def _whole_tuple(values: Any, name: str, minimum: int) -> tuple[int, ...]:
    values = tuple(values)
    require(len(values) > 0, name, values, "needs at least one entry")
    return tuple(require_whole_number(v, f"{name}[{i}]", minimum) for i, v in enumerate(values))


@dataclass(frozen=True)
class WaitPolicy:
    """WAIT (arXiv:2504.11320, Algorithm 1): per-class thresholds ``n_j``, entry gate and per-stage cap.

    ``gate=False`` is the no-wait ablation (same caps, classes run whenever they have work).
    ``hold=True`` is MODEL.md section 4 exactly: residents of a class that is not eligible wait
    with their cache kept.  ``hold=False`` lets them keep decoding (still at most ``n_j`` per
    stage; only admissions wait for the gate), which avoids stalls when ``lambda_j dT`` is far
    below one request per iteration.
    """

    thresholds: tuple[int, ...]
    gate: bool = True
    hold: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", _whole_tuple(self.thresholds, "thresholds", 1))

    @property
    def name(self) -> str:
        """``wait``, ``wait-nohold`` (``hold=False``) or ``wait-nowait`` (``gate=False``)."""
        if not self.gate:
            return "wait-nowait"
        return "wait" if self.hold else "wait-nohold"

    def config(self) -> dict[str, Any]:
        """Knobs for the kernel."""
        return {"block_size": 1, "thresholds": np.array(self.thresholds, dtype=np.int64), "hold": self.hold}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {"policy": self.name, "thresholds": list(self.thresholds), "hold": self.hold}


@dataclass(frozen=True)
class NestedWaitPolicy:
    """Nested WAIT (arXiv:2504.11320, section 5): segments ending at ``boundaries`` (decode stages).

    Segment 1 covers stages ``0..boundaries[0]``; segment k covers
    ``boundaries[k-2]+1..boundaries[k-1]``.  ``thresholds[k]`` is segment k's entry threshold and
    per-stage cap.  ``repair`` evicts the most recently admitted boundary-queue requests when
    memory would exceed C (the paper's latest version).  ``hold=True`` is MODEL.md section 6: only
    the segments admitted by the prefix rule run.  ``hold=False`` lets the interior stages of the
    other segments keep decoding (entry stages still wait for their thresholds).
    """

    boundaries: tuple[int, ...]
    thresholds: tuple[int, ...]
    repair: bool = False
    hold: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "boundaries", _whole_tuple(self.boundaries, "boundaries", 1))
        object.__setattr__(self, "thresholds", _whole_tuple(self.thresholds, "thresholds", 1))
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

    def config(self) -> dict[str, Any]:
        """Knobs for the kernel."""
        return {
            "block_size": 1,
            "thresholds": np.array(self.thresholds, dtype=np.int64),
            "boundaries": np.array(self.boundaries, dtype=np.int64),
            "repair": self.repair,
            "hold": self.hold,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "boundaries": list(self.boundaries),
            "thresholds": list(self.thresholds),
            "repair": self.repair,
            "hold": self.hold,
        }


@dataclass(frozen=True)
class FCFSPolicy:
    """Greedy first-come-first-served admission while memory allows; LIFO eviction on overflow."""

    max_batch: int = 0
    name: str = field(default="fcfs", init=False)

    def config(self) -> dict[str, Any]:
        """Knobs for the kernel."""
        return {"block_size": 1, "max_batch": require_whole_number(self.max_batch, "max_batch", 0)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {"policy": self.name, "max_batch": self.max_batch}


@dataclass(frozen=True)
class VLLMPolicy:
    """vLLM v0 as modelled in Vidur (MODEL.md section 7)."""

    block_size: int = 16
    watermark: float = 0.01
    max_batch: int = 128
    max_tokens: int = 4096
    name: str = field(default="vllm", init=False)

    def config(self) -> dict[str, Any]:
        """Knobs for the kernel."""
        return {
            "block_size": require_whole_number(self.block_size, "block_size", 1),
            "watermark": _fraction(self.watermark, "watermark"),
            "max_batch": require_whole_number(self.max_batch, "max_batch", 0),
            "max_tokens": require_whole_number(self.max_tokens, "max_tokens", 1),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "block_size": self.block_size,
            "watermark": self.watermark,
            "max_batch": self.max_batch,
            "max_tokens": self.max_tokens,
        }


@dataclass(frozen=True)
class SarathiPolicy:
    """Sarathi-Serve style chunked prefill with a per-iteration token budget (MODEL.md sections 7 and 9).

    As in Vidur: the budget counts decodes (one token each) as well as prefill chunks, running
    decodes go first, then partial prefills, then new requests FCFS; batch cap 512.  (Sarathi-
    Serve itself also caps the chunk per request separately; Vidur's budget is the only cap.)
    """

    token_budget: int = 512
    block_size: int = 16
    watermark: float = 0.01
    max_batch: int = 512
    name: str = field(default="sarathi", init=False)

    def config(self) -> dict[str, Any]:
        """Knobs for the kernel."""
        return {
            "block_size": require_whole_number(self.block_size, "block_size", 1),
            "watermark": _fraction(self.watermark, "watermark"),
            "max_batch": require_whole_number(self.max_batch, "max_batch", 0),
            "token_budget": require_whole_number(self.token_budget, "token_budget", 1),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "policy": self.name,
            "token_budget": self.token_budget,
            "block_size": self.block_size,
            "watermark": self.watermark,
            "max_batch": self.max_batch,
        }


@dataclass(frozen=True)
class WaitCPPolicy:
    """Chunked WAIT (WAIT-CP, MODEL.md section 9): the pipeline behind the paper's figures.

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
        the backlog reaches ``n_k`` rounded down and up in rotation (MODEL.md section 9; segment
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
        object.__setattr__(self, "decode_budgets", _whole_tuple(self.decode_budgets, "decode_budgets", 1))
        object.__setattr__(self, "boundaries", _whole_tuple(self.boundaries, "boundaries", 1))
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
        object.__setattr__(self, "caps", _whole_tuple(caps, "caps", 1))
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
        _fraction(self.watermark, "watermark")

    @property
    def name(self) -> str:
        """``wait-cp`` for one segment, ``nested-wait-cp`` for several."""
        return "wait-cp" if len(self.boundaries) == 1 else "nested-wait-cp"

    def config(self) -> dict[str, Any]:
        """Knobs for the kernel (``thresholds`` packs budgets, caps and gate counts per segment)."""
        down = [int(math.floor(v)) for v in self.per_stage]
        up = [int(math.ceil(v)) for v in self.per_stage]
        packed = [*self.decode_budgets, *self.caps, *down, *up]
        return {
            "block_size": self.block_size,
            "watermark": self.watermark,
            "thresholds": np.array(packed, dtype=np.int64),
            "boundaries": np.array(self.boundaries, dtype=np.int64),
            "segments": len(self.boundaries),
            "tl": self.tl,
            "chunk_tokens": self.chunk_tokens,
            "prefill_budget": self.prefill_budget_tokens,
            "token_budget": self.total_budget_tokens,
            "wait_gate": self.wait_gate,
        }

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


Policy = WaitPolicy | NestedWaitPolicy | FCFSPolicy | VLLMPolicy | SarathiPolicy | WaitCPPolicy


def _fraction(value: float, name: str) -> float:
    number = require_finite_number(value, name)
    require(0 <= number < 1, name, value, "must be in [0, 1)")
    return number


def wait_thresholds_from_kappa(workload: Workload, kappa: float) -> tuple[int, ...]:
    """``n_j = ceil(kappa * lambda_j)`` (at least 1), MODEL.md section 4."""
    kappa = require_finite_number(kappa, "kappa")
    require(kappa > 0, "kappa", kappa, "must be > 0")
    return tuple(max(1, int(np.ceil(kappa * rate - 1e-9))) for rate in workload.rates)


def make_policy(name: str, **options: Any) -> Policy:
    """Build a policy by name with keyword options (see the policy dataclasses)."""
    if name not in POLICY_NAMES:
        raise InputError("policy", name, f"unknown policy; choose one of {', '.join(POLICY_NAMES)}")
    if name in ("wait", "wait-nohold", "wait-nowait"):
        if "thresholds" not in options:
            raise InputError("thresholds", None, f"policy {name} needs thresholds (or kappa)")
        return WaitPolicy(options["thresholds"], gate=name != "wait-nowait", hold=name != "wait-nohold")
    if name in ("nested-wait", "nested-wait-nohold"):
        for key in ("boundaries", "thresholds"):
            if key not in options:
                raise InputError(key, None, f"policy {name} needs boundaries and thresholds")
        return NestedWaitPolicy(
            options["boundaries"],
            options["thresholds"],
            bool(options.get("repair", False)),
            hold=name == "nested-wait",
        )
    if name in ("wait-cp", "nested-wait-cp"):
        return WaitCPPolicy(**options)
    known = {"fcfs": FCFSPolicy, "vllm": VLLMPolicy, "sarathi": SarathiPolicy}[name]
    return known(**options)
