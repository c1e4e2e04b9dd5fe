import json
import subprocess
import sys
from pathlib import Path

import pytest

from fluidopt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_equilibrium_json_keys(capsys):
    code, out, _ = run(capsys, "equilibrium", "--workload", "toy", "--profile", "toy", "--json")
    data = json.loads(out)
    assert code == 0
    for key in (
        "stable",
        "iteration_time_s",
        "memory_tokens",
        "per_stage",
        "throughput_tokens_per_s",
        "binding",
        "method",
    ):
        assert key in data
    assert data["stable"] is True and data["per_stage"] == {"hello": pytest.approx(4.0)}


def test_unstable_load_is_exit_zero_with_reason(capsys):
    code, out, _ = run(capsys, "equilibrium", "-w", "toy", "-p", "toy", "--rate", "6", "--json")
    data = json.loads(out)
    assert code == 0 and data["stable"] is False and "memory" in data["reason"]


def test_equilibrium_with_limits_uses_lp(capsys):
    code, out, _ = run(
        capsys,
        "equilibrium",
        "--tbt-max-s",
        "0.05",
        "--max-batch-sequences",
        "256",
        "--prefill-token-budget",
        "8192",
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and data["method"] == "lp" and set(data["utilisation"]) >= {"tbt", "memory"}


def test_stability_json_and_plot(capsys, tmp_path):
    plot = tmp_path / "region.png"
    code, out, _ = run(
        capsys,
        "stability",
        "-w",
        "mix-p512d20-p512d50",
        "-p",
        "paper-linear",
        "--json",
        "--plot",
        str(plot),
        "--directions",
        "7",
    )
    data = json.loads(out)
    assert code == 0 and plot.stat().st_size > 1000
    for key in ("max_scale", "max_rate_per_s", "binding", "memory_elasticity"):
        assert key in data
    assert data["binding"] == ["memory"]


def test_table_output_and_listings(capsys):
    for argv in (
        ["equilibrium"],
        ["stability"],
        ["workloads"],
        ["profiles"],
        ["symbolic", "--paper-linear"],
        ["profile", "show", "toy"],
    ):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and out.strip()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["equilibrium", "--rate", "-3"], "rate"),
        (["equilibrium", "--rate", "nan"], "rate"),
        (["equilibrium", "--workload", "nope"], "unknown preset"),
        (["equilibrium", "--profile", "nope"], "unknown preset"),
        (["equilibrium", "--capacity-tokens", "100"], "kv_capacity_tokens"),
        (["stability", "--plot", "x.png"], "2-class"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, needle, tmp_path):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_malformed_files_on_the_command_line(capsys, tmp_path):
    bad = tmp_path / "w.toml"
    bad.write_text("[[classes]\n")
    code, _, err = run(capsys, "equilibrium", "--workload", str(bad))
    assert code == 2 and "w.toml" in err
    csv = tmp_path / "t.csv"
    csv.write_text("num_prefill_tokens,num_decode_tokens\n5,abc\n")
    code, _, err = run(capsys, "equilibrium", "--workload", str(csv), "--rate", "1")
    assert code == 2 and "t.csv:2" in err


def test_failed_plot_leaves_nothing(capsys, tmp_path):
    target = tmp_path / "region.unknownformat"
    with pytest.raises(ValueError):
        main(["stability", "-w", "mix-p512d20-p512d50", "--plot", str(target), "--directions", "3"])
    assert list(tmp_path.iterdir()) == []


