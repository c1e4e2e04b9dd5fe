"""Builder: a ``roofline`` profile of any model on any GPU from public facts alone.

The work of one step on one GPU comes from the model's shape (:class:`~fluidopt.hardware.ModelShape`,
from a Hugging Face ``config.json`` or a built-in name) split by the deployment's parallelism;
the achieved rates are the GPU's spec sheet (:class:`~fluidopt.hardware.GPUSpec`) times the
efficiencies of :class:`RooflineCalibration`, fitted once to measured per-operator tables
(:mod:`fluidopt.timing.fit.roofline_calibration`, ``scripts/calibrate_roofline.py``) and shipped
in ``fluidopt/data/roofline.toml``.  The KV capacity follows vLLM's memory rule with the weights
split over the tensor- (and expert-) parallel group.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from fluidopt.errors import require, require_finite_number
from fluidopt.hardware import GPUS, GPUSpec, ModelShape, gpu_spec, kv_heads_per_gpu, model_for_engine_name
from fluidopt.model_config import resolve_model
from fluidopt.timing.fit.engine_tables import (
    Parallelism,
    _run_hardware,
    kv_cache_record,
    read_interconnect,
    vllm_kv_capacity_tokens,
)
from fluidopt.timing.roofline import RATE_KEYS, WORK_KEYS, RooflineTiming
from fluidopt.tomlio import parse_toml

# Kernels vLLM launches per decoder layer (eager count): two RMSNorms, the QKV projection, rotary
# embedding, the KV-cache write, attention, the output projection, then a gated MLP's GEMM,
# activation and GEMM; Qwen3 adds a q/k norm.  A fused MoE layer runs the router GEMM, top-k,
# the token sort, two grouped GEMMs, the activation and the weighted sum in place of the MLP's three.
DENSE_LAYER_KERNELS = 9  # the attention kernel's floor is attention_s
MOE_EXTRA_KERNELS = 4
STEP_KERNELS = 3  # embedding, final norm, LM head (the sampler's own launches are in sampler_s)
LOGIT_BYTES = 4  # vLLM samples from float32 logits
CALIBRATION_KEYS = (
    "compute_efficiency",
    "bandwidth_efficiency",
    "attention_compute_efficiency",
    "prefill_kv_efficiency",
    "decode_kv_efficiency",
    "mixed_decode_kv_efficiency",
    "kernel_s",
    "attention_s",
    "attention_sequence_s",
    "sampler_s",
    "sampler_passes",
)


@dataclass(frozen=True)
class RooflineCalibration:
    """Efficiencies and fixed costs shared by every GPU (fitted to measured operator tables).

    Attributes
    ----------
    compute_efficiency, bandwidth_efficiency : float
        Achieved fractions of the spec sheet's dense BF16 rate and memory bandwidth in GEMMs and
        element-wise kernels.
    attention_compute_efficiency : float
        The same for the causal prefill's query-key pairs.
    prefill_kv_efficiency, decode_kv_efficiency, mixed_decode_kv_efficiency : float
        Achieved fractions of the bandwidth reading KV: a prefill chunk's prefix, decodes alone,
        decodes beside a prefill.
    kernel_s, attention_s, attention_sequence_s : float
        Launch floor per kernel, the attention's floor per layer and its cost per decode per
        layer (seconds).
    sampler_s, sampler_passes : float
        The sampler's fixed cost per step and its passes over each sequence's float32 logits.
    source : str
        Which tables the values were fitted to.

    """

    compute_efficiency: float
    bandwidth_efficiency: float
    attention_compute_efficiency: float
    prefill_kv_efficiency: float
    decode_kv_efficiency: float
    mixed_decode_kv_efficiency: float
    kernel_s: float
    attention_s: float
    attention_sequence_s: float
    sampler_s: float
    sampler_passes: float
    source: str = ""

    def __post_init__(self) -> None:
        for key in CALIBRATION_KEYS:
            value = require_finite_number(getattr(self, key), f"calibration.{key}")
            require(value >= 0, f"calibration.{key}", value, "must be >= 0")
        for key in CALIBRATION_KEYS[:6]:
            require(getattr(self, key) > 0, f"calibration.{key}", getattr(self, key), "must be > 0")

    def to_dict(self) -> dict[str, Any]:
        """The ``[calibration]`` table of ``roofline.toml``."""
        return asdict(self)


def shipped_calibration() -> RooflineCalibration:
    """The calibration shipped with fluidopt (``fluidopt/data/roofline.toml``, ``[calibration]``)."""
    text = resources.files("fluidopt").joinpath("data", "roofline.toml").read_text(encoding="utf-8")
    table = parse_toml(text, "roofline.toml")["calibration"]
    return RooflineCalibration(**{key: table[key] for key in (*CALIBRATION_KEYS, "source")})


def vocabulary(model: ModelShape) -> float:
    """The model's vocabulary (a built-in shape without one: Llama 3's 128,256, else Qwen's 151,936)."""
    return float(model.vocab or (128_256 if model.name.startswith("llama-3") else 151_936))


