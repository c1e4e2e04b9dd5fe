"""Calibration of the roofline's efficiencies to measured per-operator tables, with leave-one-GPU-out checks.

Each measured table row becomes an *observation*: the operator's time and the roofline's
prediction of it from the GPU's spec sheet, the model's shape and a candidate
:class:`~fluidopt.timing.fit.roofline.RooflineCalibration` (the formulas are the step
function's own helpers, :func:`~fluidopt.timing.roofline.gemm_seconds`).  Components:

- ``gemm``: the projections and MLP GEMMs (Vidur's ``mlp.csv``: ``attn_pre_proj``,
  ``attn_post_proj``, ``mlp_up_proj``, ``mlp_down_proj``; LLMServingSim's ``qkv_proj``, ``o_proj``,
  ``gate_up_proj``, ``down_proj``, and the ``lm_head`` by sequences);
- ``elementwise``: norms, activation, rotary embedding, residual add, embedding;
- ``attention``: prefill chunks, decodes and mixed batches (LLMServingSim's ``attention.csv``; the
  A100 sample of Vidur's attention profile);
- ``sampler``: LLMServingSim's ``sampler`` by sequences;
- ``moe``: one fused MoE layer by tokens and experts reached (LLMServingSim's ``moe.csv``).

The fit minimises the squared log error, every (GPU, component) group weighted equally, over
the calibration's seven values (scipy's ``least_squares``).  Nothing here reads a serving run.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from fluidopt.hardware import GPUSpec, ModelShape, gpu_spec, kv_heads_per_gpu
from fluidopt.timing.fit.engine_tables import Parallelism, read_llmservingsim_profile
from fluidopt.timing.fit.roofline import (
    CALIBRATION_KEYS,
    ENGINE_GPUS,
    LOGIT_BYTES,
    RooflineCalibration,
    qk_passes,
    roofline_rates,
    roofline_timing,
    vocabulary,
)
from fluidopt.timing.roofline import attention_seconds, gemm_seconds

MOE_LAYER_KERNELS = 6  # router top-k, token sort, two grouped GEMMs, activation, weighted sum
# Vidur's GPU folders -> fluidopt GPU names (LLMServingSim's hardware names: ENGINE_GPUS).
VIDUR_GPUS = {"a100": "a100-80gb", "h100": "h100-80gb", "a40": "a40"}

Predictor = Callable[[RooflineCalibration], np.ndarray]


@dataclass(frozen=True)
class Observations:
    """Measured operator times of one component on one GPU and the roofline's prediction of them."""

    gpu: str
    component: str
    seconds: np.ndarray
    predict: Predictor
    source: str


def _rates(gpu: GPUSpec, cal: RooflineCalibration) -> tuple[float, float]:
    rates = roofline_rates(gpu, cal)
    return rates["compute_flops_per_s"], rates["bandwidth_bytes_per_s"]


def gemm_observations(
    gpu: GPUSpec, weight_bytes: np.ndarray, rows: np.ndarray, seconds: np.ndarray, source: str, bpv: float = 2.0
) -> Observations:
    """GEMM rows: ``kernel_s + W max(2 rows / (b C), 1 / B)``."""

    def predict(cal: RooflineCalibration) -> np.ndarray:
        c, b = _rates(gpu, cal)
        return cal.kernel_s + gemm_seconds(weight_bytes, rows, bpv, c, b)

    return Observations(gpu.name, "gemm", seconds, predict, source)


def elementwise_observations(gpu: GPUSpec, traffic: np.ndarray, seconds: np.ndarray, source: str) -> Observations:
    """Element-wise rows: ``kernel_s + bytes / B``."""

    def predict(cal: RooflineCalibration) -> np.ndarray:
        return cal.kernel_s + traffic / _rates(gpu, cal)[1]

    return Observations(gpu.name, "elementwise", seconds, predict, source)


def attention_observations(
    gpu: GPUSpec, model: ModelShape, tp: int, rows: np.ndarray, seconds: np.ndarray, source: str
) -> Observations:
    """Attention rows of one layer (``chunk, cached, decodes, decode_kv``): the step function's own attention term."""
    chunk, cached, decodes, decode_kv = rows.T
    pairs = chunk * (cached + chunk / 2)
    reads = np.where(chunk > 0, cached + chunk, 0.0)
    mixed = chunk > 0
    one_layer = replace(model, layers=1)

    def predict(cal: RooflineCalibration) -> np.ndarray:
        tcoef = roofline_timing(gpu, one_layer, Parallelism(tp), cal).kernel_arrays()[0]
        out = np.empty(seconds.size)
        for flag in (False, True):
            at = mixed == flag
            out[at] = attention_seconds(tcoef, pairs[at], reads[at], decodes[at], decodes[at] * decode_kv[at], flag)
        return out

    return Observations(gpu.name, "attention", seconds, predict, source)


