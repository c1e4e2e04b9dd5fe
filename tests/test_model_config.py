"""Model shapes from a Hugging Face config.json, and KV capacity split over a tensor-parallel group."""

from __future__ import annotations

import json

import pytest

from fluidopt.errors import InputError
from fluidopt.hardware import GIB, GPUS, MODELS, kv_capacity_tokens
from fluidopt.model_config import model_from_config, resolve_model

LLAMA_3_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
}
MIXTRAL_8X7B = {
    "model_type": "mixtral",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 32000,
    "torch_dtype": "bfloat16",
}
QWEN3_30B_A3B = {
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def test_dense_shape_by_hand():
    model = model_from_config(LLAMA_3_8B, name="llama-3-8b")
    # Per layer: q and o 4096 x 4096, k and v 4096 x 1024, gated MLP 3 x 4096 x 14336, two norms.
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert model.parameters == 32 * per_layer + 2 * 128256 * 4096 + 4096 == 8_030_261_248  # published
    assert model.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072
    assert model.weight_bytes == 2 * model.parameters and not model.is_moe
    tied = model_from_config({**LLAMA_3_8B, "tie_word_embeddings": True})
    assert model.parameters - tied.parameters == 128256 * 4096
    assert model_from_config({**LLAMA_3_8B, "torch_dtype": "float32"}).kv_bytes_per_token == 2 * 131_072


def test_moe_shapes_by_hand():
    mixtral = model_from_config(MIXTRAL_8X7B)
    assert mixtral.parameters == 46_702_792_704  # published total
    expert = 3 * 4096 * 14336
    assert mixtral.active_parameters == mixtral.parameters - 32 * 6 * expert  # two of eight experts per token
    assert mixtral.is_moe and (mixtral.experts, mixtral.experts_per_token, mixtral.moe_layers) == (8, 2, 32)
    qwen = model_from_config(QWEN3_30B_A3B)
    assert qwen.parameters == 30_532_122_624  # published total
    assert 3.2e9 < qwen.active_parameters < 3.4e9  # "A3B"
    assert qwen.kv_bytes_per_token == 2 * 48 * 4 * 128 * 2
    sparse = model_from_config({**QWEN3_30B_A3B, "mlp_only_layers": [0, 1]})
    assert sparse.moe_layers == 46 and sparse.ffn_hidden == 6144


def test_builtin_names_are_config_facts():
    assert model_from_config(LLAMA_3_8B).kv_bytes_per_token == MODELS["llama-3-8b"].kv_bytes_per_token
    assert abs(model_from_config(LLAMA_3_8B).parameters - MODELS["llama-3-8b"].parameters) < 1e7


def test_config_json_as_a_model_argument(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN3_30B_A3B), encoding="utf-8")
    assert resolve_model(str(path)).experts == 128


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({**LLAMA_3_8B, "model_type": "gpt2"}, "model_type"),
        ({k: v for k, v in LLAMA_3_8B.items() if k != "intermediate_size"}, "intermediate_size"),
        ({**LLAMA_3_8B, "num_key_value_heads": 5}, "num_key_value_heads"),
        ({**LLAMA_3_8B, "hidden_size": -1}, "hidden_size"),
        ({**LLAMA_3_8B, "torch_dtype": "int3"}, "torch_dtype"),
        ({**MIXTRAL_8X7B, "num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({k: v for k, v in QWEN3_30B_A3B.items() if k != "moe_intermediate_size"}, "moe_intermediate_size"),
    ],
)
def test_a_bad_config_names_the_field(config, field):
    with pytest.raises(InputError, match=field):
        model_from_config(config)


