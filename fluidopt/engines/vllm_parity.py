"""Step-by-step parity of fluidopt's ``vllm-v1`` policy with vLLM's own V1 scheduler.

vLLM's ``vllm.v1.core.sched.scheduler.Scheduler`` is driven directly, with its KV-cache manager
and a stand-in for the model: every request whose prompt is computed after a step samples one
token (``ignore_eos``, so it runs to ``max_tokens``).  An engine start (about 20 s on CPU) is
not needed, so hundreds of scenarios run in seconds.  The same requests and knobs go through
fluidopt's simulator with a step time of exactly one second, so "arrives before step ``k``" is
"arrives at ``k - 1/2``".  Each step is compared by what both sides record: requests in the batch,
tokens scheduled and requests preempted.

Scenarios (:func:`random_scenario`) are seeded: requests at once or in waves, tight or loose KV,
``max_num_seqs``, ``max_num_batched_tokens``, ``long_prefill_token_threshold``, prefix caching
on or off, asynchronous scheduling on or off, the watermark.  No two prompts share a prefix
(:func:`prompt_token_ids`).
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError

TINY_MODEL = {  # a 2-layer Llama with hidden 128: the scheduler reads its shape, no weights are loaded
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 32000,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2,
}
ENABLE = 'vLLM\'s CPU build is not installed: pip install -e ".[engine]" (README "How we check the vLLM scheduler")'


@dataclass(frozen=True)
class Scenario:
    """Requests (prompt and output lengths, the step before which each arrives) and the engine's knobs."""

    prompts: tuple[int, ...]
    outputs: tuple[int, ...]
    arrival_steps: tuple[int, ...]
    max_num_seqs: int
    max_num_batched_tokens: int
    num_blocks: int
    block_size: int = 16
    long_prefill_token_threshold: int = 0
    enable_prefix_caching: bool = True
    async_scheduling: bool = False
    watermark: float = 0.0

    def knobs(self) -> dict[str, Any]:
        """The engine arguments, by vLLM's names."""
        return {
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "long_prefill_token_threshold": self.long_prefill_token_threshold,
            "num_gpu_blocks": self.num_blocks,
            "block_size": self.block_size,
            "enable_prefix_caching": self.enable_prefix_caching,
            "async_scheduling": self.async_scheduling,
            "watermark": self.watermark,
        }


