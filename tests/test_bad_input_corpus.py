"""A corpus of malformed inputs over every subcommand and file format.

Each case must end with exit status 2 and exactly one line on stderr (``fluidopt: error: ...``,
no traceback), quickly, and without writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluidopt.cli import main

BAD_RATES = ["-1", "nan", "inf", "1e300", "abc"]
BAD_COUNTS = ["0", "-3", "abc", "1.5"]
BAD_POSITIVE = ["0", "-1", "nan", "inf", "abc"]

_MLP_COLUMNS = ["num_tokens", "num_tensor_parallel_workers"] + [
    f"time_stats.{op}.median"
    for op in (
        "attn_pre_proj",
        "attn_rope",
        "attn_post_proj",
        "mlp_up_proj",
        "mlp_act",
        "mlp_down_proj",
        "input_layernorm",
        "post_attention_layernorm",
        "add",
    )
]
FOUR_ROW_MLP = (
    "\n".join([",".join(_MLP_COLUMNS)] + [",".join([str(t), "1"] + ["0.1"] * 9) for t in (1, 2, 4, 8)]) + "\n"
).encode()

_REQUEST = (
    b'{"request_id": "r0", "input_toks": 100, "output_toks": 10, "arrival_time": 1.0, "queued_ts": 1.0, '
    b'"scheduled_ts": 1.0, "first_token_ts": 1.1, "last_token_ts": 1.5}\n'
)


def _meta(blocks: int, **engine: object) -> bytes:
    meta = {"model": "meta-llama/Llama-3.1-8B", "engine_kwargs": {"max_num_seqs": 8, **engine}, "kv_cache": {}}
    meta["kv_cache"] = {"num_gpu_blocks": blocks, "block_size": 16}
    return json.dumps(meta).encode()


FILES = {
    # benchmark outputs for import-run
    "engine_ok.toml": b'[engine]\nname = "vllm"\nmodel = "llama-3-8b"\ngpu = "h100-80gb"\n',
    "bench_no_detail.json": json.dumps({"request_rate": "inf", "mean_ttft_ms": 12.0}).encode(),
    "bench_random_rate.json": json.dumps(
        {"request_rate": 4.0, "input_lens": [5], "output_lens": [2], "ttfts": [0.1], "itls": [[0.1]], "errors": [""]}
    ).encode(),
    "bench_log.csv": b"ts,p,o\n1.0,10,5\n2.0,20,6\n",
    # fleets
    "fleet_ok.toml": b'[[deployment]]\nname = "h"\ngpu = "h100-80gb"\nmodel = "llama-3-8b"\nengine = "vllm"\n'
    b"cost_per_hour = 2.0\n",
    "fleet_free.toml": b'[[deployment]]\nname = "h"\ngpu = "h100-80gb"\nmodel = "llama-3-8b"\nengine = "vllm"\n'
    b"cost_per_hour = 0\n",
    "fleet_too_big.toml": b'[[deployment]]\nname = "l"\ngpu = "l4"\nmodel = "llama-3.1-70b"\nengine = "vllm"\n'
    b"cost_per_hour = 1.0\n",
    "trace_no_times.csv": b"num_prefill_tokens,num_decode_tokens\n10,5\n20,6\n",
    # vLLM run folders with a broken KV-cache record in meta.json
    "run_zero_blocks/vllm/meta.json": _meta(0),
    "run_zero_blocks/vllm/requests.jsonl": _REQUEST,
    "run_negative_blocks/vllm/meta.json": _meta(-5),
    "run_negative_blocks/vllm/requests.jsonl": _REQUEST,
    # data-parallel engines that are not a whole number >= 1
    "run_zero_dp/vllm/meta.json": _meta(100, data_parallel_size=0),
    "run_zero_dp/vllm/requests.jsonl": _REQUEST,
    "run_half_dp/vllm/meta.json": _meta(100, data_parallel_size=1.5),
    "run_half_dp/vllm/requests.jsonl": _REQUEST,
    # a workload and a profile whose names are numbers
    "w_numeric_name.toml": b"name = 42\n[[classes]]\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = 1.0\n",
    "p_numeric_name.toml": (
        b"name = 7\nkv_capacity_tokens = 100\n[iteration_time]\nbase_s = 0.01\nper_kv_token_s = 0.0\n"
    ),
    # Hugging Face configs: an unknown architecture, a missing field
    "c_unknown_arch.json": b'{"model_type": "gpt2", "hidden_size": 768}',
    "c_missing_field.json": b'{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32}',
    # Nested WAIT segments that stop short of the longest output (20 of 20 and 50)
    "nw_short.toml": b'policy = "nested-wait"\nboundaries = [20]\nthresholds = [3]\n',
    # workload TOML
    "w_malformed.toml": b"name = \n[[classes",
    "w_not_utf8.toml": b'name = "x"\n\xff\xfe = 1\n',
    "w_unknown_key.toml": (
        b'name = "w"\ncolour = 3\n[[classes]]\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = 1.0\n'
    ),
    "w_unknown_class_key.toml": b"[[classes]]\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = 1.0\nrate = 3\n",
    "w_no_classes.toml": b'name = "w"\n',
    "w_negative_rate.toml": b"[[classes]]\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = -1.0\n",
    "w_zero_decode.toml": b"[[classes]]\nprefill_tokens = 5\ndecode_tokens = 0\nrate_per_s = 1.0\n",
    "w_string_rate.toml": b'[[classes]]\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = "fast"\n',
    "w_max_new_below_decode.toml": (
        b"[[classes]]\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = 1.0\nmax_new_tokens = 3\n"
    ),
    "w_fractional_prefill.toml": b"[[classes]]\nprefill_tokens = 5.5\ndecode_tokens = 5\nrate_per_s = 1.0\n",
    "w_duplicate_names.toml": (
        b'[[classes]]\nname = "a"\nprefill_tokens = 5\ndecode_tokens = 5\nrate_per_s = 1.0\n'
        b'[[classes]]\nname = "a"\nprefill_tokens = 6\ndecode_tokens = 5\nrate_per_s = 1.0\n'
    ),
    # profile TOML
    "p_malformed.toml": b"kv_capacity_tokens = = 3",
    "p_not_utf8.toml": b"kv_capacity_tokens = 100\n\xff = 2\n",
    "p_misspelt.toml": b"kv_capacity_tokens = 1000\n[iteration_time]\nbase_s = 0.01\nper_kv_tokens_s = 1e-7\n",
    "p_unknown_top.toml": b"kv_capacity_tokens = 1000\ngpu = 1\n[iteration_time]\nbase_s = 0.01\n",
    "p_negative.toml": b"kv_capacity_tokens = 1000\n[iteration_time]\nbase_s = -0.01\n",
    "p_zero_capacity.toml": b"kv_capacity_tokens = 0\n[iteration_time]\nbase_s = 0.01\n",
    "p_tiny_capacity.toml": b"kv_capacity_tokens = 10\n[iteration_time]\nbase_s = 0.01\nper_kv_token_s = 1e-7\n",
    "p_no_timing.toml": b"kv_capacity_tokens = 1000\n",
    "p_mixed_kinds.toml": b'kv_capacity_tokens = 1000\n[iteration_time]\nkind = "measured"\nbase_s = 0.01\n',
    "p_unknown_kind.toml": b'kv_capacity_tokens = 1000\n[iteration_time]\nkind = "magic"\nbase_s = 0.01\n',
    "p_measured_incomplete.toml": b'kv_capacity_tokens = 1000\n[iteration_time]\nkind = "measured"\nlayers = 32\n',
    "p_nan.toml": b"kv_capacity_tokens = 1000\n[iteration_time]\nbase_s = nan\n",
    "p_huge_capacity.toml": b"kv_capacity_tokens = 1e30\n[iteration_time]\nbase_s = 0.01\nper_kv_token_s = 1e-7\n",
    # trace CSV
    "t_missing_column.csv": b"num_prefill_tokens\n10\n",
    "t_inf.csv": b"num_prefill_tokens,num_decode_tokens\n10,inf\n20,5\n",
    "t_negative.csv": b"num_prefill_tokens,num_decode_tokens\n-10,5\n",
    "t_text.csv": b"num_prefill_tokens,num_decode_tokens\nten,5\n",
    "t_empty.csv": b"num_prefill_tokens,num_decode_tokens\n",
    "t_bad_arrival.csv": b"arrived_at,num_prefill_tokens,num_decode_tokens\n-1,10,5\n",
    # thresholds files
    "th_scalar.toml": b'policy = "wait"\nthresholds = 5\n',
    "th_unknown_policy.toml": b'policy = "edf"\nthresholds = [1]\n',
    "th_bad.json": b"{not json",
    "th_wrong_count.toml": b'policy = "wait"\nthresholds = [1, 2, 3]\nclasses = ["a", "b", "c"]\n',
    "th_zero.toml": b'policy = "wait"\nthresholds = [0]\n',
    "th_nested_missing.toml": b'policy = "nested-wait"\nthresholds = [2, 1]\n',
    "th_cp_missing.toml": b'policy = "wait-cp"\ntl = 5\n',
    # measurement CSVs
    "m_missing_column.csv": b"num_tokens,num_tensor_parallel_workers\n1,1\n",
    "m_four_rows.csv": FOUR_ROW_MLP,
    "a_missing_column.csv": b"regime,chunk,kv\nP,64,0\n",
    "a_negative.csv": b"regime,chunk,kv,batch,save,prefill,decode\nP,64,0,1,-0.1,0.01,\n",
    "a_bad_regime.csv": b"regime,chunk,kv,batch,save,prefill,decode\nX,64,0,1,0.1,0.01,\n",
    "a_no_decode.csv": b"regime,chunk,kv,batch,save,prefill,decode\n"
    + b"".join(f"P,{64 * i},0,1,0.02,0.01,\n".encode() for i in range(1, 8)),
    "a_short.csv": b"regime,chunk,kv,batch,save,prefill,decode\nP,64,0,1,0.1,0.01,\nD,0,32,1,0.002,,0.006\n",
    "b_missing_column.csv": b"prefill_tokens,decode_sequences,seconds\n1,2,3\n",
    "b_negative.csv": b"prefill_tokens,decode_sequences,cached_tokens,seconds\n1,2,3,-1\n",
    "b_short.csv": b"prefill_tokens,decode_sequences,cached_tokens,seconds\n1,2,3,0.01\n",
    "b_inf.csv": b"prefill_tokens,decode_sequences,cached_tokens,seconds\n1,2,inf,0.01\n",
}


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []

    def add(*argv: str) -> None:
        cases.append((" ".join(argv), list(argv)))

    base = {
        "equilibrium": ["equilibrium"],
        "stability": ["stability"],
        "simulate": ["simulate", "--policy", "fcfs", "--requests", "50"],
        "thresholds": ["thresholds", "--policy", "wait"],
        "trajectory": ["trajectory", "--policy", "wait"],
        "tune": ["tune", "--executor", "serial", "--requests", "50", "--replicates", "1"],
        "capacity": ["capacity", "--executor", "serial", "--requests", "50", "--replicates", "1", "--steps", "1"],
        "compare": ["compare", "--executor", "serial", "--requests", "50", "--replicates", "2"],
    }
    workload_files = [name for name in FILES if name.startswith(("w_", "t_"))]
    profile_files = [name for name in FILES if name.startswith("p_")]
    for argv in base.values():
        for value in BAD_RATES:
            add(*argv, "--rate", value)
        add(*argv, "--scale", "-2")
        add(*argv, "--workload", "no-such-preset")
        add(*argv, "--profile", "no-such-profile")
        add(*argv, "--capacity-tokens", "0")
        add(*argv, "--workload", "@missing.toml")
    for name in workload_files:
        add("equilibrium", "--workload", f"@{name}")
    for name in profile_files:
        add("equilibrium", "--profile", f"@{name}")
    for name in workload_files[:4] + profile_files[:4]:
        flag = "--workload" if name.startswith(("w_", "t_")) else "--profile"
        add("simulate", "--policy", "fcfs", "--requests", "50", flag, f"@{name}")
    sim = base["simulate"]
    for value in BAD_COUNTS:
        add("simulate", "--policy", "fcfs", "--requests", value)
    for value in ["-1", "abc", "1e30"]:
        add(*sim, "--seed", value)
    for value in ["-1", "nan"]:
        add(*sim, "--warmup-s", value)
    for value in ["0", "-1", "nan"]:
        add("simulate", "--policy", "fcfs", "--horizon-s", value)
    for value in ["0", "-1", "1e300", "nan"]:
        add("simulate", "--policy", "wait", "--requests", "50", "--kappa", value)
    for value in ["1", "-0.1", "nan"]:
        add("simulate", "--policy", "vllm", "--requests", "50", "--watermark", value)
    add("simulate", "--policy", "vllm", "--requests", "50", "--block-size", "0")
    add("simulate", "--policy", "sarathi", "--requests", "50", "--token-budget", "0")
    add("simulate", "--policy", "vllm", "--requests", "50", "--max-batch", "-1")
    # The engine schedulers (vllm-v1, sglang): caps, budgets, conservativeness, knobs of other policies.
    for value in ["0", "-1", "abc"]:
        add("simulate", "--policy", "vllm-v1", "--requests", "50", "--max-num-seqs", value)
        add("simulate", "--policy", "vllm-v1", "--requests", "50", "--max-num-batched-tokens", value)
        add("simulate", "--policy", "sglang", "--requests", "50", "--chunked-prefill-size", value)
        add("simulate", "--policy", "sglang", "--requests", "50", "--max-prefill-tokens", value)
    add("simulate", "--policy", "sglang", "--requests", "50", "--max-running-requests", "-1")
    add("simulate", "--policy", "vllm-v1", "--requests", "50", "--long-prefill-token-threshold", "-1")
    add("simulate", "--policy", "vllm-v1", "--requests", "50", "--long-prefill-token-threshold", "4096")
    for value in ["0", "-1", "nan", "inf"]:
        add("simulate", "--policy", "sglang", "--requests", "50", "--schedule-conservativeness", value)
    add("simulate", "--policy", "sglang", "--requests", "50", "--page-size", "0")
    add("simulate", "--policy", "wait", "--requests", "50", "--max-num-seqs", "64")
    add("simulate", "--policy", "sarathi", "--requests", "50", "--max-running-requests", "64")
    add("simulate", "--policy", "sglang", "--requests", "50", "--max-num-batched-tokens", "64")
    add("simulate", "--policy", "vllm", "--requests", "50", "--token-budget", "512")
    add("simulate", "--policy", "vllm-v1", "--requests", "50", "--eviction", "restart")
    add("simulate", "--policy", "sglang", "--requests", "50", "--conventions", "vidur", "--eviction", "restart")
    # Abbreviated options are refused; an explicit WAIT kappa outside its interval is an error.
    add("simulate", "--policy", "fcfs", "--requests", "50", "--rat", "20")
    add("equilibrium", "--capacity", "1000")
    add("thresholds", "--policy", "wait", "--kappa", "1e-9")
    add("simulate", "--policy", "fcfs", "--requests", "50", "--profile", "@p_huge_capacity.toml")
    add("thresholds", "--policy", "wait", "--kappa", "1e9")
    add("recommend", "--engine", "vllm", "--p99-ttft-s", "0")
    add("recommend", "--engine", "tgi")
    add("recommend", "--engine", "vllm", "--replicates", "1")
    for value in ["0,0", "1", "a,b", "-1,1"]:
        add(*sim, "--arrivals", "mmpp", "--mmpp-multipliers", value)
    for value in ["0,1", "1,-1"]:
        add(*sim, "--arrivals", "mmpp", "--mmpp-switch-rates", value)
    add(*sim, "--conventions", "bogus")
    add(*sim, "--eviction", "bogus")
    add(*sim, "--arrivals", "bogus")
    add("simulate", "--policy", "bogus")
    add("simulate", "--policy", "wait-cp", "--requests", "50", "--chunk-tokens", "0")
    add("simulate", "--policy", "wait-cp", "--requests", "50", "--chunk-tokens", "100000")
    add("simulate", "--policy", "fcfs", "--requests", "50", "--chunk-tokens", "64")
    add("simulate", "--policy", "vidur-magic", "--conventions", "vidur")
    add("simulate", "--policy", "fcfs", "--conventions", "vidur", "--horizon-s", "10")
    for name in [n for n in FILES if n.startswith("th_")]:
        add("simulate", "--policy", "wait", "--requests", "50", "--thresholds", f"@{name}")
    add("simulate", "--policy", "wait", "--requests", "50", "--thresholds", "@missing.toml")
    add("simulate", "--policy", "vllm", "--thresholds", "@th_scalar.toml")
    thr = base["thresholds"]
    for value in ["0", "-1", "1e300", "nan"]:
        add(*thr, "--kappa", value)
    add(*thr, "--out", "@.")
    add(*thr, "--out", "@no-such-folder/x.toml")
    add("thresholds", "--policy", "nested-wait", "--eta", "-1")
    add("thresholds", "--policy", "nested-wait", "--delta", "0")
    add("thresholds", "--policy", "nested-wait", "--horizon-s", "-5")
    add("thresholds", "--policy", "nested-wait", "--zeta", "0")
    add("thresholds", "--policy", "nested-wait", "--segments", "0")
    add("thresholds", "--policy", "wait-cp", "--chunk-tokens", "0")
    add("thresholds", "--policy", "wait-cp", "--slack", "-1")
    add("thresholds", "--policy", "wait-cp", "--slack", "nan")
    add("thresholds", "--policy", "wait-cp", "--kappa", "1e-9")
    add("thresholds", "--policy", "wait-cp", "--conventions", "bogus")
    add("thresholds", "--policy", "wait-cp", "--rate", "100")
    add("thresholds", "--policy", "bogus")
    for command in ("tune", "capacity", "compare"):
        argv = base[command]
        add(*argv, "--replicates", "0")
        add(*argv, "--requests", "0")
        add(*argv, "--seed", "-1")
        add(*argv, "--p99-latency-s", "-1")
        add(*argv, "--p99-latency-s", "nan")
        add(*argv, "--p99-ttft-s", "0")
        add(*argv, "--conventions", "bogus")
        add(*argv, "--executor", "bogus")
        add(*argv, "--cache", "@w_malformed.toml")
    add(*base["tune"], "--out", "@.")
    add(*base["tune"], "--policy", "bogus")
    add(*base["capacity"], "--steps", "0")
    add(*base["capacity"], "--policies", "edf")
    add(*base["compare"], "--replicates", "1")
    for value in ["0", "1.5", "abc", "-0.5"]:
        add(*base["compare"], "--fractions", value)
    traj = base["trajectory"]
    for value in ["0", "-1", "nan"]:
        add(*traj, "--horizon-s", value)
    for value in ["stage:x=1", "nonsense", "stage:0=-5"]:
        add(*traj, "--start", value)
    add(*traj, "--method", "bogus")
    add("trajectory", "--policy", "bogus")
    add("asymptotics", "--seed", "-1")
    add("asymptotics", "--executor", "bogus")
    add("figures", "--out", "@w_malformed.toml")
    add("figures", "--only", "no-such-figure", "--out", "@figs")
    add("figures", "--profile", "bogus", "--only", "profile-fit", "--out", "@figs")
    add("figures", "--seed", "-1")
    add("report", "--out", "@w_malformed.toml")
    add("report", "--requests", "0", "--no-figures")
    add("report", "--profile", "bogus", "--no-figures")
    for value in ["0", "-1", "abc"]:
        add("symbolic", "--classes", value)
    fit = ["profile", "fit"]
    add(*fit, "@missing.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b")
    add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b")
    add(*fit, "@m_four_rows.csv", "--gpu", "a100-80gb", "--model", "llama-2-7b")
    add(*fit, "@t_missing_column.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b")
    add(*fit, "@m_missing_column.csv", "--gpu", "bogus", "--model", "llama-3-8b")
    add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", "bogus")
    add(*fit, "@m_missing_column.csv", "--model", "llama-3-8b")
    add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b", "--tensor-parallel", "0")
    for name in ("a_missing_column.csv", "a_negative.csv", "a_bad_regime.csv", "a_short.csv", "missing.csv"):
        add(*fit, "@m_missing_column.csv", "--attention", f"@{name}", "--gpu", "a100-80gb", "--model", "llama-3-8b")
    for name in ("b_missing_column.csv", "b_negative.csv", "b_short.csv", "b_inf.csv", "t_text.csv"):
        add(*fit, f"@{name}", "--batch-log", "--kv-capacity-tokens", "1000")
    add(*fit, "@b_short.csv", "--batch-log")
    add(*fit, "@b_short.csv", "--batch-log", "--kv-capacity-tokens", "0")
    add(*fit, "@b_short.csv", "--batch-log", "--kv-capacity-tokens", "1000", "--out", "@.")
    add(*fit, "@b_short.csv", "--batch-log", "--kv-capacity-tokens", "1000", "--plot", "@fit.png")
    add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b", "--plot", "@fit.png")
    add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b", "--timing", "vidur-predictor")
    add(*fit, "@m_missing_column.csv", "--timing", "bogus")
    predictor = ("--gpu", "a100-80gb", "--model", "llama-3-8b", "--timing", "vidur-predictor")
    add(*fit, "@m_four_rows.csv", "--attention", "@a_no_decode.csv", *predictor)
    add(*fit, "@m_four_rows.csv", "--attention", "@a_short.csv", *predictor, "--out", "@p.toml")
    add("figures", "--timing", "vidur-predictor", "--only", "p512d20", "--out", "@figs")
    add("figures", "--timing", "bogus")
    add("equilibrium", "-p", "a100-80gb-llama-3-8b-vidur-predictor", "--method", "lp")
    add("stability", "-p", "a100-80gb-llama-3-8b-vidur-predictor", "--method", "lp")
    add("bogus-command")
    add("equilibrium", "--method", "bogus")
    add("equilibrium", "--tbt-max-s", "-1")
    add("equilibrium", "--max-batch-sequences", "0")
    add("equilibrium", "--prefill-token-budget", "nan")
    add("stability", "--directions", "0", "--plot", "@region.png", "--workload", "mix-p512d20-p512d50")
    add("stability", "--plot", "@region.png")
    add("stability", "--plot", "@.", "--workload", "mix-p512d20-p512d50")
    add("equilibrium", "--workload", "@t_inf.csv", "--bins", "abc")
    # Issue 24 (part): model shapes from config.json
    for name in ("c_unknown_arch.json", "c_missing_field.json", "c_missing.json"):
        add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", f"@{name}")
    # Issue 27: bad inputs that were taken.
    add("replay", "@run_zero_blocks", "-p", "rtx4090-llama-3.1-8b-vllm")
    add("replay", "@run_negative_blocks", "-p", "rtx4090-llama-3.1-8b-vllm", "--out", "@replay_out")
    # Issue 24 (part): data and expert parallelism
    add("replay", "@run_zero_dp", "-p", "rtx4090-llama-3.1-8b-vllm")
    add("replay", "@run_half_dp", "-p", "rtx4090-llama-3.1-8b-vllm", "--out", "@replay_out")
    for value in ("0", "-2", "abc"):
        add(*fit, "--format", "llmservingsim", "@missing", "--dp", value, "--out", "@p.toml")
    add(*fit, "--format", "llmservingsim", "@missing", "--gpu", "bogus", "--out", "@p.toml")
    # Issue 24: the roofline from public facts, and the engine grid's option
    roof = ["profile", "roofline"]
    add(*roof, "--gpu", "bogus", "--model", "llama-3-8b", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "bogus", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "@c_missing_field.json", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "@c_unknown_arch.json", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--tp", "3", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--tp", "0", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--dp", "0", "--out", "@p.toml")
    add(*roof, "--gpu", "l4", "--model", "llama-3.1-70b", "--out", "@p.toml")
    add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--ep", "--out", "@p.toml")
    for value in ("0", "1.5", "nan", "abc"):
        add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--gpu-memory-utilization", value)
    add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--kv-capacity-tokens", "0")
    add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--max-num-batched-tokens", "-5")
    add(*roof, "--gpu", "@missing_gpu.toml", "--model", "llama-3-8b", "--out", "@p.toml")
    add("replay", "@run_zero_dp", "-p", "roofline", "--tp", "2")
    add(*fit, "@m_missing_column.csv", "--gpu", "a100-80gb", "--model", "llama-3-8b", "--attention-model", "fit")
    # Issue 25: calibration on a run (the corpus runs are too small to fit, or the base is wrong)
    cal = ["profile", "calibrate", "@run_half_dp", "--out", "@fitted.toml"]
    add(*cal, "-p", "h100-80gb-llama-3-8b-tp1-roofline")
    add(*cal, "-p", "rtx4090-llama-3.1-8b-vllm")
    add(*cal, "-p", "h100-80gb-llama-3-8b-tp1-roofline", "--fit", "speed")
    add(*cal, "-p", "h100-80gb-llama-3-8b-tp1-roofline", "--fit", "")
    for value in ("0", "-3", "nan", "abc"):
        add(*cal, "-p", "h100-80gb-llama-3-8b-tp1-roofline", "--split-at-s", value)
    add(*cal, "-p", "h100-80gb-llama-3-8b-tp1-roofline", "--check", "@missing")
    add(*cal, "-p", "h100-80gb-llama-3-8b-tp1-roofline", "--gpu", "h100-80gb")
    add("profile", "calibrate", "@missing", "--out", "@fitted.toml")
    imp = ["import-run", "--engine", "@engine_ok.toml", "--out", "@imported"]
    add(*imp, "@bench_no_detail.json", "--format", "vllm-bench")
    add(*imp, "@bench_random_rate.json", "--format", "vllm-bench")
    add(*imp, "@bench_no_detail.json", "--format", "csv")
    add(*imp, "@bench_log.csv", "--format", "csv", "--columns", "arrival_s=ts,input_tokens=p")
    add(*imp, "@bench_log.csv", "--format", "csv", "--columns", "arrival_s=ts,input_tokens=p,output_tokens=missing")
    add(*imp, "@bench_log.csv", "--format", "csv", "--columns", "arrival_s=ts:days,input_tokens=p,output_tokens=o")
    add(*imp, "@bench_log.csv", "--format", "vllm-bench")
    add(*imp, "@missing.json", "--format", "vllm-bench")
    add("import-run", "@bench_log.csv", "--format", "csv", "--engine", "@missing.toml", "--out", "@imported")
    fleet = ["fleet", "-w", "p512d20", "--rate", "4", "--p99-ttft-s", "2"]
    add(*fleet, "--deployments", "@missing.toml")
    add(*fleet, "--deployments", "@fleet_free.toml")
    add(*fleet, "--deployments", "@fleet_too_big.toml")
    add(*fleet, "--deployments", "@fleet_ok.toml", "--evaluate", "x=1")
    add(*fleet, "--deployments", "@fleet_ok.toml", "--evaluate", "h=two")
    add(*fleet, "--deployments", "@fleet_ok.toml", "--requests", "10")
    add(*fleet, "--deployments", "@fleet_ok.toml", "--replicates", "0")
    add(*fleet, "--deployments", "@fleet_ok.toml", "--out", "@fleet_out")
    add("fleet", "-w", "p512d20", "--deployments", "@fleet_ok.toml")
    add("fleet", "-w", "p512d20", "--deployments", "@fleet_ok.toml", "--p99-tpot-s", "nan")
    add("fleet", "--deployments", "@fleet_ok.toml", "--p99-ttft-s", "2", "--trace", "@trace_no_times.csv")
    add("fleet", "--deployments", "@fleet_ok.toml", "--p99-ttft-s", "2", "--trace", "@bench_log.csv")
    for value in ("-1", "nan", "abc"):
        add(*roof, "--gpu", "h100-80gb", "--model", "llama-3-8b", "--cpu-offload-gb", value, "--out", "@p.toml")
    add("equilibrium", "--workload", "@w_numeric_name.toml")
    add("equilibrium", "--profile", "@p_numeric_name.toml")
    add("profile", "show", "@p_malformed.toml")
    add("profile", "show", "@p_numeric_name.toml")
    mix = ("-w", "mix-p512d20-p512d50", "-p", "a100-80gb-llama-3-8b")
    add("simulate", *mix, "--policy", "nested-wait", "--thresholds", "@nw_short.toml", "--strict", "--requests", "50")
    one = ("-w", "p512d20", "-p", "a100-80gb-llama-3-8b", "--policy", "fcfs")
    add("simulate", *one, "--requests", "50", "--warmup-s", "1000")
    add("simulate", *one, "--horizon-s", "5", "--warmup-s", "10")
    add("engine-check", "vllm", "--scenarios", "0")
    add("engine-check", "vllm", "--engine-runs", "-1")
    add("engine-check", "vllm", "--policy", "fcfs")
    add("engine-check", "sglang")
    return cases


CASES = _cases()


@pytest.fixture
def corpus_dir(tmp_path, monkeypatch):
    for name, content in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_corpus_is_large():
    assert len(CASES) >= 326  # the corpus grows, never shrinks
    assert len({argv[0] for _, argv in CASES}) >= 12  # every subcommand family


@pytest.mark.parametrize("argv", [argv for _, argv in CASES], ids=[label for label, _ in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(argv, corpus_dir, capsys):
    argv = [a.replace("@", str(corpus_dir) + "/", 1) if a.startswith("@") else a for a in argv]
    before = sorted(p.name for p in Path(corpus_dir).rglob("*"))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (argv, out[-500:], err[-500:])
    assert len(lines) == 1 and lines[0].startswith("fluidopt: error:"), err
    assert "Traceback" not in err
    assert sorted(p.name for p in Path(corpus_dir).rglob("*")) == before


def test_a_valid_out_writes_its_file(corpus_dir, capsys):
    # A valid command with --out into a folder that exists writes exactly one file.
    code = main(["thresholds", "--policy", "wait", "--out", str(corpus_dir / "ok.json"), "--json"])
    assert code == 0 and json.loads((corpus_dir / "ok.json").read_text())["thresholds"]


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["replay", "@run_zero_blocks", "-p", "rtx4090-llama-3.1-8b-vllm"], "kv_cache.num_gpu_blocks"),
        (["replay", "@run_negative_blocks", "-p", "rtx4090-llama-3.1-8b-vllm"], "kv_cache.num_gpu_blocks"),
        (["equilibrium", "--workload", "@w_numeric_name.toml"], "name"),
        (["equilibrium", "--profile", "@p_numeric_name.toml"], "name"),
        (
            [
                "simulate",
                "-w",
                "mix-p512d20-p512d50",
                "-p",
                "a100-80gb-llama-3-8b",
                "--policy",
                "nested-wait",
                "--thresholds",
                "@nw_short.toml",
                "--strict",
                "--requests",
                "50",
            ],
            "boundaries",
        ),
        (
            [
                "simulate",
                "-w",
                "p512d20",
                "-p",
                "a100-80gb-llama-3-8b",
                "--policy",
                "fcfs",
                "--requests",
                "50",
                "--warmup-s",
                "1000",
            ],
            "warmup_s",
        ),
    ],
)
def test_inputs_once_taken_in_silence_name_their_field(argv, field, corpus_dir, capsys):
    argv = [a.replace("@", str(corpus_dir) + "/", 1) if a.startswith("@") else a for a in argv]
    assert main(argv) == 2
    assert field in capsys.readouterr().err
