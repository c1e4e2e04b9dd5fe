"""The engines' own defaults, as the engines compute them from the GPU they run on.

"Against the defaults" means against what the engine would pick on the profile's GPU, so the
defaults depend on the GPU's memory (and, for vLLM, its name), as in the engines' source:

- **vLLM** (``EngineArgs.get_batch_defaults`` in ``vllm/engine/arg_utils.py``; the same rule in
  vLLM 0.10 through 0.19, the version of the shared GPU runs): for the OpenAI API server (``vllm
  serve``), ``max_num_batched_tokens`` 8192 and ``max_num_seqs`` 1024 on a GPU with at least 70 GiB
  of memory whose name does not contain "a100" (H100, H200, B200, MI300x, RTX PRO 6000), else 2048
  and 256 (A100 is kept on the small defaults on purpose: larger budgets lowered its throughput,
  vLLM PR #17885).  The offline ``LLM`` class uses 16384 / 1024 and 8192 / 256.  When the memory is
  unknown vLLM takes the small defaults.  ``long_prefill_token_threshold`` stays 0 (off).
- **SGLang** (``ServerArgs._handle_gpu_memory_settings`` in ``sglang/srt/server_args.py``, 0.5
  series): ``chunked_prefill_size`` 2048 below 35 GiB (T4, RTX 4080 / 4090, A10), 4096 below 60 GiB
  (A100 40 GB, L40S), 8192 below 160 GiB (A100 80 GB, H100, H200), 16384 above (B200, MI300x), 4096
  when the memory is unknown; ``max_prefill_tokens`` 16384, ``schedule_conservativeness`` 1.0 and
  ``max_running_requests`` derived from the KV pool (0 here: the simulated scheduler derives it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2**30
VLLM_VERSION = "vLLM 0.10-0.19 (EngineArgs.get_batch_defaults)"
SGLANG_VERSION = "SGLang 0.5 (ServerArgs._handle_gpu_memory_settings)"
USAGE_CONTEXTS = ("api-server", "llm-class")

# (memory below GiB, chunked_prefill_size), in SGLang's order; above the last: 16384.
SGLANG_CHUNK_BANDS = ((20, 2048), (35, 2048), (60, 4096), (90, 8192), (160, 8192))
SGLANG_LARGEST_CHUNK = 16384
SGLANG_UNKNOWN_MEMORY_CHUNK = 4096
SGLANG_MAX_PREFILL_TOKENS = 16384
SGLANG_CONSERVATIVENESS = 1.0


@dataclass(frozen=True)
class EngineDefaults:
    """An engine's default knobs on one GPU, and the rule and version they follow."""

    engine: str
    knobs: dict[str, Any]
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"engine": self.engine, "knobs": dict(self.knobs), "rule": self.rule}


def vllm_defaults(gpu_memory_gib: float | None, gpu_name: str = "", usage: str = "api-server") -> EngineDefaults:
    """VLLM's ``max_num_batched_tokens`` and ``max_num_seqs`` on this GPU (module docstring)."""
    if usage not in USAGE_CONTEXTS:
        raise ValueError(f"usage must be one of {USAGE_CONTEXTS}, not {usage!r}")
    large = gpu_memory_gib is not None and gpu_memory_gib >= 70 and "a100" not in gpu_name.lower()
    if large:
        tokens, seqs = (8192, 1024) if usage == "api-server" else (16384, 1024)
    else:
        tokens, seqs = (2048, 256) if usage == "api-server" else (8192, 256)
    where = (
        "memory unknown"
        if gpu_memory_gib is None
        else f"{gpu_memory_gib:g} GiB {gpu_name or 'GPU'}: {'>= 70 GiB, not an A100' if large else 'small defaults'}"
    )
    return EngineDefaults(
        "vllm",
        {"max_num_seqs": seqs, "max_num_batched_tokens": tokens, "long_prefill_token_threshold": 0},
        f"{VLLM_VERSION}, {usage}, {where}",
    )


def sglang_defaults(gpu_memory_gib: float | None) -> EngineDefaults:
    """SGLang's chunked prefill size and the rest of its scheduling defaults on this GPU (module docstring)."""
    if gpu_memory_gib is None:
        chunk, where = SGLANG_UNKNOWN_MEMORY_CHUNK, "memory unknown"
    else:
        chunk = next((size for below, size in SGLANG_CHUNK_BANDS if gpu_memory_gib < below), SGLANG_LARGEST_CHUNK)
        where = f"{gpu_memory_gib:g} GiB"
    return EngineDefaults(
        "sglang",
        {
            "max_running_requests": 0,
            "chunked_prefill_size": chunk,
            "max_prefill_tokens": SGLANG_MAX_PREFILL_TOKENS,
            "schedule_conservativeness": SGLANG_CONSERVATIVENESS,
        },
        f"{SGLANG_VERSION}, {where}",
    )


def engine_defaults_for(engine: str, profile: Any) -> EngineDefaults:
    """The defaults ``engine`` would take on ``profile``'s GPU (its ``gpu`` and ``gpu_memory_gib``)."""
    if engine == "vllm":
        return vllm_defaults(profile.gpu_memory_gib, profile.gpu)
    if engine == "sglang":
        return sglang_defaults(profile.gpu_memory_gib)
    raise ValueError(f"unknown engine {engine!r}")
