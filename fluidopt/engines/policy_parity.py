"""Step-by-step parity of WAIT, Nested WAIT and WAIT-CP running inside vLLM with fluidopt's simulator.

The scheduler classes of :mod:`fluidopt.engines.vllm` run in vLLM's own scheduler, driven as in
:mod:`fluidopt.engines.vllm_parity` (stand-in model, one-second steps); the same requests go
through fluidopt's simulated ``wait``, ``nested-wait`` or ``wait-cp`` with the engines' token
conventions.  Scenarios give vLLM room (KV, token budget, ``max_num_seqs``) so that the policy
alone decides each step, as the thresholds are meant to: the check is that the plugin runs the
policy the simulator runs, step for step.

Scenarios (:func:`random_policy_scenario`) are seeded: one to three request classes (a prompt and
an output length each; WAIT's thresholds are per class), requests at once or in waves, and the
policy's settings drawn at random (thresholds, segments, WAIT-CP's cap, chunk and budgets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.engines.gate import THRESHOLDS_ENV
from fluidopt.engines.vllm_parity import Scenario, compare, run_fluidopt, run_vllm
from fluidopt.sim.policies import NestedWaitPolicy, WaitCPPolicy, WaitPolicy

POLICIES = ("wait", "nested-wait", "wait-cp")
SCHEDULERS = {
    "wait": "WaitScheduler",
    "nested-wait": "NestedWaitScheduler",
    "wait-cp": "WaitCPScheduler",
}


@dataclass(frozen=True)
class PolicyScenario:
    """A scenario (requests, vLLM knobs with room to spare), the policy and the classes' lengths."""

    scenario: Scenario
    policy: Any
    classes: tuple[tuple[int, int], ...]

    def document(self) -> dict[str, Any]:
        """The thresholds file the plugin reads (the policy's settings and the classes' lengths)."""
        doc = {key: value for key, value in self.policy.to_dict().items() if key != "hold"}
        if isinstance(self.policy, WaitPolicy):
            doc["classes"] = [f"c{j}" for j in range(len(self.classes))]
        doc["class_prompt_tokens"] = [p for p, _ in self.classes]
        doc["class_output_tokens"] = [d for _, d in self.classes]
        return doc

    @property
    def bins(self) -> tuple[float, ...]:
        """Decode-length edges that put each class in its own bin (classes sorted by output length)."""
        outputs = [d for _, d in self.classes]
        return (0.0, *[float(d) for d in outputs])


def random_policy_scenario(policy: str, rng: np.random.Generator) -> PolicyScenario:
    """A seeded scenario for ``policy`` (module docstring)."""
    k = int(rng.integers(1, 4)) if policy == "wait" else int(rng.integers(1, 3))
    outputs = np.sort(rng.choice(np.arange(2, 60), size=k, replace=False))
    prompts = rng.integers(16, 300, size=k)
    classes = tuple((int(p), int(d)) for p, d in zip(prompts, outputs))
    n = int(rng.integers(8, 40))
    which = np.concatenate([np.arange(k), rng.integers(0, k, size=n - k)])  # every class present
    rng.shuffle(which)
    if rng.random() < 0.5:
        arrivals = np.zeros(n, dtype=int)
    else:
        waves = np.sort(rng.choice(np.arange(0, 120), size=int(rng.integers(2, 5)), replace=False))
        waves[0] = 0
        arrivals = np.sort(rng.choice(waves, size=n))
    longest = int(max(p + d for p, d in classes))
    scenario = Scenario(
        tuple(int(prompts[j]) for j in which),
        tuple(int(outputs[j]) for j in which),
        tuple(int(a) for a in arrivals),
        max_num_seqs=1024,
        max_num_batched_tokens=16_384,
        num_blocks=(longest // 16 + 2) * n + 1,
        enable_prefix_caching=bool(rng.random() < 0.5),
    )
    return PolicyScenario(scenario, _random_policy(policy, classes, rng), classes)


def _random_policy(policy: str, classes: tuple[tuple[int, int], ...], rng: np.random.Generator) -> Any:
    longest = max(d for _, d in classes)
    if policy == "wait":
        return WaitPolicy(tuple(int(v) for v in rng.integers(1, 5, size=len(classes))))
    segments = int(rng.integers(1, 4))
    inner = np.sort(rng.choice(np.arange(1, longest), size=min(segments - 1, longest - 1), replace=False))
    boundaries = (*[int(b) for b in inner], longest)
    if policy == "nested-wait":
        return NestedWaitPolicy(boundaries, tuple(int(v) for v in rng.integers(1, 5, size=len(boundaries))))
    budgets = tuple(int(v) for v in rng.integers(1, 6, size=len(boundaries)))
    chunk = int(rng.choice([32, 64, 128, 256]))
    prefill = int(rng.choice([chunk, 2 * chunk, 4 * chunk]))
    return WaitCPPolicy(
        tl=int(rng.integers(len(boundaries), 24)),
        chunk_tokens=chunk,
        prefill_budget_tokens=prefill,
        total_budget_tokens=prefill + sum(budgets) + int(rng.integers(1, 8)),
        decode_budgets=budgets,
        boundaries=boundaries,
        watermark=float(rng.choice([0.0, 0.01])),
    )


def run_plugin(case: PolicyScenario, model_dir: Path) -> Any:
    """The scenario in vLLM with the policy's scheduler class (``FLUIDOPT_VLLM_THRESHOLDS`` set for the call)."""
    from fluidopt.engines import vllm as plugin
    from fluidopt.tomlio import dumps_toml

    path = model_dir / "thresholds.toml"
    path.write_text(dumps_toml(case.document()), encoding="utf-8")
    name = case.policy.name.replace("-nohold", "")
    scheduler_class = getattr(plugin, SCHEDULERS["wait-cp" if "cp" in name else name])
    previous = os.environ.get(THRESHOLDS_ENV)
    os.environ[THRESHOLDS_ENV] = str(path)
    try:
        return run_vllm(case.scenario, model_dir, scheduler_class=_harness_class(scheduler_class))
    finally:
        if previous is None:
            del os.environ[THRESHOLDS_ENV]
        else:
            os.environ[THRESHOLDS_ENV] = previous


def _harness_class(scheduler_class: Any) -> Any:
    """The plugin with its idle flush off: the harness says when the last request is in (the simulator's flush)."""
    return type(scheduler_class.__name__, (scheduler_class,), {"idle_flush_s": float("inf")})


def policy_check(policy: str, scenarios: int, seed: int, workdir: Path) -> list[dict[str, Any]]:
    """Run ``scenarios`` seeded scenarios of ``policy`` in vLLM (its plugin) and in the simulator; one row each."""
    rows = []
    for s in np.random.SeedSequence([seed, POLICIES.index(policy)]).spawn(scenarios):
        case = random_policy_scenario(policy, np.random.default_rng(s))
        row = compare(run_plugin(case, workdir), run_fluidopt(case.scenario, case.policy, case.bins))
        rows.append({**row, "requests": len(case.scenario.prompts), "knobs": case.policy.to_dict()})
    return rows
