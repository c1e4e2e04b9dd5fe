"""The ``vllm serve`` line that runs a thresholds file's policy inside vLLM (no vLLM import here).

``fluidopt thresholds --out FILE`` and ``fluidopt recommend --engine vllm`` print it.  Beside the
scheduler class and ``FLUIDOPT_VLLM_THRESHOLDS`` it sets the two vLLM limits that would otherwise
cut the policy's steps short: ``max_num_seqs`` (vLLM's cap on running requests) and
``max_num_batched_tokens`` (its token budget per step), each at least the policy's own bound, and
turns asynchronous scheduling off (the policy plans from the previous step's output).
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from fluidopt.sim.policies import NestedWaitPolicy, WaitCPPolicy, WaitPolicy
from fluidopt.workload import Workload

SCHEDULER_CLASSES = {
    "wait": "fluidopt.engines.vllm.WaitScheduler",
    "wait-nohold": "fluidopt.engines.vllm.WaitScheduler",
    "nested-wait": "fluidopt.engines.vllm.NestedWaitScheduler",
    "nested-wait-nohold": "fluidopt.engines.vllm.NestedWaitScheduler",
    "wait-cp": "fluidopt.engines.vllm.WaitCPScheduler",
    "nested-wait-cp": "fluidopt.engines.vllm.WaitCPScheduler",
}


def policy_limits(policy: Any, workload: Workload) -> tuple[int, int]:
    """``(max_num_seqs, max_num_batched_tokens)`` no smaller than anything the policy can schedule in one step.

    WAIT: at most ``n_j`` requests of class j per stage (prefill and each of its ``d_j`` decode
    stages), so ``sum_j n_j (d_j + 1)`` running and ``sum_j n_j (l_j + d_j)`` tokens.  Nested WAIT:
    ``n_k`` per stage of segment k, prompts up to the workload's longest.  WAIT-CP: its cap ``tl``
    and its total budget.
    """
    if isinstance(policy, WaitPolicy):
        n = policy.thresholds
        seqs = sum(nj * (int(d) + 1) for nj, d in zip(n, workload.decode))
        tokens = sum(nj * (int(p) + int(d)) for nj, p, d in zip(n, workload.prefill, workload.decode))
    elif isinstance(policy, NestedWaitPolicy):
        starts = (0, *(b + 1 for b in policy.boundaries[:-1]))
        stages = [end - start + 1 for start, end in zip(starts, policy.boundaries)]
        seqs = sum(nk * s for nk, s in zip(policy.thresholds, stages))
        tokens = policy.thresholds[0] * int(max(workload.prefill)) + seqs
    elif isinstance(policy, WaitCPPolicy):
        seqs, tokens = policy.tl, policy.total_budget_tokens
    else:
        raise TypeError(f"no vLLM scheduler class runs {getattr(policy, 'name', policy)!r}")
    return int(seqs), int(max(tokens, seqs))


def serve_command(policy: Any, workload: Workload, thresholds_path: str, model: str = "MODEL") -> str:
    """The ready ``FLUIDOPT_VLLM_THRESHOLDS=... vllm serve ... --scheduler-cls ...`` line (module docstring)."""
    seqs, tokens = policy_limits(policy, workload)
    tokens = int(math.ceil(tokens / 8) * 8)
    return (
        f"FLUIDOPT_VLLM_THRESHOLDS={shlex.quote(thresholds_path)} vllm serve {model} --no-async-scheduling "
        f"--scheduler-cls {SCHEDULER_CLASSES[policy.name]} --max-num-seqs {seqs} --max-num-batched-tokens {tokens}"
    )
