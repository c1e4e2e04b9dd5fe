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

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require, require_finite_number, require_whole_number
from fluidopt.workload import Workload

POLICY_NAMES = ("wait", "wait-nowait", "nested-wait", "fcfs", "vllm", "sarathi")


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
        """Policy name."""
        return "wait" if self.gate else "wait-nowait"

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

    name = "nested-wait"

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
    """Sarathi-Serve style chunked prefill with a per-iteration token budget (MODEL.md section 7)."""

    token_budget: int = 512
    block_size: int = 16
    watermark: float = 0.01
    max_batch: int = 128
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


Policy = WaitPolicy | NestedWaitPolicy | FCFSPolicy | VLLMPolicy | SarathiPolicy


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
    if name in ("wait", "wait-nowait"):
        if "thresholds" not in options:
            raise InputError("thresholds", None, f"policy {name} needs thresholds (or kappa)")
        return WaitPolicy(options["thresholds"], gate=name == "wait")
    if name == "nested-wait":
        for key in ("boundaries", "thresholds"):
            if key not in options:
                raise InputError(key, None, "policy nested-wait needs boundaries and thresholds")
        return NestedWaitPolicy(options["boundaries"], options["thresholds"], bool(options.get("repair", False)))
    known = {"fcfs": FCFSPolicy, "vllm": VLLMPolicy, "sarathi": SarathiPolicy}[name]
    return known(**options)