def qk_passes(model: ModelShape) -> int:
    """Element-wise passes over the queries and keys per layer: rotary embedding, and Qwen3's q/k norm."""
    return 2 if model.architecture.startswith("qwen3") or model.name.lower().startswith("qwen3") else 1


def roofline_work(model: ModelShape, parallel: Parallelism) -> dict[str, float]:
    """One GPU's work per step (:data:`~fluidopt.timing.roofline.WORK_KEYS`) for ``model`` split by ``parallel``.

    Tensor parallelism splits the attention heads, the MLP widths, the LM head's vocabulary and
    (without expert parallelism) every expert's width; KV heads are split or replicated as vLLM
    does (:func:`~fluidopt.hardware.kv_heads_per_gpu`).  With expert parallelism each of the
    ``tensor x data`` GPUs holds ``experts / group`` whole experts and serves the tokens of all
    ``data`` engines, which exchange them by an all-gather and a reduce-scatter per MoE layer.
    """
    require(model.hidden > 0, "model.hidden_size", model.hidden, "is needed for a roofline profile")
    require(model.q_heads > 0, "model.num_attention_heads", model.q_heads, "is needed for a roofline profile")
    require(model.is_moe or model.ffn_hidden > 0, "model.intermediate_size", model.ffn_hidden, "must be > 0")
    tp, b, h, hd = parallel.tensor, float(model.bytes_per_value), float(model.hidden), float(model.head_dim)
    kv_heads = kv_heads_per_gpu(model, tp)
    q_heads = model.q_heads / tp
    vocab = vocabulary(model)
    layers, moe_layers = model.layers, model.moe_layers if model.is_moe else 0
    attention = (q_heads + 2 * kv_heads) * hd * h + q_heads * hd * h
    dense_mlp = 3 * h * model.ffn_hidden / tp
    in_moe_layer = 3 * h * model.shared_expert_ffn_hidden / tp + h * model.experts  # shared expert, router
    dense = layers * attention + (layers - moe_layers) * dense_mlp + moe_layers * in_moe_layer
    group = parallel.expert_group
    width = model.experts_per_token * model.expert_ffn_hidden + model.shared_expert_ffn_hidden
    activation = (layers - moe_layers) * model.ffn_hidden + moe_layers * width
    qk_traffic = 2 * (q_heads + kv_heads) * hd * qk_passes(model)
    elementwise = layers * (4 * h + qk_traffic + 2 * 2 * kv_heads * hd) + 3 * activation / tp + 3 * h
    kernels = layers * DENSE_LAYER_KERNELS + moe_layers * MOE_EXTRA_KERNELS + STEP_KERNELS
    exchanges = 2 * moe_layers if parallel.expert and parallel.data > 1 else 0
    return {
        "bytes_per_value": b,
        "dense_weight_bytes": dense * b,
        "lm_head_weight_bytes": vocab * h / tp * b,
        "elementwise_bytes_per_token": elementwise * b,
        "attention_layers": float(layers),
        "attention_flops_per_pair": layers * 4 * q_heads * hd,
        "kv_bytes_per_token": layers * 2 * kv_heads * hd * b,
        "sampler_bytes_per_sequence": vocab * LOGIT_BYTES,
        "kernels_per_step": float(kernels),
        "moe_layers": float(moe_layers),
        "experts": float(model.experts),
        "experts_per_token": float(model.experts_per_token),
        "local_experts": float(model.experts / group) if model.is_moe else 0.0,
        "expert_weight_bytes": 3 * h * model.expert_ffn_hidden * b / (1 if parallel.expert else tp),
        "moe_token_factor": float(parallel.data if parallel.expert else 1),
        "allreduces_per_step": float(2 * layers if tp > 1 else 0),
        "allreduce_bytes_per_token": 2.0 * (tp - 1) / tp * h * b,
        "exchanges_per_step": float(exchanges),
        "exchange_bytes_per_token": (parallel.data - 1) * h * b,
    }