def test_kv_capacity_splits_the_weights_and_the_kv_heads_over_tensor_parallel():
    h100, llama70 = GPUS["h100-80gb"], MODELS["llama-2-70b"]
    with pytest.raises(InputError, match="do not fit"):
        kv_capacity_tokens(h100, llama70)
    tp4 = kv_capacity_tokens(h100, llama70, tensor_parallel=4)
    per_gpu_token = 2 * 80 * (8 // 4) * 128 * 2
    assert tp4 == int((80 * GIB * 0.9 - llama70.weight_bytes / 4) // per_gpu_token)
    assert kv_capacity_tokens(h100, llama70, tensor_parallel=8) > tp4  # KV heads still split (8 of 8)
    with pytest.raises(InputError, match="tensor_parallel"):
        kv_capacity_tokens(h100, llama70, tensor_parallel=3)  # 64 heads do not split over 3
    with pytest.raises(InputError, match="even split over 2 GPUs"):
        kv_capacity_tokens(GPUS["a40"], llama70, tensor_parallel=2)
    assert kv_capacity_tokens(GPUS["a100-80gb"], MODELS["llama-2-7b"], tensor_parallel=1) == kv_capacity_tokens(
        GPUS["a100-80gb"], MODELS["llama-2-7b"]
    )


def test_gpu_specs_are_data_and_a_users_gpu_is_a_toml_file(tmp_path):
    from fluidopt.hardware import gpu_spec

    for name in (
        "a100-80gb",
        "a100-40gb",
        "h100-80gb",
        "h100-pcie",
        "h200",
        "b200",
        "l40s",
        "l4",
        "a40",
        "rtx4090",
        "rtx-pro-6000",
    ):
        gpu = GPUS[name]
        assert gpu.hbm_gib > 0 and gpu.hbm_bandwidth_bytes_per_s > 0 and gpu.dense_bf16_flops > 0
        assert gpu.link in ("nvlink", "pcie") and gpu.link_bandwidth_bytes_per_s > 0 and gpu.source
    # The shared data's table (shared/data/README.md) is what the built-ins say.
    assert (GPUS["h200"].hbm_gib, GPUS["h200"].hbm_bandwidth_bytes_per_s) == (141, 4.8e12)
    assert GPUS["l40s"].dense_bf16_flops == 362e12 and GPUS["a100-40gb"].hbm_bandwidth_bytes_per_s == 1.555e12
    mine = tmp_path / "my-gpu.toml"
    mine.write_text(
        'name = "my-gpu"\nmemory_gib = 32\nbandwidth_bytes_per_s = 1.0e12\ndense_bf16_flops = 200e12\n',
        encoding="utf-8",
    )
    gpu = gpu_spec(str(mine))
    assert gpu.name == "my-gpu" and gpu.hbm_gib == 32 and gpu.link == ""
    assert kv_capacity_tokens(gpu, MODELS["llama-3-8b"]) > 0
    for text, field in (
        ("memory_gib = 32\nbandwidth_bytes_per_s = 1e12\n", "dense_bf16_flops"),
        ("memory_gib = -1\nbandwidth_bytes_per_s = 1e12\ndense_bf16_flops = 1e14\n", "memory_gib"),
        ("memory_gib = 8\nbandwidth_bytes_per_s = 1e12\ndense_bf16_flops = 1e14\nlink = 'infiniband'\n", "link"),
        ("memory_gib = 8\nbandwidth_bytes_per_s = 1e12\ndense_bf16_flops = 1e14\nclock = 2\n", "clock"),
    ):
        mine.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=field):
            gpu_spec(str(mine))
    with pytest.raises(InputError, match="unknown GPU"):
        gpu_spec("tpu-v5")


def test_the_builtin_moe_model_is_its_config_facts():
    facts = model_from_config(QWEN3_30B_A3B, name="qwen3-30b-a3b")
    builtin = MODELS["qwen3-30b-a3b"]
    for field in (
        "layers",
        "kv_heads",
        "head_dim",
        "parameters",
        "hidden",
        "q_heads",
        "vocab",
        "experts",
        "experts_per_token",
        "expert_ffn_hidden",
        "moe_layers",
        "kv_bytes_per_token",
    ):
        assert getattr(builtin, field) == getattr(facts, field), field
    assert MODELS["qwen3-30b-a3b-instruct-2507"] is builtin
