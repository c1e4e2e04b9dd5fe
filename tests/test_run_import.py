"""Importers of benchmark output into the plain run format (fluidopt.answers.run_import, ``import-run``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fluidopt.answers.replay import read_vllm_run
from fluidopt.answers.run_import import import_run, parse_column_map, read_vllm_bench
from fluidopt.cli import main
from fluidopt.errors import InputError

ENGINE = '[engine]\nname = "vllm"\nversion = "0.11.0"\nmodel = "llama-3.1-8b"\ngpu = "h100-80gb"\nmax_num_seqs = 64\n'


def bench_json(tmp_path: Path, **fields) -> Path:
    """A detailed ``vllm bench serve`` result: three requests, 2 + 3 + 1 tokens."""
    data = {
        "request_rate": "inf",
        "max_concurrency": None,
        "input_lens": [100, 200, 50],
        "output_lens": [3, 4, 2],
        "ttfts": [0.1, 0.2, 0.3],
        "itls": [[0.05, 0.05], [0.1, 0.1, 0.1], [0.2]],
        "errors": ["", "", ""],
        **fields,
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def engine_toml(tmp_path: Path, text: str = ENGINE) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_vllm_bench_with_start_times_gives_arrivals_and_e2e_by_hand(tmp_path):
    columns, note = read_vllm_bench(bench_json(tmp_path, request_rate=2.0, start_times=[10.0, 10.5, 11.25]))
    assert columns["arrival_s"].tolist() == [0.0, 0.5, 1.25]
    assert columns["e2e_s"].tolist() == pytest.approx([0.2, 0.5, 0.5])
    assert columns["input_tokens"].tolist() == [100, 200, 50] and "start_times" in note


def test_max_concurrency_sends_each_request_when_a_slot_frees(tmp_path):
    # Two slots; E2E 0.2, 0.5, 0.5: the third request starts when the first completes (0.2).
    columns, note = read_vllm_bench(bench_json(tmp_path, max_concurrency=2))
    assert columns["arrival_s"].tolist() == pytest.approx([0.0, 0.0, 0.2])
    assert "max_concurrency 2" in note
    columns, _ = read_vllm_bench(bench_json(tmp_path))
    assert columns["arrival_s"].tolist() == [0.0, 0.0, 0.0]


def test_failed_requests_are_left_out_and_counted(tmp_path):
    columns, note = read_vllm_bench(bench_json(tmp_path, errors=["", "timeout", ""], output_lens=[3, 0, 2]))
    assert columns["input_tokens"].tolist() == [100, 50] and "1 failed" in note


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"request_rate": 4.0}, "start_times"),
        ({"itls": None}, "--save-detailed"),
        ({"ttfts": [0.1, -0.2, 0.3]}, r"ttfts\[1\]"),
        ({"start_times": [1.0, 2.0]}, "start_times"),
        ({"errors": ["x", "y", "z"]}, "every request failed"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"output_lens": [3, 0, 2]}, "output_tokens"),
    ],
)
def test_bad_vllm_bench_results_are_refused_naming_the_field(tmp_path, fields, needle):
    with pytest.raises(InputError, match=needle):
        read_vllm_bench(bench_json(tmp_path, **fields))


def test_imported_bench_run_replays(tmp_path):
    folder, _ = import_run(bench_json(tmp_path), "vllm-bench", engine_toml(tmp_path), tmp_path / "run")
    run = read_vllm_run(folder)
    assert run.num_requests == 3 and run.engine_kwargs["max_num_seqs"] == 64
    assert run.e2e_s.tolist() == pytest.approx([0.2, 0.5, 0.5])


def test_a_csv_with_a_column_map_in_milliseconds_and_epoch_seconds(tmp_path):
    source = tmp_path / "log.csv"
    source.write_text(
        "ts,prompt,completion,first_ms,total_ms\n1700000001.5,10,4,120,400\n1700000000.0,20,2,80,150\n",
        encoding="utf-8",
    )
    mapping = "arrival_s=ts,input_tokens=prompt,output_tokens=completion,ttft_s=first_ms:ms,e2e_s=total_ms:ms"
    folder, _ = import_run(source, "csv", engine_toml(tmp_path), tmp_path / "run", mapping)
    run = read_vllm_run(folder)
    assert run.arrival_s.tolist() == pytest.approx([0.0, 1.5])  # sorted by arrival
    assert run.prompt_tokens.tolist() == [20, 10]
    assert run.ttft_s.tolist() == pytest.approx([0.08, 0.12]) and run.e2e_s.tolist() == pytest.approx([0.15, 0.4])


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ("arrival_s=ts,input_tokens=prompt", "output_tokens"),
        ("arrival_s=ts,input_tokens=prompt,output_tokens=completion,latency=x", "latency"),
        ("arrival_s=ts:hours,input_tokens=prompt,output_tokens=completion", "unit"),
        ("arrival_s=ts,input_tokens=prompt:ms,output_tokens=completion", "no unit"),
        ("arrival_s,input_tokens=prompt,output_tokens=completion", "plain=theirs"),
    ],
)
def test_bad_column_maps_are_refused(mapping, needle):
    with pytest.raises(InputError, match=needle):
        parse_column_map(mapping)


def test_import_run_cli_bad_input_writes_nothing(tmp_path, capsys):
    bench = bench_json(tmp_path, ttfts=[0.1, 0.9, 0.3], itls=[[0.05], [-0.1], [0.2]])
    out = tmp_path / "run"
    for argv in (
        ["import-run", str(bench), "--format", "vllm-bench", "--engine", str(engine_toml(tmp_path)), "--out", str(out)],
        ["import-run", str(bench), "--format", "csv", "--engine", str(engine_toml(tmp_path)), "--out", str(out)],
        [
            "import-run",
            str(bench_json(tmp_path)),
            "--format",
            "vllm-bench",
            "--engine",
            str(engine_toml(tmp_path, ENGINE + "bogus = 1\n")),
            "--out",
            str(out),
        ],
    ):
        assert main(argv) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert not out.exists()
    argv = ["import-run", str(bench_json(tmp_path)), "--format", "vllm-bench", "--engine", str(engine_toml(tmp_path))]
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "requests.csv").is_file() and "3 requests" in capsys.readouterr().out
    assert main([*argv, "--out", str(out)]) == 2  # a folder holding a run is never overwritten
    assert np.loadtxt(out / "requests.csv", delimiter=",", skiprows=1).shape == (3, 5)