@dataclass(frozen=True)
class StepLog:
    """Per step: requests in the batch, tokens scheduled, requests preempted; per request its record.

    ``requests`` maps a scenario's request index to ``(first token s, last token s, preemptions)``
    on the shared one-second clock, so a swap of two requests shows even where the totals agree.
    """

    batch: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    requests: dict[int, tuple[float, float, int]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Steps that scheduled anything."""
        return len(self.tokens)


def random_scenario(rng: np.random.Generator) -> Scenario:
    """A seeded scenario (module docstring); every request fits the KV cache alone."""
    block = 16
    n = int(rng.integers(8, 48))
    prompts = rng.integers(16, 400, n)
    outputs = rng.integers(1, 120, n)
    seqs = int(rng.choice([4, 8, 16, 32]))
    budget = int(rng.choice([128, 256, 512, 1024]))
    threshold = int(rng.choice([0, 0, 64, 128]))
    threshold = min(threshold, budget)
    longest = int(np.max(prompts + outputs))
    tight = bool(rng.random() < 0.6)
    blocks = (longest // block + 2) * (int(rng.integers(2, 5)) if tight else 40)
    if rng.random() < 0.5:
        arrivals = np.zeros(n, dtype=int)
    else:  # waves: after some steps
        waves = np.sort(rng.choice(np.arange(0, 200), size=int(rng.integers(2, 5)), replace=False))
        waves[0] = 0
        arrivals = np.sort(rng.choice(waves, size=n))
    return Scenario(
        tuple(int(p) for p in prompts),
        tuple(int(o) for o in outputs),
        tuple(int(a) for a in arrivals),
        seqs,
        budget,
        int(blocks),
        block,
        threshold,
        bool(rng.random() < 0.7),
        bool(rng.random() < 0.5),
        float(rng.choice([0.0, 0.0, 0.01, 0.05])),
    )


# vLLM's CPU build pulls in torchvision, torchaudio and torchcodec wheels built against another
# torch; importing them fails while they register their operators ("torchvision::nms does not
# exist").  The scheduler needs none of them: marking them absent before vLLM loads lets every
# optional import of them fall back, so the extra installs and imports as it comes.
TORCH_EXTENSIONS = ("torchvision", "torchaudio", "torchcodec")


def guard_torch_extensions() -> None:
    """Mark torchvision, torchaudio and torchcodec as absent unless already imported (see above)."""
    import sys

    for name in TORCH_EXTENSIONS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def vllm_available() -> bool:
    """Whether vLLM (its CPU build will do) imports here."""
    guard_torch_extensions()
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to import means the engine cannot be checked
        return False
    return True


def _digest(value: Any) -> bytes:
    return hashlib.sha256(pickle.dumps(value)).digest()


def _vllm_scheduler(scenario: Scenario, model_dir: Path, scheduler_class: Any = None) -> Any:
    guard_torch_extensions()
    import torch
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    longest = max(p + o for p, o in zip(scenario.prompts, scenario.outputs)) + 16
    scheduler_config = SchedulerConfig(
        max_num_seqs=scenario.max_num_seqs,
        max_num_batched_tokens=scenario.max_num_batched_tokens,
        max_model_len=max(longest, scenario.max_num_batched_tokens),
        long_prefill_token_threshold=scenario.long_prefill_token_threshold,
        enable_chunked_prefill=True,
        is_encoder_decoder=False,
        async_scheduling=scenario.async_scheduling,
        watermark=scenario.watermark,
    )
    model_config = ModelConfig(
        model=str(model_dir), skip_tokenizer_init=True, dtype="float32", seed=0, max_model_len=16384
    )
    cache_config = CacheConfig(block_size=scenario.block_size, enable_prefix_caching=scenario.enable_prefix_caching)
    config = VllmConfig(scheduler_config=scheduler_config, model_config=model_config, cache_config=cache_config)
    spec = FullAttentionSpec(scenario.block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    kv_config = KVCacheConfig(
        num_blocks=scenario.num_blocks, kv_cache_tensors=[], kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)]
    )
    cache_config.num_gpu_blocks = scenario.num_blocks
    if scheduler_class is None:
        scheduler_class = AsyncScheduler if scenario.async_scheduling else Scheduler
    return scheduler_class(
        vllm_config=config,
        kv_cache_config=kv_config,
        structured_output_manager=StructuredOutputManager(config),
        block_size=scenario.block_size,
        log_stats=True,
    )


def prompt_token_ids(request: int, length: int) -> list[int]:
    """Request ``request``'s prompt: token ids inside the tiny model's vocabulary, its first one its own.

    The first token differs between requests (below 31,000 of them), so no two prompts share a
    cached block (a block's hash covers every token before it).
    """
    first = 3 + request % 31_000
    return [first] + [3 + (first + 7 * k) % 31_000 for k in range(1, length)]


def arrival_time_s(step: int) -> float:
    """A scenario's arrival, in the one-second steps of both sides: half a step before step ``step`` (0 at 0)."""
    return max(step - 0.5, 0.0)


def _sampled(scheduler: Any, ids: list[str]) -> list[list[int]]:
    """The stand-in model: one token for every request whose known tokens are all computed (no prefill chunk)."""
    return [[] if scheduler.requests[r].is_prefill_chunk else [5] for r in ids]


def _record_requests(log: StepLog, added: dict[int, Any], ids: list[str], end: float) -> None:
    """After a batch's output: each request's first-token time, and its finish with its preemptions."""
    for r in ids:
        i = int(r)
        request = added[i]
        first, _, _ = log.requests.get(i, (math.nan, math.nan, 0))
        if math.isnan(first) and request.num_output_tokens > 0:
            first = end
        if request.is_finished():
            log.requests[i] = (first, end, int(request.num_preemptions))
        else:
            log.requests[i] = (first, math.nan, 0)


def run_vllm(scenario: Scenario, model_dir: Path, max_steps: int = 100_000, scheduler_class: Any = None) -> StepLog:
    """VLLM's own scheduler on the scenario, driven as its engine core drives it, with a stand-in model.

    Each batch takes one second.  Synchronously the engine plans a batch, runs it and applies its
    output; with ``async_scheduling`` it keeps two batches in its queue (vLLM's
    ``step_with_batch_queue``): it plans batch N+1 when batch N starts and applies N's output
    after that.  Requests are added when the engine next plans at or after their arrival.
    ``scheduler_class`` replaces vLLM's (a fluidopt plugin, told when the last request is in).
    """
    from collections import deque

    guard_torch_extensions()
    from vllm.sampling_params import SamplingParams
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    scheduler = _vllm_scheduler(scenario, model_dir, scheduler_class)
    init_none_hash(_digest)
    hasher = get_request_block_hasher(scenario.block_size, _digest)
    pending = deque(sorted(range(len(scenario.prompts)), key=lambda i: (scenario.arrival_steps[i], i)))
    queue_size = 2 if scenario.async_scheduling else 1
    batches: deque[tuple[Any, list[list[int]], float]] = deque()  # planned batches, oldest on the right
    log = StepLog()
    added: dict[int, Any] = {}
    now = 0.0
    gpu_free_at = 0.0
    while pending or scheduler.has_requests() or batches:
        while pending and arrival_time_s(scenario.arrival_steps[pending[0]]) <= now:
            i = pending.popleft()
            tokens = prompt_token_ids(i, scenario.prompts[i])
            params = SamplingParams(max_tokens=scenario.outputs[i], ignore_eos=True)
            added[i] = Request(str(i), tokens, params, None, arrival_time=now, block_hasher=hasher)
            scheduler.add_request(added[i])
        if scheduler_class is not None:  # a plugin: no more arrivals once the last one is in (its flush)
            scheduler.arrivals_done = not pending
        if scheduler.has_requests():
            output = scheduler.schedule()
            ids = list(output.num_scheduled_tokens)
            end = now
            if ids:
                log.batch.append(len(ids))
                log.tokens.append(int(output.total_num_scheduled_tokens))
                log.preempted.append(len(output.preempted_req_ids or ()))
                end = max(now, gpu_free_at) + 1.0
                gpu_free_at = end
            batches.appendleft((output, _sampled(scheduler, ids), end))
            if len(batches) < queue_size and (ids or scheduler.has_requests()):
                continue
        elif not batches:
            now = arrival_time_s(scenario.arrival_steps[pending[0]])  # idle until the next arrival
            continue
        output, sampled, end = batches.pop()
        now = max(now, end)
        ids = list(output.num_scheduled_tokens)
        runner = ModelRunnerOutput(
            req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)}, sampled_token_ids=sampled
        )
        scheduler.update_from_output(output, runner)
        _record_requests(log, added, ids, end)
        if not ids and not batches and scheduler.has_unfinished_requests():  # a policy waiting for arrivals: idle
            if not pending:
                raise InputError("scenario", log.steps, "stalls in vLLM: requests wait and nothing is scheduled")
            now = max(now, arrival_time_s(scenario.arrival_steps[pending[0]]))
        if log.steps > max_steps:
            raise InputError("scenario", log.steps, "did not finish in vLLM (more steps than the limit)")
    return log


