"""Model shapes from a Hugging Face ``config.json``: dense (Llama, Mistral, Qwen2, Qwen3) and MoE.

The fields read, per ``model_type``:

- every family: ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
  ``num_key_value_heads`` (default: the attention heads, no GQA), ``head_dim`` (default
  ``hidden_size / num_attention_heads``), ``vocab_size``, ``tie_word_embeddings`` (default false)
  and ``torch_dtype`` (bytes per value: 2 for bfloat16 / float16, 4 for float32, 1 for fp8);
- dense ``llama``, ``mistral``, ``qwen2``, ``qwen3``: ``intermediate_size``;
- ``mixtral``: ``num_local_experts``, ``num_experts_per_tok`` and ``intermediate_size`` (each
  expert's width), every layer an MoE layer;
- ``qwen2_moe``, ``qwen3_moe``: ``num_experts``, ``num_experts_per_tok``,
  ``moe_intermediate_size``, ``shared_expert_intermediate_size`` (qwen2_moe), and the dense layers
  ``mlp_only_layers`` / ``decoder_sparse_step`` with their ``intermediate_size``.

Parameters are counted from the shape: embeddings (and an untied LM head), per layer the
attention projections ``hidden x (q + 2 kv) x head_dim`` and ``q x head_dim x hidden``, Qwen3's
q/k norms, the gated MLP ``3 x hidden x width`` (each expert's, the router's ``hidden x
experts``, a shared expert and its gate), two norms per layer and the final norm.  Llama-3-8B
counts 8,030,261,248, Mixtral-8x7B 46,702,792,704 and Qwen3-30B-A3B 30,532,122,624, their
published totals.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fluidopt.errors import InputError, require
from fluidopt.hardware import ModelShape, model_shape

DENSE_TYPES = ("llama", "mistral", "qwen2", "qwen3")
MOE_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe")
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4, "float8_e4m3fn": 1, "fp8": 1}


def resolve_model(spec: str | os.PathLike[str]) -> ModelShape:
    """A built-in model by name, or the shape of a Hugging Face ``config.json`` (a path ending in .json)."""
    return model_from_config(spec) if str(spec).endswith(".json") else model_shape(str(spec))


def model_from_config(source: str | os.PathLike[str] | dict[str, Any], name: str | None = None) -> ModelShape:
    """The :class:`~fluidopt.hardware.ModelShape` of a ``config.json`` (a path or its parsed mapping).

    Raises
    ------
    fluidopt.errors.InputError
        For an unreadable file, an unknown ``model_type`` or a missing or impossible field (named).

    """
    config, where = _load(source)
    kind = str(config.get("model_type"))
    require(
        kind in DENSE_TYPES + MOE_TYPES,
        f"{where}: model_type",
        kind,
        f"is not a supported architecture (supported: {', '.join(DENSE_TYPES + MOE_TYPES)})",
    )
    hidden = _whole(config, "hidden_size", where)
    layers = _whole(config, "num_hidden_layers", where)
    q_heads = _whole(config, "num_attention_heads", where)
    kv_heads = _whole(config, "num_key_value_heads", where, default=q_heads)
    require(q_heads % kv_heads == 0, f"{where}: num_key_value_heads", kv_heads, f"must divide the {q_heads} heads")
    head_dim = _whole(config, "head_dim", where, default=hidden // q_heads if hidden % q_heads == 0 else None)
    vocab = _whole(config, "vocab_size", where)
    tied = bool(config.get("tie_word_embeddings", False))
    dtype = str(config.get("torch_dtype", "bfloat16"))
    require(dtype in DTYPE_BYTES, f"{where}: torch_dtype", dtype, f"must be one of {', '.join(DTYPE_BYTES)}")
    experts = per_token = expert_width = shared_width = moe_layers = 0
    ffn = 0
    if kind == "mixtral":
        experts = _whole(config, "num_local_experts", where)
        per_token = _whole(config, "num_experts_per_tok", where)
        expert_width = _whole(config, "intermediate_size", where)
        moe_layers = layers
    elif kind in ("qwen2_moe", "qwen3_moe"):
        experts = _whole(config, "num_experts", where)
        per_token = _whole(config, "num_experts_per_tok", where)
        expert_width = _whole(config, "moe_intermediate_size", where)
        shared_width = _whole(config, "shared_expert_intermediate_size", where, default=0, minimum=0)
        moe_layers = _moe_layer_count(config, layers, where)
        ffn = _whole(config, "intermediate_size", where) if moe_layers < layers else 0
    else:
        ffn = _whole(config, "intermediate_size", where)
    if experts:
        require(per_token <= experts, f"{where}: num_experts_per_tok", per_token, f"must be <= the {experts} experts")
    attention = hidden * (q_heads + 2 * kv_heads) * head_dim + q_heads * head_dim * hidden
    attention += 2 * head_dim if kind == "qwen3" or kind == "qwen3_moe" else 0  # q_norm, k_norm
    attention_bias = (q_heads + 2 * kv_heads) * head_dim if kind.startswith("qwen2") else 0
    dense_mlp = 3 * hidden * ffn
    moe_mlp = experts * 3 * hidden * expert_width + hidden * experts
    if shared_width:
        moe_mlp += 3 * hidden * shared_width + hidden  # the shared expert and its gate
    per_layer = attention + attention_bias + 2 * hidden
    parameters = layers * per_layer + moe_layers * moe_mlp + (layers - moe_layers) * dense_mlp
    parameters += vocab * hidden * (1 if tied else 2) + hidden
    return ModelShape(
        name=name or str(config.get("_name_or_path") or Path(where).parent.name or kind),
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        parameters=float(parameters),
        bytes_per_value=DTYPE_BYTES[dtype],
        hidden=hidden,
        ffn_hidden=ffn,
        q_heads=q_heads,
        vocab=vocab,
        tied_embeddings=tied,
        experts=experts,
        experts_per_token=per_token,
        expert_ffn_hidden=expert_width,
        shared_expert_ffn_hidden=shared_width,
        moe_layers=moe_layers,
        architecture=str(kind),
    )


def _load(source: str | os.PathLike[str] | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, dict):
        return source, "config"
    path = Path(source)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError("config.json", str(path), f"cannot be read ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(str(path), "<JSON>", f"is not valid JSON ({error})") from None
    require(isinstance(config, dict), str(path), type(config).__name__, "must be a JSON object")
    return config, str(path)


def _whole(config: dict[str, Any], key: str, where: str, *, default: int | None = None, minimum: int = 1) -> int:
    value = config.get(key, default)
    require(value is not None, f"{where}: {key}", None, "is required for this architecture")
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    require(ok, f"{where}: {key}", value, f"must be a whole number >= {minimum}")
    return int(value)  # type: ignore[arg-type]


def _moe_layer_count(config: dict[str, Any], layers: int, where: str) -> int:
    """Layers with experts: every ``decoder_sparse_step``-th layer not in ``mlp_only_layers``."""
    step = _whole(config, "decoder_sparse_step", where, default=1)
    dense = config.get("mlp_only_layers") or []
    require(isinstance(dense, list), f"{where}: mlp_only_layers", dense, "must be an array of layer indices")
    return sum(1 for i in range(layers) if i not in dense and (i + 1) % step == 0)