def roofline_rates(gpu: GPUSpec, calibration: RooflineCalibration) -> dict[str, float]:
    """The achieved rates (:data:`~fluidopt.timing.roofline.RATE_KEYS`) of ``gpu`` under ``calibration``."""
    return {
        "compute_flops_per_s": gpu.dense_bf16_flops * calibration.compute_efficiency,
        "bandwidth_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s * calibration.bandwidth_efficiency,
        "attention_flops_per_s": gpu.dense_bf16_flops * calibration.attention_compute_efficiency,
        "prefill_kv_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s * calibration.prefill_kv_efficiency,
        "decode_kv_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s * calibration.decode_kv_efficiency,
        "mixed_decode_kv_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s * calibration.mixed_decode_kv_efficiency,
        "attention_s": calibration.attention_s,
        "attention_sequence_s": calibration.attention_sequence_s,
        "link_bandwidth_bytes_per_s": gpu.link_bandwidth_bytes_per_s,
        "link_latency_s": gpu.link_latency_s,
        "kernel_s": calibration.kernel_s,
        "step_overhead_s": calibration.sampler_s,
        "sequence_overhead_s": 0.0,
        "async_scheduling": 0.0,
    }


def roofline_timing(
    gpu: GPUSpec,
    model: ModelShape,
    parallel: Parallelism | None = None,
    calibration: RooflineCalibration | None = None,
) -> RooflineTiming:
    """The roofline timing of one engine's GPU (module docstring); refuses a TP that needs a link the GPU lacks."""
    parallel = parallel or Parallelism()
    calibration = calibration or shipped_calibration()
    work = roofline_work(model, parallel)
    work["sampler_bytes_per_sequence"] *= calibration.sampler_passes
    rates = roofline_rates(gpu, calibration)
    if work["allreduces_per_step"] + work["exchanges_per_step"] > 0:
        require(
            gpu.link_bandwidth_bytes_per_s > 0,
            f"gpu {gpu.name}: link_bandwidth_bytes_per_s",
            gpu.link_bandwidth_bytes_per_s,
            "is needed for tensor or expert parallelism",
        )
    fit = {
        "source": "roofline from public specifications (fluidopt.timing.fit.roofline)",
        "gpu": gpu.name,
        "gpu_source": gpu.source,
        "model": model.name,
        "parallel": {"tensor": parallel.tensor, "data": parallel.data, "expert": parallel.expert},
        "calibration": calibration.to_dict(),
    }
    return RooflineTiming(tuple(rates[key] for key in RATE_KEYS), tuple(work[key] for key in WORK_KEYS), fit)


def roofline_profile(
    gpu: GPUSpec,
    model: ModelShape,
    parallel: Parallelism | None = None,
    *,
    gpu_memory_utilization: float = 0.9,
    max_num_batched_tokens: int = 2048,
    block_size: int = 16,
    kv_capacity_tokens: int | None = None,
    name: str | None = None,
    calibration: RooflineCalibration | None = None,
) -> Any:
    """A :class:`~fluidopt.profile.GPUProfile` of one engine from the spec sheet and the model's shape.

    KV capacity: ``kv_capacity_tokens`` when given, else vLLM's memory rule
    (:func:`~fluidopt.timing.fit.engine_tables.vllm_kv_capacity_tokens`) on the GPU's memory with
    the weights split over the tensor- (and expert-) parallel group.
    """
    from fluidopt.profile import GPUProfile

    parallel = parallel or Parallelism()
    utilization = require_finite_number(gpu_memory_utilization, "gpu_memory_utilization")
    require(0 < utilization <= 1, "gpu_memory_utilization", utilization, "must be in (0, 1]")
    timing = roofline_timing(gpu, model, parallel, calibration)
    if kv_capacity_tokens is None:
        group = parallel.expert_group
        weights = model.weight_bytes_per_gpu(parallel.tensor, group)
        require(
            weights < gpu.hbm_gib * 2**30 * utilization,
            "gpu_memory_utilization",
            utilization,
            f"leaves no room: {model.name} needs {weights / 2**30:.1f} GiB of weights per GPU "
            f"(split over {parallel.tensor} GPU(s)) and {gpu.name} offers {gpu.hbm_gib * utilization:.1f} GiB",
        )
        capacity = vllm_kv_capacity_tokens(
            model,
            gpu.hbm_gib * 2**30,
            tensor_parallel=parallel.tensor,
            gpu_memory_utilization=utilization,
            max_num_batched_tokens=max_num_batched_tokens,
            block_size=block_size,
            expert_group=group,
        )
        source = f"vLLM's memory rule: {gpu.hbm_gib:g} GiB x {utilization:g} - weights / group - activation peak"
    else:
        capacity, source = int(kv_capacity_tokens), "given"
    suffix = f"-tp{parallel.tensor}" + (f"-dp{parallel.data}" if parallel.data > 1 else "")
    suffix += "-ep" if parallel.expert else ""
    label = name or f"{gpu.name}-{model.name}{suffix}-roofline"
    description = (
        f"{model.name} on {gpu.name} ({suffix[1:]}): roofline from the spec sheet with efficiencies fitted to "
        f"measured operator tables; KV capacity {capacity} tokens ({source})"
    )
    fit = {**timing.fit, "kv_capacity_source": source}
    return GPUProfile(
        label,
        capacity,
        description=description,
        fit=fit,
        timing=timing,
        block_tokens=block_size,
        gpu=gpu.name,
        gpu_memory_gib=gpu.hbm_gib,
    )