def run_fluidopt(scenario: Scenario, policy: Any = None, bins: Any = 1) -> StepLog:
    """Fluidopt's ``vllm-v1`` on the scenario with one-second steps (arrivals half a step before theirs).

    ``policy`` replaces ``vllm-v1`` (run with the engines' token conventions: the step that
    completes a prefill emits the first token); ``bins`` sorts the requests into its classes
    (decode-length edges, as :class:`fluidopt.sim.TraceArrivals` takes them).
    """
    from fluidopt.profile import GPUProfile
    from fluidopt.sim import TraceArrivals, VLLMV1Policy, simulate
    from fluidopt.timing import AffinePiece
    from fluidopt.trace import Trace
    from fluidopt.workload import workload_from_trace

    profile = GPUProfile(
        "unit-step",
        scenario.num_blocks * scenario.block_size,
        (AffinePiece(1.0, 0.0),),
        block_tokens=scenario.block_size,
    )
    arrivals = np.array([arrival_time_s(a) for a in scenario.arrival_steps])
    order = np.argsort(arrivals, kind="stable")
    trace = Trace("scenario", np.asarray(scenario.prompts)[order], np.asarray(scenario.outputs)[order], arrivals[order])
    policy = policy or VLLMV1Policy(
        max_num_seqs=scenario.max_num_seqs,
        max_num_batched_tokens=scenario.max_num_batched_tokens,
        long_prefill_token_threshold=scenario.long_prefill_token_threshold,
        block_size=scenario.block_size,
        enable_prefix_caching=scenario.enable_prefix_caching,
        async_scheduling=scenario.async_scheduling,
        watermark=scenario.watermark,
    )
    workload = workload_from_trace(trace, bins=bins, rate_per_s=1.0)
    result = simulate(
        workload,
        profile,
        policy,
        requests=trace.num_requests,
        arrivals=TraceArrivals(trace, bins=bins),
        conventions="vidur",
        drain=True,
        drain_timeout_s=1e9,  # one-second steps: the default timeout would cut a long tail short
        warmup_s=0.0,
        record_series=True,
        record_requests=True,
    )
    series = result.series or {}
    table = result.requests or {}
    records = {
        int(order[k]): (float(first), float(done), int(evictions))
        for k, first, done, evictions in zip(
            table["id"], table["first_token_s"], table["completion_s"], table["evictions"]
        )
    }
    return StepLog(
        [int(v) for v in series["batch_size"]],
        [int(v) for v in series["scheduled_tokens"]],
        [int(v) for v in series["preempted"]],
        records,
    )


