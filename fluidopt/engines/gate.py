"""The decision of fluidopt's WAIT-family policies for one engine step, from the engine's own state.

An engine plugin (:mod:`fluidopt.engines.vllm`) describes its running and waiting requests as
:class:`EngineRequest` rows; :class:`PolicyGate` lays them out as the simulator's state arrays
(:mod:`fluidopt.sim.layout`) and calls the policy's own compiled selection function, the one the
simulator runs, so a policy is written once.  The answer is the requests to run this step (running
ones kept, waiting ones admitted, in order) and each one's tokens; the engine does the rest (KV
blocks, sampling).  The state is rebuilt from the engine every step, so the two cannot drift.

Stages follow the engines' convention (the step that completes a prefill emits the first token,
as the simulator's ``vidur`` conventions): a request with ``g`` output tokens decodes at stage
``g + 1``.  A request whose output exceeds the design's longest decode is held at the last stage.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError
from fluidopt.sim import layout
from fluidopt.sim.policies import NestedWaitPolicy, WaitCPPolicy, WaitPolicy, compiled_selectors, selector_index
from fluidopt.workload import RequestClass, Workload

THRESHOLDS_ENV = "FLUIDOPT_VLLM_THRESHOLDS"


class ThresholdsFileError(RuntimeError):
    """The thresholds file named by ``FLUIDOPT_VLLM_THRESHOLDS`` is missing, unreadable or for another policy."""


def load_thresholds(policies: tuple[str, ...]) -> tuple[Any, list[tuple[int, int]]]:
    """The policy of the file named by ``FLUIDOPT_VLLM_THRESHOLDS`` and WAIT's class lengths.

    Raises
    ------
    ThresholdsFileError
        One line naming the variable and the file: unset, unreadable, invalid, or a policy other
        than ``policies``.

    """
    from fluidopt.thresholds.io import read_thresholds_document

    path = os.environ.get(THRESHOLDS_ENV)
    if not path:
        raise ThresholdsFileError(f"{THRESHOLDS_ENV} is not set: name a thresholds file written by fluidopt thresholds")
    where = f"{THRESHOLDS_ENV}={path}"
    if not Path(path).is_file():
        raise ThresholdsFileError(f"{where}: no such file")
    try:
        policy, document = read_thresholds_document(path)
    except InputError as exc:
        raise ThresholdsFileError(f"{where}: {exc}") from None
    if policy.name not in policies:
        raise ThresholdsFileError(f"{where}: holds a {policy.name} policy; this scheduler runs {' or '.join(policies)}")
    if isinstance(policy, WaitPolicy):
        return policy, _class_lengths(document, len(policy.thresholds), where)
    return policy, [(1, int(getattr(policy, "boundaries", (1,))[-1]))]


def _class_lengths(document: dict[str, Any], classes: int, where: str) -> list[tuple[int, int]]:
    """WAIT's per-class prompt and output lengths from a thresholds document (one pair per threshold)."""
    lengths = []
    for key in ("class_prompt_tokens", "class_output_tokens"):
        value = document.get(key)
        if value is None:
            raise ThresholdsFileError(f"{where}: {key} is missing (rewrite the file with fluidopt thresholds)")
        whole = isinstance(value, list) and all(type(v) is int and v >= 1 for v in value)
        if not whole or len(value) != classes:
            raise ThresholdsFileError(f"{where}: {key} = {value!r} must be {classes} whole numbers >= 1, one per class")
        lengths.append(value)
    return list(zip(lengths[0], lengths[1]))


@dataclass(frozen=True)
class EngineRequest:
    """What the gate reads of one engine request.

    Attributes
    ----------
    prompt_tokens, max_tokens : int
        Prompt length and the client's output limit (WAIT's known length).
    output_tokens : int
        Tokens generated so far.
    computed_tokens, known_tokens : int
        Tokens whose KV is computed, and prompt plus outputs (a prefill runs until they are equal).
    kv_tokens : int
        KV tokens the request holds (its blocks times the block size; 0 while waiting).
    arrival_s : float
        Arrival time (the engine's clock).

    """

    prompt_tokens: int
    max_tokens: int
    output_tokens: int
    computed_tokens: int
    known_tokens: int
    kv_tokens: int = 0
    arrival_s: float = 0.0

    @property
    def prefilling(self) -> bool:
        """Whether the next step still computes prompt (or recompute) tokens."""
        return self.computed_tokens < self.known_tokens - (1 if self.output_tokens > 0 else 0)


@dataclass(frozen=True)
class Plan:
    """One step's decision: the requests to run (indices into the running then waiting lists) and their tokens."""

    running: dict[int, int]
    admitted: list[tuple[int, int]]

    @property
    def empty(self) -> bool:
        """Whether the step runs nothing."""
        return not self.running and not self.admitted