# LLMServingSim's hardware names of the shared runs and tables -> fluidopt's GPU names.
ENGINE_GPUS = {"RTX4090": "rtx4090", "RTXPRO6000": "rtx-pro-6000", "A100": "a100-80gb", "H100": "h100-80gb"}
# Words of a device name (torch.cuda.get_device_name) -> fluidopt's GPU name, most specific first.
DEVICE_WORDS = (
    (("H100", "PCIE"), "h100-pcie"),
    (("H100",), "h100-80gb"),
    (("H200",), "h200"),
    (("B200",), "b200"),
    (("A100", "40GB"), "a100-40gb"),
    (("A100",), "a100-80gb"),
    (("L40S",), "l40s"),
    (("A40",), "a40"),
    (("L4",), "l4"),
    (("RTX", "4090"), "rtx4090"),
    (("RTX", "PRO", "6000"), "rtx-pro-6000"),
)


def gpu_for_run(hardware: str, device_name: str = "") -> str | None:
    """The GPU name fluidopt uses for a run's GPU: LLMServingSim's hardware name, else the device name's words."""
    if hardware in ENGINE_GPUS:
        return ENGINE_GPUS[hardware]
    if hardware.lower() in GPUS:
        return hardware.lower()
    words = set(device_name.upper().replace("-", " ").split())
    for needed, name in DEVICE_WORDS:
        if set(needed) <= words:
            return name
    return None


def roofline_profile_for_run(
    run_folder: str | os.PathLike[str],
    *,
    gpu: str | None = None,
    model: str | None = None,
    calibration: RooflineCalibration | None = None,
) -> Any:
    """The roofline profile of one engine of a run, from the run's description alone (no latencies read).

    The GPU is ``gpu`` (a built-in name or a TOML file) or the run's ``config.json`` hardware
    name; the model is ``model`` (a built-in name or a ``config.json``) or the run's served
    model; tensor, data and expert parallelism come from the run's engine arguments; the link
    from the run's ``config.json`` when it describes one (else the spec sheet's); the KV capacity
    from the run's logged ``num_gpu_blocks`` (else vLLM's memory rule).
    """
    run = Path(run_folder)
    meta, instance = _run_hardware(run)
    require(bool(meta), "run", str(run), "has no vllm/meta.json")
    hardware = str(instance.get("hardware", ""))
    device = str((meta.get("hardware") or {}).get("device_name", "")) if isinstance(meta, dict) else ""
    name = gpu or gpu_for_run(hardware, device)
    require(
        name is not None,
        "--gpu",
        None,
        f"is needed: the run names no GPU fluidopt knows ({hardware or device or 'none'}; see fluidopt/data/gpus.toml)",
    )
    assert name is not None
    spec = gpu_spec(name)
    link = read_interconnect(run)
    if link is not None:
        spec = replace(spec, link_bandwidth_bytes_per_s=link.bandwidth_bytes_per_s, link_latency_s=link.latency_s)
    shape = resolve_model(model) if model else model_for_engine_name(str(meta.get("model", "")))
    kv_cache = kv_cache_record(meta, f"{run}/vllm/meta.json")
    kwargs = dict(meta.get("engine_kwargs", {}) or {})
    kwargs["async_scheduling"] = vllm_async_scheduling(meta)
    profile = engine_roofline_profile(
        spec, shape, kwargs, kv_cache, str(meta.get("model", shape.name)), calibration=calibration
    )
    if link is None:
        return profile
    interconnect = {"bandwidth_bytes_per_s": link.bandwidth_bytes_per_s, "latency_s": link.latency_s}
    return replace(profile, fit={**profile.fit, "interconnect": {**interconnect, "source": link.source}})


ASYNC_BY_DEFAULT_SINCE = (0, 19)  # seen: vLLM 0.19 resolves an unset async_scheduling to True