def compare(vllm_log: StepLog, ours: StepLog) -> dict[str, Any]:
    """Step and preemption counts, the share of identical steps and the first step that differs (both sides)."""
    same = 0
    first = None
    for k in range(max(vllm_log.steps, ours.steps)):
        a = _step(vllm_log, k)
        b = _step(ours, k)
        if a == b:
            same += 1
        elif first is None:
            first = {"step": k, "vllm": a, "fluidopt": b}
    differing: list[int] = []
    if vllm_log.requests and ours.requests:  # a whole-engine log has none: only the steps are compared
        keys = set(vllm_log.requests) | set(ours.requests)
        differing = sorted(k for k in keys if vllm_log.requests.get(k) != ours.requests.get(k))
    return {
        "steps_vllm": vllm_log.steps,
        "steps_fluidopt": ours.steps,
        "preemptions_vllm": int(sum(vllm_log.preempted)),
        "preemptions_fluidopt": int(sum(ours.preempted)),
        "identical_step_share": same / max(vllm_log.steps, ours.steps, 1),
        "first_difference": first,
        "requests_differing": len(differing),
        "first_request_difference": None
        if not differing
        else {
            "request": differing[0],
            "vllm": vllm_log.requests.get(differing[0]),
            "fluidopt": ours.requests.get(differing[0]),
        },
    }


def _step(log: StepLog, k: int) -> dict[str, int] | None:
    if k >= log.steps:
        return None
    return {"batch": log.batch[k], "tokens": log.tokens[k], "preempted": log.preempted[k]}


def prepare_model_dir(workdir: Path) -> Path:
    """Write the tiny model's ``config.json`` into ``workdir`` (the scheduler and the engine read it); checks vLLM."""
    import json

    if not vllm_available():
        raise InputError("vllm", "missing", ENABLE)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(TINY_MODEL), encoding="utf-8")
    return workdir


def engine_check(scenarios: int, seed: int, workdir: Path) -> list[dict[str, Any]]:
    """Run ``scenarios`` seeded scenarios on both sides; one comparison each (with the scenario's knobs)."""
    prepare_model_dir(workdir)
    rows = []
    for s in np.random.SeedSequence(seed).spawn(scenarios):
        scenario = random_scenario(np.random.default_rng(s))
        row = compare(run_vllm(scenario, workdir), run_fluidopt(scenario))
        rows.append({**row, "requests": len(scenario.prompts), "knobs": scenario.knobs()})
    return rows
