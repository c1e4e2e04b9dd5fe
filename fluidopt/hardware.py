"""GPU specifications, model shapes and the KV-cache memory planner.

Specifications are public vendor figures (see ``shared/data/README.md``); model shapes are from
the models' published configurations.  The planner follows Vidur's: keep a fraction of HBM,
subtract the weights (2 bytes per parameter in fp16/bf16) and divide the rest by the KV bytes
per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fluidopt.errors import InputError, reject_unknown_keys, require, require_finite_number, require_whole_number
from fluidopt.tomlio import parse_toml, read_toml

GIB = 2**30


@dataclass(frozen=True)
class GPUSpec:
    """Public specification of one GPU (``fluidopt/data/gpus.toml``, or a user's TOML of the same keys)."""

    name: str
    hbm_gib: float
    hbm_bandwidth_bytes_per_s: float
    dense_bf16_flops: float
    dense_fp8_flops: float = 0.0
    link: str = ""
    link_bandwidth_bytes_per_s: float = 0.0
    link_latency_s: float = 0.0
    source: str = ""
    host_bandwidth_bytes_per_s: float = 0.0  # the host link (PCIe x16, one way): weights offloaded to CPU memory


@dataclass(frozen=True)
class ModelShape:
    """Shape of a decoder-only transformer as far as memory and timing need it.

    ``ffn_hidden`` is the dense MLP's width; a mixture-of-experts model has ``experts`` of
    ``expert_ffn_hidden`` each, ``experts_per_token`` of them per token, and a shared expert of
    ``shared_expert_ffn_hidden`` (0 for none) in each of its ``moe_layers`` (the other layers are dense).
    """

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    parameters: float
    bytes_per_value: int = 2
    hidden: int = 0
    ffn_hidden: int = 0
    q_heads: int = 0
    vocab: int = 0
    tied_embeddings: bool = False
    experts: int = 0
    experts_per_token: int = 0
    expert_ffn_hidden: int = 0
    shared_expert_ffn_hidden: int = 0
    moe_layers: int = 0
    architecture: str = ""

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.experts > 0

    @property
    def active_parameters(self) -> float:
        """Parameters one token runs through (all of a dense model; the chosen experts of an MoE one)."""
        if not self.is_moe:
            return self.parameters
        idle = self.moe_layers * (self.experts - self.experts_per_token) * 3 * self.hidden * self.expert_ffn_hidden
        return self.parameters - idle

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V cache per token: ``2 * layers * kv_heads * head_dim * bytes``."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_value

    @property
    def weight_bytes(self) -> float:
        """Bytes of weights at ``bytes_per_value`` per parameter."""
        return self.parameters * self.bytes_per_value

    @property
    def expert_parameters(self) -> float:
        """Parameters of the routed experts (gated MLPs ``3 x hidden x expert_ffn``); 0 for a dense model."""
        return float(self.moe_layers * self.experts * 3 * self.hidden * self.expert_ffn_hidden)

    def weight_bytes_per_gpu(self, tensor_parallel: int = 1, expert_group: int = 1) -> float:
        """One GPU's weights: all but the experts split over the TP group, the experts over the EP group.

        Without expert parallelism (``expert_group = 1``) the experts are split over the TP group
        with the rest (vLLM splits each expert's width); with it, each GPU holds
        ``experts / expert_group`` whole experts.
        """
        experts = self.expert_parameters
        group = expert_group if expert_group > 1 else tensor_parallel
        return ((self.parameters - experts) / tensor_parallel + experts / group) * self.bytes_per_value

    @property
    def layer_parameters(self) -> float:
        """Parameters of the transformer layers alone (Vidur's count: no embedding, no LM head).

        Attention ``hidden x (q_heads + 2 kv_heads) x head_dim`` plus the output projection,
        a gated MLP ``3 x hidden x ffn_hidden`` and two norms, times the layers.
        """
        require(self.hidden > 0 and self.ffn_hidden > 0, "model", self.name, "has no layer shape for Vidur's planner")
        attention = self.hidden * (self.q_heads + 2 * self.kv_heads) * self.head_dim
        attention += self.q_heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.ffn_hidden
        return float(self.layers * (attention + mlp + 2 * self.hidden))


GPU_KEYS = (
    "memory_gib",
    "bandwidth_bytes_per_s",
    "dense_bf16_flops",
    "dense_fp8_flops",
    "link",
    "link_bandwidth_bytes_per_s",
    "link_latency_s",
    "host_bandwidth_bytes_per_s",
    "source",
)
GPU_LINKS = ("nvlink", "pcie", "")


def gpu_from_dict(name: str, data: Any, where: str) -> GPUSpec:
    """A GPU from its TOML table (memory, bandwidth and BF16 rate required; errors name the field)."""
    require(isinstance(data, dict), where, data, "must be a table")
    reject_unknown_keys(data, GPU_KEYS, where)
    numbers = {}
    for key in GPU_KEYS[:3]:
        require(key in data, f"{where}.{key}", None, "is required")
    for key in ("memory_gib", "bandwidth_bytes_per_s", "dense_bf16_flops"):
        value = require_finite_number(data[key], f"{where}.{key}")
        require(value > 0, f"{where}.{key}", value, "must be > 0")
        numbers[key] = value
    for key in ("dense_fp8_flops", "link_bandwidth_bytes_per_s", "link_latency_s", "host_bandwidth_bytes_per_s"):
        value = require_finite_number(data.get(key, 0.0), f"{where}.{key}")
        require(value >= 0, f"{where}.{key}", value, "must be >= 0")
        numbers[key] = value
    link = data.get("link", "")
    require(link in GPU_LINKS, f"{where}.link", link, "must be nvlink or pcie")
    return GPUSpec(
        name,
        numbers["memory_gib"],
        numbers["bandwidth_bytes_per_s"],
        numbers["dense_bf16_flops"],
        numbers["dense_fp8_flops"],
        link,
        numbers["link_bandwidth_bytes_per_s"],
        numbers["link_latency_s"],
        str(data.get("source", "")),
        numbers["host_bandwidth_bytes_per_s"],
    )


def _builtin_gpus() -> dict[str, GPUSpec]:
    data = parse_toml(
        resources.files("fluidopt").joinpath("data", "gpus.toml").read_text(encoding="utf-8"), "gpus.toml"
    )
    return {
        name: gpu_from_dict(name, table, f"gpus.toml [{name}]")
        for name, table in data.items()
        if name != "schema_version"
    }


GPUS: dict[str, GPUSpec] = _builtin_gpus()

MODELS: dict[str, ModelShape] = {
    "llama-2-7b": ModelShape("llama-2-7b", 32, 32, 128, 6.74e9, hidden=4096, ffn_hidden=11008, q_heads=32),
    "llama-3-8b": ModelShape("llama-3-8b", 32, 8, 128, 8.03e9, hidden=4096, ffn_hidden=14336, q_heads=32),
    "llama-2-70b": ModelShape("llama-2-70b", 80, 8, 128, 6.9e10, hidden=8192, ffn_hidden=28672, q_heads=64),
    "mistral-7b": ModelShape("mistral-7b", 32, 8, 128, 7.24e9, hidden=4096, ffn_hidden=14336, q_heads=32),
    # The models of the shared vLLM runs (../shared/data/llmservingsim; public model cards).
    "llama-3.1-8b": ModelShape("llama-3.1-8b", 32, 8, 128, 8.03e9, hidden=4096, ffn_hidden=14336, q_heads=32),
    "qwen3-32b": ModelShape("qwen3-32b", 64, 8, 128, 3.28e10, hidden=5120, ffn_hidden=25600, q_heads=64),
    # Qwen3-30B-A3B(-Instruct-2507), from its public config.json facts: 48 layers, hidden 2048, 32
    # heads, 4 KV heads of 128, 128 experts of width 768, 8 per token, vocabulary 151,936, untied;
    # the parameters are fluidopt.model_config's count of that config (30.5 B, the published total).
    "qwen3-30b-a3b": ModelShape(
        "qwen3-30b-a3b",
        48,
        4,
        128,
        30_532_122_624.0,
        hidden=2048,
        q_heads=32,
        vocab=151_936,
        experts=128,
        experts_per_token=8,
        expert_ffn_hidden=768,
        moe_layers=48,
        architecture="qwen3_moe",
    ),
}
MODELS["qwen3-30b-a3b-instruct-2507"] = MODELS["qwen3-30b-a3b"]
# Config facts of common public models (their config.json files); parameters are
# fluidopt.model_config's count of each config (tests/test_roofline.py recounts them).
MODELS["mixtral-8x7b"] = ModelShape(
    "mixtral-8x7b",
    32,
    8,
    128,
    46_702_792_704.0,
    hidden=4096,
    q_heads=32,
    vocab=32_000,
    experts=8,
    experts_per_token=2,
    expert_ffn_hidden=14_336,
    moe_layers=32,
    architecture="mixtral",
)
MODELS["codellama-34b"] = ModelShape(
    "codellama-34b",
    48,
    8,
    128,
    33_743_970_304.0,
    hidden=8192,
    ffn_hidden=22_016,
    q_heads=64,
    vocab=32_000,
    architecture="llama",
)
MODELS["llama-3.1-70b"] = ModelShape(
    "llama-3.1-70b",
    80,
    8,
    128,
    70_553_706_496.0,
    hidden=8192,
    ffn_hidden=28_672,
    q_heads=64,
    vocab=128_256,
    architecture="llama",
)


def gpu_spec(name: str) -> GPUSpec:
    """A GPU by built-in name, or from a TOML file of the same keys (a path ending in .toml)."""
    if str(name).endswith(".toml"):
        data = read_toml(name)
        data.pop("schema_version", None)
        return gpu_from_dict(str(data.pop("name", Path(name).stem)), data, str(name))
    if name not in GPUS:
        raise InputError("gpu", name, f"unknown GPU; choose one of {', '.join(sorted(GPUS))}, or give a GPU TOML file")
    return GPUS[name]


def model_for_engine_name(name: str) -> ModelShape:
    """The model an engine names by its Hugging Face id (``meta-llama/Llama-3.1-8B`` -> ``llama-3.1-8b``)."""
    key = str(name).rsplit("/", 1)[-1].lower().replace("meta-llama-", "llama-")
    if key not in MODELS:
        raise InputError("model", name, f"no model shape for it; known: {', '.join(sorted(MODELS))}")
    return MODELS[key]


def model_shape(name: str) -> ModelShape:
    """A model shape by built-in name (:func:`fluidopt.model_config.resolve_model` also reads a config.json)."""
    if name not in MODELS:
        raise InputError(
            "model", name, f"unknown model; choose one of {', '.join(sorted(MODELS))}, or give a config.json path"
        )
    return MODELS[name]


def kv_heads_per_gpu(model: ModelShape, tensor_parallel: int) -> int:
    """KV heads each GPU of a tensor-parallel group holds (replicated when the group outnumbers them).

    The attention heads must split evenly over the group, and the KV heads must either split
    evenly or be a divisor of the group (each then replicated), as vLLM requires.
    """
    tp = require_whole_number(tensor_parallel, "tensor_parallel", 1)
    if model.q_heads:
        require(model.q_heads % tp == 0, "tensor_parallel", tp, f"must divide the {model.q_heads} attention heads")
    require(
        model.kv_heads % tp == 0 or tp % model.kv_heads == 0,
        "tensor_parallel",
        tp,
        f"must divide, or be a multiple of, the {model.kv_heads} KV heads",
    )
    return max(model.kv_heads // tp, 1)


def kv_capacity_tokens(
    gpu: GPUSpec, model: ModelShape, memory_utilisation: float = 0.9, tensor_parallel: int = 1
) -> int:
    """KV-cache capacity in tokens of one replica: ``(HBM * utilisation - weights / TP) / KV bytes per token per GPU``.

    Parameters
    ----------
    gpu, model : GPUSpec, ModelShape
        Hardware and model.
    memory_utilisation : float
        Fraction of HBM the serving engine may use (Vidur and vLLM default 0.9).
    tensor_parallel : int
        GPUs the model is split over: each holds ``1 / TP`` of the weights and its share of every
        token's KV heads (:func:`kv_heads_per_gpu`).

    Raises
    ------
    InputError
        When the weights do not fit in the usable memory even split, or TP does not split the heads.

    """
    utilisation = require_finite_number(memory_utilisation, "memory_utilisation")
    require(0 < utilisation <= 1, "memory_utilisation", memory_utilisation, "must be in (0, 1]")
    tp = require_whole_number(tensor_parallel, "tensor_parallel", 1)
    per_token = 2 * model.layers * kv_heads_per_gpu(model, tp) * model.head_dim * model.bytes_per_value
    free_bytes = gpu.hbm_gib * GIB * utilisation - model.weight_bytes / tp
    require(
        free_bytes > per_token,
        "memory_utilisation",
        memory_utilisation,
        f"leaves no KV memory: {model.name} weights do not fit on {gpu.name}"
        + (f" even split over {tp} GPUs" if tp > 1 else ""),
    )
    return int(free_bytes // per_token)


def vidur_kv_capacity_tokens(
    gpu: GPUSpec,
    model: ModelShape,
    *,
    memory_margin: float = 0.1,
    block_tokens: int = 16,
    max_request_tokens: int = 4096,
) -> int:
    """KV capacity as Vidur plans it: whole maximum-length requests of whole blocks.

    Vidur keeps ``1 - memory_margin`` of HBM, subtracts the layer weights (2 bytes per layer
    parameter, :attr:`ModelShape.layer_parameters`), fits as many requests of
    ``max_request_tokens`` KV tokens as the rest allows, and hands out their blocks.  For
    Meta-Llama-3-8B on an 80 GB A100 this gives 117 requests x 256 blocks = 29,952 blocks of 16
    tokens, the figure recorded in the paper authors' runs (shared/data/paper/README).
    """
    margin = require_finite_number(memory_margin, "memory_margin")
    require(0 <= margin < 1, "memory_margin", memory_margin, "must be in [0, 1)")
    require(block_tokens >= 1, "block_tokens", block_tokens, "must be >= 1")
    require(max_request_tokens >= 1, "max_request_tokens", max_request_tokens, "must be >= 1")
    free_bytes = gpu.hbm_gib * GIB * (1 - margin) - model.layer_parameters * model.bytes_per_value
    per_request = max_request_tokens * model.kv_bytes_per_token
    requests = int(free_bytes // per_request)
    require(requests >= 1, "memory_margin", memory_margin, f"leaves no room for one {max_request_tokens}-token request")
    blocks_per_request = -(-max_request_tokens // block_tokens)
    return requests * blocks_per_request * block_tokens


def decode_attention_s_per_token(gpu: GPUSpec, model: ModelShape, bandwidth_efficiency: float = 1.0) -> float:
    """Seconds to read one cached token's K and V from HBM (decode attention is memory-bound)."""
    return model.kv_bytes_per_token / (gpu.hbm_bandwidth_bytes_per_s * bandwidth_efficiency)