def vllm_async_scheduling(meta: dict[str, Any]) -> bool:
    """Whether a run's vLLM scheduled asynchronously (its ``meta.json``: engine argument, resolved config, version).

    vLLM leaves ``async_scheduling`` unset by default and turns it on unless an option is
    incompatible; the shared 0.19 runs' resolved configurations show it on.  A run that says
    nothing is taken as its version's default: on from 0.19, off before (not checked here).
    """
    value = (meta.get("engine_kwargs") or {}).get("async_scheduling")
    if value is None:
        value = ((meta.get("resolved_config") or {}).get("scheduler_config") or {}).get("async_scheduling")
    if isinstance(value, bool):
        return value
    parts = []
    for piece in str(meta.get("vllm_version", "")).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return len(parts) == 2 and tuple(parts) >= ASYNC_BY_DEFAULT_SINCE


def engine_roofline_profile(
    spec: GPUSpec,
    shape: ModelShape,
    engine_args: dict[str, Any],
    kv_cache: dict[str, Any],
    served_model: str,
    *,
    calibration: RooflineCalibration | None = None,
) -> Any:
    """The roofline profile of an engine described by its arguments and KV-cache record (either run format).

    Tensor, data and expert parallelism and ``max_num_batched_tokens`` come from ``engine_args``;
    the KV capacity is ``num_gpu_blocks x block_size`` when ``kv_cache`` logs them, else vLLM's
    memory rule at its ``gpu_memory_utilization``.  The profile names ``served_model``, so a replay
    checks it against the run's.
    """
    parallel = Parallelism(
        int(engine_args.get("tensor_parallel_size") or 1),
        int(engine_args.get("data_parallel_size") or 1),
        bool(engine_args.get("enable_expert_parallel")) and shape.is_moe,
    )
    block = int(kv_cache.get("block_size") or 16)
    logged = int(kv_cache["num_gpu_blocks"]) * block if kv_cache.get("num_gpu_blocks") else None
    profile = roofline_profile(
        spec,
        shape,
        parallel,
        gpu_memory_utilization=float(kv_cache.get("gpu_memory_utilization") or 0.9),
        max_num_batched_tokens=int(engine_args.get("max_num_batched_tokens") or 2048),
        block_size=block,
        kv_capacity_tokens=logged,
        calibration=calibration,
    )
    fit = {**profile.fit, "model": served_model}
    if logged is not None:
        fit["kv_capacity_source"] = "num_gpu_blocks x block_size (logged by vLLM)"
    if engine_args.get("async_scheduling"):
        profile = replace(profile, timing=profile.timing.scaled(async_scheduling=True), pieces=())
    profile = replace(profile, fit=fit)
    offload_gib = float(engine_args.get("cpu_offload_gb") or 0.0)
    return with_cpu_offload(profile, spec, offload_gib, block, logged is None) if offload_gib > 0 else profile


def with_cpu_offload(profile: Any, spec: GPUSpec, offload_gib: float, block: int, grow_kv: bool) -> Any:
    """``profile`` with ``offload_gib`` of each GPU's weights in host memory, as vLLM's ``cpu_offload_gb`` keeps them.

    vLLM moves parameters to pinned host memory until the budget is spent and reads them back
    through the host link on every forward pass (its UVA offloader: GPU kernels read the host
    memory directly; without UVA, a copy to the device per step), so each step pays
    ``offloaded bytes / host bandwidth`` on top of the roofline.  The freed GPU memory holds KV
    (``grow_kv``; not when the KV capacity was logged by the engine, which already counts it).
    """
    timing = profile.timing
    require(
        spec.host_bandwidth_bytes_per_s > 0,
        f"gpu {spec.name}: host_bandwidth_bytes_per_s",
        spec.host_bandwidth_bytes_per_s,
        "is needed to model cpu_offload_gb (weights read over the host link every step)",
    )
    weights = timing.amount("dense_weight_bytes") + timing.amount("lm_head_weight_bytes")
    weights += timing.amount("local_experts") * timing.amount("expert_weight_bytes") * timing.amount("moe_layers")
    offloaded = min(offload_gib * 2**30, weights)
    seconds = offloaded / spec.host_bandwidth_bytes_per_s
    capacity = profile.kv_capacity_tokens
    if grow_kv:
        capacity += int(offloaded // timing.amount("kv_bytes_per_token")) // block * block
    fit = {**profile.fit, "cpu_offload": {"gib": offload_gib, "bytes": offloaded, "seconds_per_step": seconds}}
    return replace(
        profile.with_capacity(capacity),
        timing=timing.scaled(step_overhead_s=seconds),
        pieces=(),
        fit=fit,
        description=f"{profile.description}; {offload_gib:g} GiB of weights offloaded to host memory, "
        f"read over the host link every step (+{1e3 * seconds:.1f} ms)",
    )
