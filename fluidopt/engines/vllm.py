"""WAIT, Nested WAIT and WAIT-CP inside vLLM: scheduler classes for ``--scheduler-cls``.

Usage (the line ``fluidopt thresholds`` and ``fluidopt recommend`` print)::

    fluidopt thresholds -w WORKLOAD -p PROFILE --policy nested-wait --out nw.toml
    export FLUIDOPT_VLLM_THRESHOLDS=nw.toml
    vllm serve MODEL --no-async-scheduling --scheduler-cls fluidopt.engines.vllm.NestedWaitScheduler

or ``LLM(..., scheduler_cls="fluidopt.engines.vllm.NestedWaitScheduler")`` in Python (with
vLLM's CPU build from the package registry, ``fluidopt-vllm serve`` in place of ``vllm serve``:
:mod:`fluidopt.engines.serve`).  The
thresholds file is read when the engine starts; a missing variable, an unreadable file or a file
for another policy is one error naming the variable and the file.

Each class is vLLM's own V1 ``Scheduler`` with a gate in front of it.  Every step the gate
(:class:`fluidopt.engines.gate.PolicyGate`) asks the policy's selection function, the one the
simulator runs, which running requests run and which waiting ones are admitted, and how many
tokens each gets.  vLLM then schedules exactly those: the running requests the policy holds are
set aside for the step (they keep their KV blocks), only the admitted waiting requests are
visible, and each request's tokens are capped by the plan through vLLM 0.32's per-request chunk
hook (``_mamba_block_aligned_split``, which plain attention models leave unused).  KV blocks,
preemption when memory runs out, sampling and outputs stay vLLM's.

The end of a run: WAIT admits a class once ``n_j`` requests wait, so the last few would wait for
ever (and with ``hold`` the residents of closed segments with them); the simulator then flushes
(serves what is left).  Here the engine flushes from the moment its gate has held every step for
``idle_flush_s`` (0.5 s: far above a step, so a loaded engine never does) until the next request
arrives, or when told ``arrivals_done`` (the parity harness, :mod:`fluidopt.engines.vllm_parity`).

Asynchronous scheduling is not supported (the policy plans each step from the previous step's
output): run with ``--no-async-scheduling`` / ``async_scheduling=False``.

This module imports vLLM (``pip install -e ".[engine]"``); nothing else in fluidopt imports it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fluidopt.engines.gate import EngineRequest, Plan, PolicyGate, ThresholdsFileError, load_thresholds
from fluidopt.engines.vllm_parity import guard_torch_extensions

guard_torch_extensions()

from vllm.v1.core.sched.request_queue import create_request_queue  # noqa: E402
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: E402


class _GatedScheduler(Scheduler):
    """vLLM's scheduler behind a fluidopt policy gate (module docstring)."""

    policies: tuple[str, ...] = ()
    idle_flush_s: float = 0.5
    # vLLM's attributes this class reads and sets (declared for the type checker).
    running: list[Any]
    waiting: Any
    need_mamba_block_aligned_split: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.scheduler_config.async_scheduling:
            raise ThresholdsFileError(
                f"{type(self).__name__} plans each step from the last one's output: run without async scheduling "
                "(--no-async-scheduling)"
            )
        policy, classes = load_thresholds(self.policies)
        num_blocks = self.cache_config.num_gpu_blocks or self.kv_cache_config.num_blocks
        self.gate = PolicyGate(policy, classes, self.cache_config.block_size, num_blocks)
        self.arrivals_done = False
        self.clock = time.monotonic
        self._last_step_s = self.clock()
        self._flushing = False
        self._chunks: dict[str, int] = {}
        self._native_split = self.need_mamba_block_aligned_split

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        """Gate the step by the policy's plan, then let vLLM schedule it."""
        running = list(self.running)
        waiting = list(self.waiting)
        plan = self._plan(running, waiting)
        chosen = {running[k].request_id: tokens for k, tokens in plan.running.items()}
        chosen.update({waiting[k].request_id: tokens for k, tokens in plan.admitted})
        admitted = [waiting[k] for k, _ in plan.admitted]
        self.running = [r for r in running if r.request_id in chosen]
        self.waiting = create_request_queue(self.policy)
        for request in admitted:
            self.waiting.add_request(request)
        self._chunks = chosen
        self.need_mamba_block_aligned_split = True
        try:
            return super().schedule(*args, **kwargs)
        finally:
            self._restore(running, waiting)

    def _plan(self, running: list[Any], waiting: list[Any]) -> Plan:
        rows_running = [self._row(r, resident=True) for r in running]
        prompts = np.fromiter((r.num_prompt_tokens for r in waiting), dtype=np.int64, count=len(waiting))
        limits = np.fromiter((r.max_tokens for r in waiting), dtype=np.int64, count=len(waiting))
        visible = self.gate.waiting_window(prompts, limits)
        rows_waiting = [self._row(waiting[i], resident=False) for i in visible]
        plan = self._plan_rows(rows_running, rows_waiting)
        return Plan(plan.running, [(int(visible[k]), tokens) for k, tokens in plan.admitted])

    def _plan_rows(self, rows_running: list[EngineRequest], rows_waiting: list[EngineRequest]) -> Plan:
        plan = self.gate.plan(rows_running, rows_waiting, self.arrivals_done or self._flushing)
        now = self.clock()
        if plan.empty and (rows_running or rows_waiting) and now - self._last_step_s >= self.idle_flush_s:
            self._flushing = True  # the gate held every step too long: serve what is left, as the simulator's flush
            plan = self.gate.plan(rows_running, rows_waiting, True)
        if not plan.empty:
            self._last_step_s = now
        return plan

    def add_request(self, request: Any) -> None:
        """Queue a request (a new arrival ends a flush: the gate decides again)."""
        self._flushing = False
        super().add_request(request)

    def _row(self, request: Any, resident: bool) -> EngineRequest:
        block = self.cache_config.block_size
        blocks = -(-request.num_computed_tokens // block) if resident else 0  # vLLM allocates no lookahead
        return EngineRequest(
            prompt_tokens=request.num_prompt_tokens,
            max_tokens=request.max_tokens,
            output_tokens=request.num_output_tokens,
            computed_tokens=request.num_computed_tokens,
            known_tokens=request.num_tokens,
            kv_tokens=blocks * block,
            arrival_s=request.arrival_time,
        )

    def _restore(self, running: list[Any], waiting: list[Any]) -> None:
        """Put the held running requests back in place, and the waiting ones not admitted behind the preempted."""
        after = {r.request_id for r in self.running}
        was_running = {r.request_id for r in running}
        held = was_running - set(self._chunks)
        newcomers = [r for r in self.running if r.request_id not in was_running]
        self.running = [r for r in running if r.request_id in after or r.request_id in held] + newcomers
        preempted = [r for r in self.waiting if r.request_id in was_running]
        queue = create_request_queue(self.policy)
        for request in preempted + [r for r in waiting if r.request_id not in after]:
            queue.add_request(request)
        self.waiting = queue
        self._chunks = {}
        self.need_mamba_block_aligned_split = self._native_split

    def _mamba_block_aligned_split(self, request: Any, num_new_tokens: int, *args: Any, **kwargs: Any) -> int:
        if self._native_split:
            num_new_tokens = super()._mamba_block_aligned_split(request, num_new_tokens, *args, **kwargs)
        return min(num_new_tokens, self._chunks.get(request.request_id, num_new_tokens))


class WaitScheduler(_GatedScheduler):
    """WAIT (arXiv:2504.11320, Algorithm 1) inside vLLM: per-class thresholds from ``FLUIDOPT_VLLM_THRESHOLDS``."""

    policies = ("wait", "wait-nohold")


class NestedWaitScheduler(_GatedScheduler):
    """Nested WAIT (arXiv:2504.11320, section 5) inside vLLM: nested segment thresholds."""

    policies = ("nested-wait", "nested-wait-nohold")


class WaitCPScheduler(_GatedScheduler):
    """Chunked WAIT (WAIT-CP, docs/theory.md) inside vLLM: in-system cap, chunks and token budgets."""

    policies = ("wait-cp", "nested-wait-cp")