def vidur_observations(path: Path, gpu: GPUSpec) -> list[Observations]:
    """GEMM and element-wise observations of one Vidur ``mlp.csv`` (milliseconds per layer, every TP)."""
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows])

    tokens, tp = column("num_tokens"), column("num_tensor_parallel_workers")
    h, f = column("n_embd"), column("n_expanded_embd")
    q, kv = column("n_head") / tp, np.maximum(column("n_kv_head") / tp, 1.0)
    hd = h / column("n_head")
    ms = {op: 1e-3 * column(f"time_stats.{op}.median") for op in ("attn_pre_proj", "attn_post_proj")}
    ms.update({op: 1e-3 * column(f"time_stats.{op}.median") for op in ("mlp_up_proj", "mlp_down_proj")})
    weights = {
        "attn_pre_proj": (q + 2 * kv) * hd * h * 2,
        "attn_post_proj": q * hd * h * 2,
        "mlp_up_proj": 2 * h * f / tp * 2,
        "mlp_down_proj": h * f / tp * 2,
    }
    where = f"{path.parent.parent.name}/{path.parent.name}/mlp.csv"
    out = [
        gemm_observations(
            gpu,
            np.concatenate([weights[op] for op in weights]),
            np.tile(tokens, len(weights)),
            np.concatenate([ms[op] for op in weights]),
            where,
        )
    ]
    traffic = {
        "input_layernorm": 2 * h * 2,
        "post_attention_layernorm": 2 * h * 2,
        "attn_rope": 2 * (q + kv) * hd * 2,
        "mlp_act": 3 * f / tp * 2,
        "add": 3 * h * 2,
    }
    out.append(
        elementwise_observations(
            gpu,
            np.concatenate([tokens * traffic[op] for op in traffic]),
            np.concatenate([1e-3 * column(f"time_stats.{op}.median") for op in traffic]),
            where,
        )
    )
    return out


def vidur_attention_observations(path: Path, gpu: GPUSpec, model: ModelShape) -> Observations:
    """The A100 sample of Vidur's attention profile: prefill (P, F) and decode (D) rows, one layer."""
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    table, seconds = [], []
    for r in rows:
        chunk, kv, batch = float(r["chunk"] or 0), float(r["kv"] or 0), float(r["batch"] or 0)
        if r["regime"] in ("P", "F") and r["prefill"]:
            table.append((chunk, kv, 0.0, 0.0))
            seconds.append(1e-3 * float(r["prefill"]))
        elif r["regime"] == "D" and r["decode"]:
            table.append((0.0, 0.0, batch, kv))
            seconds.append(1e-3 * float(r["decode"]))
    where = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
    return attention_observations(gpu, model, 1, np.array(table), np.array(seconds), where)


ENGINE_GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
ENGINE_ELEMENTWISE = ("layernorm", "act_fn", "rotary_emb", "qk_norm", "embedding", "final_layernorm")


def _engine_weights(model: ModelShape, tp: int) -> dict[str, float]:
    h, hd, q, kv = model.hidden, model.head_dim, model.q_heads / tp, kv_heads_per_gpu(model, tp)
    b = model.bytes_per_value
    return {
        "qkv_proj": (q + 2 * kv) * hd * h * b,
        "o_proj": q * hd * h * b,
        "gate_up_proj": 2 * h * model.ffn_hidden / tp * b,
        "down_proj": h * model.ffn_hidden / tp * b,
    }


def _engine_traffic(model: ModelShape, tp: int) -> dict[str, float]:
    h, hd, q, kv = model.hidden, model.head_dim, model.q_heads / tp, kv_heads_per_gpu(model, tp)
    b = model.bytes_per_value
    return {
        "layernorm": 2 * h * b,
        "act_fn": 3 * model.ffn_hidden / tp * b,
        "rotary_emb": 2 * (q + kv) * hd * b,
        "qk_norm": 2 * (q + kv) * hd * b * (qk_passes(model) - 1),
        "embedding": 2 * h * b,
        "final_layernorm": 2 * h * b,
    }


def engine_table_observations(folder: Path, tp: int) -> list[Observations]:
    """Every component of one LLMServingSim profile folder at one tensor-parallel degree (one layer, one GPU)."""
    tables = read_llmservingsim_profile(folder, tp)
    gpu = gpu_spec(ENGINE_GPUS[tables.gpu])
    model = tables.model_shape
    where = f"{tables.gpu}/{model.name}/tp{tp}"
    weights, traffic = _engine_weights(model, tp), _engine_traffic(model, tp)
    gemm = [(weights[op], t, s) for op in ENGINE_GEMMS if op in tables.dense for t, s in tables.dense[op].items()]
    head = vocabulary(model) * model.hidden / tp * model.bytes_per_value
    gemm += [(head, n, s) for n, s in tables.per_sequence["lm_head"].items()]
    g = np.array(gemm)
    out = [gemm_observations(gpu, g[:, 0], g[:, 1], g[:, 2], where, model.bytes_per_value)]
    elt = [(traffic[op] * t, s) for op in ENGINE_ELEMENTWISE if op in tables.dense for t, s in tables.dense[op].items()]
    e = np.array(elt)
    out.append(elementwise_observations(gpu, e[:, 0], e[:, 1], where))
    out.append(attention_observations(gpu, model, tp, tables.attention[:, :4], tables.attention[:, 4], where))
    sampler = np.array(sorted(tables.per_sequence["sampler"].items()), dtype=float)
    out.append(_sampler_observations(gpu, vocabulary(model), sampler[:, 0], sampler[:, 1], where))
    if tables.moe is not None and model.is_moe:
        out.append(_moe_observations(gpu, model, tables.moe, where))
    return out