class PolicyGate:
    """A WAIT-family policy deciding an engine's steps (module docstring).

    Parameters
    ----------
    policy : WaitPolicy, NestedWaitPolicy or WaitCPPolicy
        The policy (as read from a thresholds file).
    classes : sequence of (prompt tokens, output tokens)
        WAIT's classes, in the order of its thresholds; a request belongs to the class nearest to
        its prompt length and ``max_tokens`` in log scale.  One class for the others.
    block_size, num_blocks : int
        The engine's KV blocks: capacity ``num_blocks x block_size`` tokens.

    """

    def __init__(self, policy: Any, classes: list[tuple[int, int]], block_size: int, num_blocks: int) -> None:
        if not isinstance(policy, WaitPolicy | NestedWaitPolicy | WaitCPPolicy):
            raise InputError("policy", getattr(policy, "name", policy), "is not wait, nested-wait or wait-cp")
        self.policy = policy
        self.classes = np.asarray(classes, dtype=float).reshape(-1, 2)
        if isinstance(policy, WaitPolicy):
            self.max_stage = int(self.classes[:, 1].max())
        else:
            self.max_stage = int(policy.boundaries[-1])
        workload = Workload(
            "engine",
            tuple(RequestClass(f"c{j}", int(p), int(d), 1.0) for j, (p, d) in enumerate(self.classes)),
        )
        pack = policy.kernel_pack(workload, self.max_stage)
        self.pack = pack
        self.per_class = pack.per_class_queues
        self.select = compiled_selectors()[selector_index(policy)]
        self.block_size = int(block_size)
        self.capacity = int(num_blocks) * int(block_size)
        self.state_i = pack.state_i.copy()
        self.state_f = pack.state_f.copy()
        self.iterations = 0
        self.window = _queue_window(policy)

    def waiting_window(self, prompt_tokens: np.ndarray, max_tokens: np.ndarray) -> np.ndarray:
        """Indices of the waiting requests the policy can see: the first :attr:`window` of each queue.

        The selection functions compare a queue's length with thresholds no larger than the window
        and admit at most that many, so a longer queue decides the same step as its first entries.
        """
        if self.per_class and len(self.classes) > 1:
            queue = self.classes_of(prompt_tokens, max_tokens)
        else:
            queue = np.zeros(len(prompt_tokens), dtype=np.int64)
        rank = np.zeros(len(queue), dtype=np.int64)
        for q in np.unique(queue):
            members = np.flatnonzero(queue == q)
            rank[members] = np.arange(members.size)
        return np.flatnonzero(rank < self.window)

    def classes_of(self, prompt_tokens: np.ndarray, max_tokens: np.ndarray) -> np.ndarray:
        """WAIT's class of each request: the nearest class in log prompt and log output length."""
        prompt = np.log(np.maximum(np.asarray(prompt_tokens, dtype=float), 1.0))[:, None]
        output = np.log(np.maximum(np.asarray(max_tokens, dtype=float), 1.0))[:, None]
        distance = np.abs(prompt - np.log(self.classes[:, 0])) + np.abs(output - np.log(self.classes[:, 1]))
        return np.argmin(distance, axis=1)

    def class_of(self, request: EngineRequest) -> int:
        """WAIT's class of a request (:meth:`classes_of`); 0 for the other policies."""
        if not self.per_class or len(self.classes) == 1:
            return 0
        return int(self.classes_of(np.array([request.prompt_tokens]), np.array([request.max_tokens]))[0])

    def stage_of(self, request: EngineRequest) -> int:
        """The simulator's stage: 0 while prefilling, else outputs + 1 (held at the design's last stage + 1)."""
        if request.prefilling:
            return 0
        return min(request.output_tokens + 1, self.max_stage + 1)

    def plan(self, running: list[EngineRequest], waiting: list[EngineRequest], flush: bool) -> Plan:
        """The policy's step: which running requests run, which waiting ones are admitted (in order), tokens each."""
        n = len(running) + len(waiting)
        slots = max(n, 1)
        slot_i = np.zeros((layout.N_INT_FIELDS, slots), dtype=np.int64)
        slot_f = np.zeros((layout.N_FLOAT_FIELDS, slots), dtype=np.float64)
        res = np.zeros(slots, dtype=np.int64)
        queue_count = len(self.classes) if self.per_class else 1
        queues = np.zeros((queue_count, slots), dtype=np.int64)
        qhead = np.zeros(queue_count, dtype=np.int64)
        qlen = np.zeros(queue_count, dtype=np.int64)
        scal_i = np.zeros(layout.N_INT_SCALARS, dtype=np.int64)
        scal_f = np.zeros(layout.N_FLOAT_SCALARS, dtype=np.float64)
        cfg_i, cfg_f = self._config()
        for slot, request in enumerate([*running, *waiting]):
            self._fill(slot_i, slot_f, slot, request, resident=slot < len(running))
        for slot in range(len(running)):
            res[slot] = slot
            scal_i[layout.S_MEMORY] += slot_i[layout.I_CHARGE, slot]
        scal_i[layout.S_NRES] = len(running)
        scal_i[layout.S_ADMIT_COUNTER] = len(running)
        for slot in range(len(running), n):
            q = int(slot_i[layout.I_CLASS, slot]) if self.per_class else 0
            queues[q, qlen[q]] = slot
            qlen[q] += 1
        scal_i[layout.S_WAITING] = len(waiting)
        scal_i[layout.S_ITERATIONS] = self.iterations
        cnt = np.zeros((max(len(self.classes), 1), self.max_stage + 2), dtype=np.int64)
        bsel = np.zeros(slots, dtype=np.int64)
        bchunk = np.zeros(slots, dtype=np.int64)
        nb = self.select(
            flush, slot_i, slot_f, res, queues, qhead, qlen, scal_i, scal_f, cfg_i, cfg_f,
            self.pack.params_i, self.pack.params_f, self.state_i, self.state_f, cnt, bsel, bchunk,
        )  # fmt: skip
        chosen: dict[int, int] = {}
        admitted: list[tuple[int, int]] = []
        for b in range(int(nb)):
            slot = int(bsel[b])
            tokens = int(bchunk[b]) if slot_i[layout.I_STAGE, slot] == 0 else 1
            if slot < len(running):
                chosen[slot] = tokens
            else:
                admitted.append((slot - len(running), tokens))
        if nb > 0:
            self.iterations += 1
        return Plan(chosen, admitted)

    def _config(self) -> tuple[np.ndarray, np.ndarray]:
        cfg_i = np.zeros(layout.N_CFG_INT, dtype=np.int64)
        cfg_i[layout.C_BLOCK] = self.pack.block_size if self.pack.block_size > 1 else self.block_size
        cfg_i[layout.C_CAPACITY] = self.capacity
        cfg_i[layout.C_EVICTION] = 1
        cfg_i[layout.C_PER_CLASS_QUEUES] = int(self.per_class)
        cfg_i[layout.C_FIRST_TOKEN_PREFILL] = 1
        cfg_f = np.zeros(layout.N_CFG_FLOAT, dtype=np.float64)
        cfg_f[layout.CF_WATERMARK] = self.pack.watermark
        cfg_f[layout.CF_WINDOW_END] = math.inf
        return cfg_i, cfg_f

    def _fill(self, slot_i: np.ndarray, slot_f: np.ndarray, slot: int, request: EngineRequest, resident: bool) -> None:
        stage = self.stage_of(request) if resident else 0
        slot_i[layout.I_CLASS, slot] = self.class_of(request)
        slot_i[layout.I_PREFILL, slot] = request.prompt_tokens
        slot_i[layout.I_DECODE, slot] = min(request.max_tokens, self.max_stage)
        slot_i[layout.I_MAX_NEW, slot] = request.max_tokens
        slot_i[layout.I_STAGE, slot] = stage
        slot_i[layout.I_TARGET, slot] = request.known_tokens  # a prefill (or a recompute's) covers every known token
        slot_i[layout.I_PREFILL_DONE, slot] = request.computed_tokens if stage == 0 else 0
        slot_i[layout.I_RESUME, slot] = min(request.output_tokens, self.max_stage) + 1
        slot_i[layout.I_STATUS, slot] = layout.STATUS_RESIDENT if resident else layout.STATUS_WAITING
        slot_i[layout.I_ADMIT, slot] = slot
        slot_i[layout.I_CHARGE, slot] = request.kv_tokens if resident else 0
        slot_i[layout.I_REQUEST, slot] = slot
        slot_f[layout.F_ARRIVAL, slot] = request.arrival_s


def _queue_window(policy: Any) -> int:
    """Waiting requests per queue a policy's step can depend on (its largest threshold, cap or budget, plus one)."""
    if isinstance(policy, WaitPolicy):
        return max(policy.thresholds) + 1
    if isinstance(policy, NestedWaitPolicy):
        return policy.thresholds[0] + 1
    counts = [policy.tl, *policy.caps, *policy.decode_budgets, *(math.ceil(v) for v in policy.per_stage)]
    return int(max(counts)) + 1
