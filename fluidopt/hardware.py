"""GPU specifications, model shapes and the KV-cache memory planner.

Specifications are public vendor figures (see ``shared/data/README.md``); model shapes are from
the models' published configurations.  The planner follows Vidur's: keep a fraction of HBM,
subtract the weights (2 bytes per parameter in fp16/bf16) and divide the rest by the KV bytes
per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluidopt.errors import InputError, require, require_finite_number

GIB = 2**30


@dataclass(frozen=True)
class GPUSpec:
    """Public specification of one GPU."""

    name: str
    hbm_gib: float
    hbm_bandwidth_bytes_per_s: float
    dense_bf16_flops: float


@dataclass(frozen=True)
class ModelShape:
    """Shape of a decoder-only transformer as far as memory and timing need it."""

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    parameters: float
    bytes_per_value: int = 2

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V cache per token: ``2 * layers * kv_heads * head_dim * bytes``."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_value

    @property
    def weight_bytes(self) -> float:
        """Bytes of weights at ``bytes_per_value`` per parameter."""
        return self.parameters * self.bytes_per_value


GPUS: dict[str, GPUSpec] = {
    "a100-80gb": GPUSpec("a100-80gb", 80, 2.039e12, 312e12),
    "a100-40gb": GPUSpec("a100-40gb", 40, 1.555e12, 312e12),
    "h100-80gb": GPUSpec("h100-80gb", 80, 3.35e12, 989e12),
    "h200": GPUSpec("h200", 141, 4.8e12, 989e12),
    "l40s": GPUSpec("l40s", 48, 0.864e12, 362e12),
    "a40": GPUSpec("a40", 48, 0.696e12, 150e12),
}

MODELS: dict[str, ModelShape] = {
    "llama-2-7b": ModelShape("llama-2-7b", 32, 32, 128, 6.74e9),
    "llama-3-8b": ModelShape("llama-3-8b", 32, 8, 128, 8.03e9),
    "llama-2-70b": ModelShape("llama-2-70b", 80, 8, 128, 6.9e10),
    "mistral-7b": ModelShape("mistral-7b", 32, 8, 128, 7.24e9),
}


def gpu_spec(name: str) -> GPUSpec:
    """Look up a GPU by name."""
    if name not in GPUS:
        raise InputError("gpu", name, f"unknown GPU; choose one of {', '.join(sorted(GPUS))}")
    return GPUS[name]


def model_shape(name: str) -> ModelShape:
    """Look up a model shape by name."""
    if name not in MODELS:
        raise InputError("model", name, f"unknown model; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def kv_capacity_tokens(gpu: GPUSpec, model: ModelShape, memory_utilisation: float = 0.9) -> int:
    """KV-cache capacity in tokens: ``(HBM * utilisation - weights) / KV bytes per token``.

    Parameters
    ----------
    gpu, model : GPUSpec, ModelShape
        Hardware and model.
    memory_utilisation : float
        Fraction of HBM the serving engine may use (Vidur and vLLM default 0.9).

    Raises
    ------
    InputError
        When the weights do not fit in the usable memory.

    """
    utilisation = require_finite_number(memory_utilisation, "memory_utilisation")
    require(0 < utilisation <= 1, "memory_utilisation", memory_utilisation, "must be in (0, 1]")
    free_bytes = gpu.hbm_gib * GIB * utilisation - model.weight_bytes
    require(
        free_bytes > model.kv_bytes_per_token,
        "memory_utilisation",
        memory_utilisation,
        f"leaves no KV memory: {model.name} weights do not fit on {gpu.name}",
    )
    return int(free_bytes // model.kv_bytes_per_token)


def decode_attention_s_per_token(gpu: GPUSpec, model: ModelShape, bandwidth_efficiency: float = 1.0) -> float:
    """Seconds to read one cached token's K and V from HBM (decode attention is memory-bound)."""
    return model.kv_bytes_per_token / (gpu.hbm_bandwidth_bytes_per_s * bandwidth_efficiency)