def _sampler_observations(gpu: GPUSpec, vocab: float, sequences: np.ndarray, seconds: np.ndarray, where: str):
    def predict(cal: RooflineCalibration) -> np.ndarray:
        return cal.sampler_s + sequences * vocab * LOGIT_BYTES * cal.sampler_passes / _rates(gpu, cal)[1]

    return Observations(gpu.name, "sampler", seconds, predict, where)


def _moe_observations(gpu: GPUSpec, model: ModelShape, table: np.ndarray, where: str) -> Observations:
    tokens, reached, seconds = table[:, 0], table[:, 1], table[:, 2]
    expert = 3.0 * model.hidden * model.expert_ffn_hidden * model.bytes_per_value
    products = tokens * model.experts_per_token

    def predict(cal: RooflineCalibration) -> np.ndarray:
        c, b = _rates(gpu, cal)
        rows = products / reached
        return MOE_LAYER_KERNELS * cal.kernel_s + gemm_seconds(reached * expert, rows, model.bytes_per_value, c, b)

    return Observations(gpu.name, "moe", seconds, predict, f"{where}/moe.csv")


def shared_observations(data: Path) -> list[Observations]:
    """Every observation the shared tables give (``data`` is ``shared/data``)."""
    from fluidopt.hardware import model_shape

    out: list[Observations] = []
    vidur = data / "profiles" / "vidur"
    for folder, gpu_name in VIDUR_GPUS.items():
        for path in sorted((vidur / folder).glob("*/mlp.csv")):
            out.extend(vidur_observations(path, gpu_spec(gpu_name)))
    sample = vidur / "a100" / "Meta-Llama-3-8B" / "attention-sample.csv"
    if sample.is_file():
        out.append(vidur_attention_observations(sample, gpu_spec("a100-80gb"), model_shape("llama-3-8b")))
    for meta in sorted((data / "llmservingsim" / "profiles").glob("*/*/*/meta.yaml")):
        for tp_folder in sorted(meta.parent.glob("tp*")):
            out.extend(engine_table_observations(meta.parent, int(tp_folder.name[2:])))
    return out


def _unpack(theta: np.ndarray, source: str = "") -> RooflineCalibration:
    values = dict(zip(CALIBRATION_KEYS, (float(v) for v in np.exp(theta))))
    return RooflineCalibration(**values, source=source)


def fit_calibration(observations: Iterable[Observations], source: str = "") -> RooflineCalibration:
    """The calibration minimising the squared log error, each (GPU, component) group weighted equally."""
    groups = list(observations)
    sizes: dict[tuple[str, str], int] = {}
    for g in groups:
        sizes[(g.gpu, g.component)] = sizes.get((g.gpu, g.component), 0) + g.seconds.size
    weights = [1.0 / np.sqrt(sizes[(g.gpu, g.component)]) for g in groups]

    def residuals(theta: np.ndarray) -> np.ndarray:
        cal = _unpack(theta)
        parts = [w * (np.log(g.predict(cal)) - np.log(g.seconds)) for g, w in zip(groups, weights)]
        return np.concatenate(parts)

    start = np.log([0.7, 0.8, 0.5, 0.15, 0.9, 0.3, 3e-6, 1e-5, 1e-6, 2e-5, 2.0])
    fitted = least_squares(residuals, start, method="trf")
    return _unpack(fitted.x, source)


def component_errors(observations: Iterable[Observations], cal: RooflineCalibration) -> dict[tuple[str, str], float]:
    """Median absolute relative error per (GPU, component) of ``cal`` on ``observations``."""
    errors: dict[tuple[str, str], list[np.ndarray]] = {}
    for g in observations:
        errors.setdefault((g.gpu, g.component), []).append(np.abs(g.predict(cal) / g.seconds - 1.0))
    return {key: float(np.median(np.concatenate(parts))) for key, parts in errors.items()}


def leave_one_gpu_out(observations: list[Observations]) -> dict[tuple[str, str], float]:
    """Per held-out GPU and component: the median error of a calibration fitted to the other GPUs alone."""
    table: dict[tuple[str, str], float] = {}
    for gpu in sorted({g.gpu for g in observations}):
        cal = fit_calibration([g for g in observations if g.gpu != gpu])
        table.update(component_errors([g for g in observations if g.gpu == gpu], cal))
    return table
