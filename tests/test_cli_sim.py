import json

import pytest
from sim_helpers import REQUIRED_SUMMARY_KEYS

from fluidopt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_json_keys(capsys):
    code, out, _ = run(capsys, "simulate", "--policy", "sarathi", "--requests", "2000", "--seed", "3", "--json")
    data = json.loads(out)
    assert code == 0
    for key in REQUIRED_SUMMARY_KEYS:
        assert key in data
    assert data["seed"] == 3 and data["policy"] == "sarathi" and data["arrived_requests"] == 2000


def test_simulate_every_policy_with_defaults(capsys):
    for policy in ("wait", "wait-nowait", "nested-wait", "fcfs", "vllm", "sarathi"):
        code, out, _ = run(
            capsys, "simulate", "-w", "mix-p512d20-p512d50", "--policy", policy, "--requests", "500", "--json"
        )
        data = json.loads(out)
        assert code == 0 and data["arrived_requests"] == data["completed_requests"] + data["unfinished_requests"]


def test_simulate_table_and_options(capsys):
    code, out, _ = run(
        capsys,
        "simulate",
        "--policy",
        "vllm",
        "--horizon-s",
        "50",
        "--eviction",
        "recompute",
        "--arrivals",
        "mmpp",
        "--max-batch",
        "64",
    )
    assert code == 0 and "throughput" in out
    code, out, _ = run(
        capsys,
        "simulate",
        "-w",
        "toy",
        "-p",
        "toy",
        "--policy",
        "wait",
        "--kappa",
        "1.0",
        "--arrivals",
        "deterministic",
        "--requests",
        "100",
        "--json",
    )
    assert code == 0 and json.loads(out)["evictions"] == 0


def test_simulate_echoes_the_policy_settings_and_spells_out_no_cap(capsys):
    code, out, _ = run(capsys, "simulate", "--policy", "vllm", "--max-batch", "0", "--requests", "200")
    assert code == 0 and "max_batch no cap" in out
    code, out, _ = run(capsys, "simulate", "--policy", "vllm", "--max-batch", "64", "--requests", "200")
    assert code == 0 and "max_batch 64" in out


def test_thresholds_file_feeds_simulate(capsys, tmp_path):
    path = tmp_path / "nested.toml"
    code, out, _ = run(
        capsys, "thresholds", "-w", "mix-p512d20-p512d50", "--policy", "nested-wait", "--out", str(path), "--json"
    )
    data = json.loads(out)
    assert code == 0 and path.exists()
    for key in (
        "thresholds",
        "conditions",
        "memory_base_tokens",
        "memory_required_tokens",
        "segments",
        "continuation_probabilities",
        "theta",
    ):
        assert key in data
    code, out, _ = run(
        capsys,
        "simulate",
        "-w",
        "mix-p512d20-p512d50",
        "--policy",
        "nested-wait",
        "--thresholds",
        str(path),
        "--requests",
        "500",
        "--json",
    )
    assert code == 0 and json.loads(out)["policy"] == "nested-wait"
    code, out, _ = run(capsys, "thresholds", "--policy", "wait", "--json")
    data = json.loads(out)
    assert code == 0 and "kappa_interval" in data and data["memory_required_tokens"] >= data["memory_base_tokens"]
    code, out, _ = run(
        capsys,
        "thresholds",
        "-w",
        "lmsys-like",
        "-p",
        "paper-linear",
        "--policy",
        "nested-wait",
        "--segments",
        "4",
        "--method",
        "optimal",
    )
    assert code == 0 and "required" in out


def test_violated_thresholds_warn_or_fail_with_strict(capsys):
    code, _, err = run(
        capsys, "simulate", "-w", "toy", "-p", "toy", "--policy", "wait", "--kappa", "0.5", "--requests", "100"
    )
    assert code == 0 and "warning" in err and "dT(n) <= n_j / lambda_j" in err
    code, _, err = run(
        capsys,
        "simulate",
        "-w",
        "toy",
        "-p",
        "toy",
        "--policy",
        "wait",
        "--kappa",
        "0.5",
        "--requests",
        "100",
        "--strict",
    )
    assert code == 2 and "violates" in err


def test_unknown_policy_lists_policies(capsys):
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--policy", "edf"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    for name in ("wait", "nested-wait", "vllm", "sarathi", "fcfs"):
        assert name in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "--policy", "sarathi", "--capacity-tokens", "100"], "kv_capacity_tokens"),
        (["simulate", "--policy", "vllm", "--kappa", "1"], "--kappa"),
        (["simulate", "--policy", "sarathi", "--requests", "-5"], "requests"),
        (["simulate", "--policy", "sarathi", "--arrivals", "trace"], "trace CSV"),
        (["simulate", "--policy", "vllm", "--watermark", "2"], "watermark"),
    ],
)
def test_simulate_bad_input(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_zero_rate_simulation_is_empty(capsys):
    code, out, _ = run(capsys, "simulate", "--policy", "sarathi", "--rate", "0", "--horizon-s", "10", "--json")
    data = json.loads(out)
    assert code == 0 and data["arrived_requests"] == 0 and data["mean_latency_s"] is None


def test_thresholds_bad_input(capsys):
    code, _, err = run(capsys, "thresholds", "--policy", "wait", "--kappa", "-1")
    assert code == 2 and "kappa" in err
    code, _, err = run(capsys, "thresholds", "--policy", "nested-wait", "--delta", "3")
    assert code == 2 and "delta" in err


def test_simulate_trace_replay(capsys, shared_data):
    trace = shared_data / "traces" / "splitwise_code.csv"
    code, out, _ = run(
        capsys,
        "simulate",
        "-w",
        str(trace),
        "-p",
        "h100-80gb-llama-3-8b",
        "--policy",
        "sarathi",
        "--arrivals",
        "trace",
        "--requests",
        "2000",
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and data["arrived_requests"] == 2000 and data["settings"]["arrivals"]["process"] == "trace"


def test_printed_simulation_is_its_json(capsys):
    from table_check import assert_table, json_then_text

    from fluidopt.cli import main
    from fluidopt.cli.tables import parse_tables

    args = ["simulate", "-w", "p512d20", "-p", "a100-80gb-llama-3-8b", "--policy", "vllm-v1", "--requests", "800"]
    data, text = json_then_text(main, capsys, args)
    assert text.splitlines()[2].startswith(f"status: {data['status']}")
    assert "long_prefill_token_threshold 0" in text  # a whole setting, never cut
    tables = parse_tables(text)
    latency = next(t for t in tables if "latency (s)" in t)
    keys = ("latency", "ttft", "tpot", "tbt")
    for stat in ("mean", "p50", "p90", "p99"):
        assert_table(latency, {stat: [data[f"{stat}_{key}_s"] for key in keys]})
    counts = next(t for t in tables if "count" in t)
    assert_table(
        counts,
        {
            "value": [
                data[k]
                for k in (
                    "arrived_requests",
                    "completed_requests",
                    "unfinished_requests",
                    "peak_running_requests",
                    "evictions",
                    "wasted_tokens",
                    "recomputed_tokens",
                    "iterations",
                    "overflow_iterations",
                    "peak_memory_tokens",
                    "kv_capacity_tokens",
                )
            ]
        },
    )
    rates = next(t for t in tables if "rate" in t)
    assert_table(rates, {"simulated": [data["throughput_tokens_per_s"], data["completed_per_s"]]})
