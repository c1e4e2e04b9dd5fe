"""The plain run format (requests.csv + engine.toml): reading, refusing what is not modelled, replaying."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fluidopt as fo
from fluidopt.answers.replay import read_vllm_run, replay
from fluidopt.answers.run_format import read_engine, read_requests_csv, write_plain_run
from fluidopt.errors import InputError

SHARED_RUN = Path(__file__).resolve().parents[2] / "shared/data/llmservingsim/runs/RTX4090/Llama-3.1-8B"
ENGINE = '[engine]\nname = "vllm"\nversion = "0.19.0"\nmodel = "llama-3.1-8b"\ngpu = "h100-80gb"\nmax_num_seqs = 64\n'


def plain_run(tmp_path: Path, rows: list[str], engine: str = ENGINE, header: str | None = None) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    head = header or "arrival_s,input_tokens,output_tokens,ttft_s,e2e_s"
    (folder / "requests.csv").write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    (folder / "engine.toml").write_text(engine, encoding="utf-8")
    return folder


def test_a_plain_run_is_read_with_tpot_by_hand(tmp_path):
    folder = plain_run(tmp_path, ["1.0,200,1,0.2,0.2", "1.5,50,3,0.1,0.5", "2.0,100,11,0.5,1.5"])
    run = read_vllm_run(folder)
    assert run.arrival_s.tolist() == [0.0, 0.5, 1.0]
    assert run.prompt_tokens.tolist() == [200, 50, 100]
    assert np.isnan(run.tpot_s[0])
    assert run.tpot_s[1:].tolist() == pytest.approx([0.4 / 2, 1.0 / 10])
    assert run.engine_kwargs["max_num_seqs"] == 64 and run.model == "llama-3.1-8b"


def test_arrivals_out_of_order_are_refused_naming_the_row(tmp_path):
    folder = plain_run(tmp_path, ["2.0,100,11,0.5,1.5", "1.0,200,1,0.2,0.2"])
    with pytest.raises(InputError, match="row 3 column arrival_s"):
        read_vllm_run(folder)


@pytest.mark.parametrize(
    ("header", "row", "engine", "needle"),
    [
        ("arrival_s,input_tokens", "0,10", ENGINE, "output_tokens"),
        (None, "0,10,5,0.1,0.2", ENGINE.replace('"vllm"', '"sglang"'), "engine.name"),
        (None, "0,10,5,0.1,0.2", ENGINE + "cpu_offload_gb = -4\n", "cpu_offload_gb"),
        (None, "0,10,5,0.1,0.2", ENGINE + "async_scheduling = 1\n", "async_scheduling"),
        (None, "0,10,5,0.1,0.2", ENGINE + "max_num_batched_tokens = 0\n", "max_num_batched_tokens"),
        (None, "0,10,5,0.1,0.2", ENGINE + "bogus = 1\n", "bogus"),
        (None, "-1,10,5,0.1,0.2", ENGINE, "arrival_s"),
        (None, "0,10,0,0.1,0.2", ENGINE, "output_tokens"),
        (None, "0,10,5,0.1,0.2", ENGINE + "block_size = -4\n", "block_size"),
        (None, "0,10,5,0.1,0.2", ENGINE + "gpu_memory_utilization = 1.5\n", "gpu_memory_utilization"),
        ("arrival_s,input_tokens,output_tokens,cached_prompt_tokens", "0,10,5,11", ENGINE, "cached_prompt_tokens"),
        ("arrival_s,input_tokens,output_tokens,cached_prompt_tokens", "0,10,5,-1", ENGINE, "cached_prompt_tokens"),
        ("arrival_s,input_tokens,output_tokens,prefix_group", "0,10,5,", ENGINE, "prefix_group"),
        (None, "0,10,5,0.1,0.2", ENGINE + "prefix_cache_hit_rate = 1.5\n", "prefix_cache_hit_rate"),
        ("arrival_s,input_tokens,output_tokens,extra", "0,10,5,4", ENGINE, "extra"),
        (None, "0,10.5,5,0.1,0.2", ENGINE, "input_tokens"),
        (None, "0,10,5,0.3,0.2", ENGINE, "e2e_s"),
        (None, "0,10,5,abc,0.2", ENGINE, "ttft_s"),
        ("arrival_s,input_tokens,output_tokens", "0,10,5", ENGINE, "ttft_s"),
    ],
)
def test_bad_plain_runs_are_refused_naming_the_field(tmp_path, header, row, engine, needle):
    folder = plain_run(tmp_path, [row], engine, header)
    with pytest.raises(InputError, match=needle):
        read_vllm_run(folder)


def test_engine_and_requests_readers_check_on_their_own(tmp_path):
    folder = plain_run(tmp_path, ["0,10,5,0.1,0.2"])
    assert read_engine(folder)["gpu"] == "h100-80gb"
    assert set(read_requests_csv(folder)) == {"arrival_s", "input_tokens", "output_tokens", "ttft_s", "e2e_s"}


def test_the_cli_replays_a_plain_run_on_the_roofline(tmp_path):
    rng = np.random.default_rng(4)
    arrivals = np.cumsum(rng.exponential(0.2, 40))
    rows = [
        f"{t:.6f},{int(p)},{int(o)},0.05,{0.05 + 0.01 * o:.6f}"
        for t, p, o in zip(arrivals, rng.integers(50, 800, 40), rng.integers(2, 200, 40))
    ]
    folder = plain_run(tmp_path, rows)
    out = subprocess.run(
        [sys.executable, "-m", "fluidopt", "replay", str(folder), "-p", "roofline", "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert document["requests"] == 40 and "roofline" in document["profile"]


@pytest.mark.skipif(not SHARED_RUN.is_dir(), reason="../shared/data/llmservingsim is not beside the checkout")
def test_a_run_converted_to_the_plain_format_replays_the_same(tmp_path):
    original = read_vllm_run(SHARED_RUN)
    folder = write_plain_run(original, tmp_path / "plain", gpu="rtx4090")
    converted = read_vllm_run(folder)
    assert converted.kv_capacity_tokens == original.kv_capacity_tokens
    profile = fo.preset_profile("rtx4090-llama-3.1-8b-vllm")
    rows = {(r["metric"], r["statistic"]): r for r in replay(original, profile).rows}
    for row in replay(converted, profile).rows:
        twin = rows[(row["metric"], row["statistic"])]
        assert row["observed"] == pytest.approx(twin["observed"], rel=1e-6)
        assert row["fluidopt"] == pytest.approx(twin["fluidopt"], rel=1e-6)
    with pytest.raises(InputError, match="already holds"):
        write_plain_run(original, folder)