def test_profile_fit_cli(capsys, tmp_path, shared_data):
    out_file = tmp_path / "fit.toml"
    csv = shared_data / "profiles" / "vidur" / "a100" / "Llama-2-7b-hf" / "mlp.csv"
    code, out, _ = run(
        capsys,
        "profile",
        "fit",
        str(csv),
        "--gpu",
        "a100-80gb",
        "--model",
        "llama-2-7b",
        "--out",
        str(out_file),
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and data["mape"] < 0.06 and data["r2"] > 0.99
    code, out, _ = run(capsys, "equilibrium", "--profile", str(out_file), "--json")
    assert code == 0 and json.loads(out)["stable"]


def test_console_script_and_module_entry_points():
    module = subprocess.run([sys.executable, "-m", "fluidopt", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and "fluidopt" in module.stdout
    # The console script installed next to this interpreter (not whatever `fluidopt` is on PATH).
    console = str(Path(sys.executable).with_name("fluidopt"))
    script = subprocess.run(
        [console, "equilibrium", "-w", "toy", "-p", "toy", "--json"], capture_output=True, text=True
    )
    assert script.returncode == 0 and json.loads(script.stdout)["stable"]
    bad = subprocess.run([console, "equilibrium", "--rate", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "rate" in bad.stderr


def test_report_main_job(capsys, tmp_path):
    code, out, _ = run(capsys, "report", "--out", str(tmp_path), "--json", "--requests", "3000")
    data = json.loads(out)
    assert code == 0 and len(data["stability"]) == 8
    assert {r["workload"] for r in data["tuned_thresholds"]} == {"p512d20", "mix-p512d20-p512d50"}
    assert {r["policy"] for r in data["policy_comparison"]} >= {"wait", "nested-wait", "vllm", "sarathi", "fcfs"}
    for paths in data["figures"].values():
        assert all(Path(p).exists() for p in paths)
    from fluidopt.cli.report_command import print_report

    print_report(data, str(tmp_path), full=False)  # the tables the plain command prints
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert any(line.startswith("0. Which settings") for line in lines) and "report finished" in lines[-1]
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    _check_report_tables(text, data)


def _check_report_tables(text: str, data: dict) -> None:
    """Every table of the printed report, read back, says what report.json says, cell by cell."""
    from table_check import assert_table

    from fluidopt.cli.tables import parse_tables

    tables = parse_tables(text)
    engines, stability, comparison = data["engine_settings"], data["stability"], data["policy_comparison"]
    section0 = next(t for t in tables if "handed out" in t)
    fresh = [(r["evaluations"].get("recommended (fresh seeds)") or {}).get("mean_latency_s") for r in engines]
    assert_table(
        section0,
        {
            "profile": [r["profile"] for r in engines],
            "workload": [r["workload_name"] for r in engines],
            "rate/s": [r["rate_per_s"] for r in engines],
            "status": [r["status"] for r in engines],
            "handed out": [r["source"] if r["success"] else "none" for r in engines],
            "E2E s rec": fresh,
            "SLO max/s dflt": [r["max_rate_default_per_s"] for r in engines],
        },
    )
    # No cell the JSON calls failed is shown as handed out, and no launch command follows it.
    for r in engines:
        line = next(
            i
            for i, l in enumerate(text.splitlines())
            if f"/ {r['workload_name']} / {r['engine']}:" in l and l.strip().startswith(r["profile"])
        )
        after = text.splitlines()[line + 1 : line + 4]
        has_command = any("vllm serve" in l or "sglang.launch_server" in l for l in after[:2])
        assert has_command == bool(r["success"] and r["recommended"]), (r["status"], after)
    knobs = next(t for t in tables if "seqs" in t and "engine" in t)
    assert_table(knobs, {"seqs": [r["recommended"].get("max_num_seqs") for r in engines]})
    assert_table(
        next(t for t in tables if "dT* ms" in t),
        {
            "workload": [r["workload"] for r in stability],
            "max rate/s": [r["max_rate_per_s"] for r in stability],
            "M* tokens": [r["memory_tokens"] for r in stability],
            "mem. elasticity": [r["memory_elasticity"] for r in stability],
        },
    )
    assert_table(
        next(t for t in tables if "restarts %" in t),
        {
            "policy": [r["policy"] for r in comparison],
            "mean s": [r["mean_latency_s"] for r in comparison],
            "done/s": [r["completed_per_s"] for r in comparison],
        },
    )


def test_every_option_of_every_command_has_help_text():
    import argparse

    from fluidopt.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [
        f"{name} {action.option_strings[0]}"
        for name, sub in commands.items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert not missing, missing


@pytest.mark.parametrize("command", ["profiles", "workloads"])
def test_listings_fit_100_columns_and_json_keeps_the_full_description(command, capsys):
    from fluidopt.cli import main

    assert main([command]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= 100
    assert main([command, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert max(len(e["description"]) for e in entries) > 120  # nothing lost, only shortened in the table
