"""--strict turns a simulation that overflows into a non-zero exit (status 3)."""

from __future__ import annotations

from fluidopt.cli import main


def test_strict_simulation_exit_status(capsys, tmp_path):
    toml = tmp_path / "thr.toml"
    toml.write_text('policy = "nested-wait"\nboundaries = [1, 2]\nthresholds = [3, 2]\n', encoding="utf-8")
    argv = [
        "simulate",
        "-w",
        "fcfs-counterexample",
        "-p",
        "fcfs-counterexample",
        "--policy",
        "nested-wait",
        "--thresholds",
        str(toml),
        "--horizon-s",
        "500",
        "--json",
    ]
    assert main(argv) == 0  # reported, not fatal, by default
    _, err = capsys.readouterr()
    assert "overflow" in err
    assert main([*argv, "--strict"]) != 0  # non-zero under --strict
    capsys.readouterr()
